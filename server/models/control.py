"""The management rules, once, for every front door (REST on 8081, gRPC on 7071, the console).

`ModelControl` is what a management adapter calls: it checks the model-API gate, the worker counts and the
per-version cap, changes the registry, tells the registry's listeners (snapshots) after every successful
change, and builds describe and list documents in TorchServe's shapes (spec §2). Adapters parse their
request into these arguments (``None`` = the client did not set it) and render the `Outcome` or document.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from archiver.manifest import is_valid_name
from server.config import Settings
from server.errors import (
    BadRequest,
    InternalServerError,
    ModelApiDisabled,
    ServeError,
    ServiceUnavailable,
)
from server.models.registry import ModelVersion, RegisterOptions, Registry
from server.runtime.messages import Request
from server.runtime.pool import WorkerInfo

# No client needs more workers than this for one model version; larger counts are typos.
DEFAULT_MAX_WORKERS_PER_MODEL = 256
DEFAULT_PAGE = 100


@dataclass(frozen=True)
class Outcome:
    """The answer to a change: TorchServe's ``status`` text; ``accepted`` when workers are still updating (202)."""

    status: str
    accepted: bool = False

    @property
    def http_status(self) -> int:
        return 202 if self.accepted else 200


def start_time_text(epoch: float) -> str:
    """``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`` in local time with a literal Z, as TorchServe 0.12 renders it."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))
    return f"{stamp}.{int(epoch * 1000) % 1000:03d}Z"


def describe(entry: ModelVersion, workers: list[WorkerInfo]) -> dict[str, Any]:
    """One element of the describe array, fields in TorchServe's order (spec §2.4); each worker has one more
    key after TorchServe's: ``lastFailure``, why the slot's last process failed (null once one loaded)."""
    spec, config = entry.spec, entry.config
    out: dict[str, Any] = {
        "modelName": entry.name,
        "modelVersion": entry.version,
        "modelUrl": entry.url,
        "runtime": entry.runtime,
        "minWorkers": entry.min_workers,
        "maxWorkers": entry.max_workers,
        "batchSize": spec.batch_size,
        "maxBatchDelay": int(spec.max_batch_delay_ms),
        "responseTimeout": int(spec.response_timeout_s),
        "startupTimeout": int(spec.startup_timeout_s),
        "maxRetryTimeoutInSec": int(spec.max_retry_timeout_s),
        "clientTimeoutInMills": int(spec.client_timeout_ms),
        "parallelType": str(config.get("parallelType", "")),
        "parallelLevel": int(config.get("parallelLevel", 0) or 0),
        "deviceType": "gpu" if any(w.gpu is not None for w in workers) else "cpu",
    }
    if isinstance(config.get("deviceIds"), list):
        out["deviceIds"] = config["deviceIds"]
    out |= {
        "continuousBatching": bool(config.get("continuousBatching", False)),
        "useJobTicket": bool(config.get("useJobTicket", False)),
        "useVenv": bool(config.get("useVenv", False)),
        "stateful": bool(config.get("sequenceBatching", False)),
        "sequenceMaxIdleMSec": int(config.get("sequenceMaxIdleMSec", 0) or 0),
        "sequenceTimeoutMSec": int(config.get("sequenceTimeoutMSec", 0) or 0),
        "maxNumSequence": int(config.get("maxNumSequence", 0) or 0),
        "maxSequenceJobQueueSize": int(config.get("maxSequenceJobQueueSize", 0) or 0),
        "loadedAtStartup": entry.loaded_at_startup,
        "workers": [
            {
                "id": str(w.id),
                "startTime": start_time_text(w.start_time),
                "status": "READY" if w.status == "READY" else "UNLOADING",
                "memoryUsage": w.memory,
                "pid": w.pid if w.pid is not None else -1,
                "gpu": w.gpu is not None,
                "gpuUsage": "N/A" if w.gpu is None else f"gpuId::{w.gpu}",
                "lastFailure": w.failure,  # ours: why its last process failed (TorchServe clients ignore it)
            }
            for w in workers
        ],
        "jobQueueStatus": {
            "remainingCapacity": max(spec.job_queue_size - entry.pool.queue_depth, 0),
            "pendingRequests": entry.pool.queue_depth,
        },
    }
    return out


class ModelControl:
    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.max_workers = int(settings.get("max_workers_per_model") or DEFAULT_MAX_WORKERS_PER_MODEL)

    def require_model_api(self) -> None:
        """Register and unregister need the model API (spec §13.3); loading at startup never does."""
        if not self.settings.enable_model_api:
            raise ModelApiDisabled()

    # ---- reads --------------------------------------------------------------------------------

    def list_models(self, limit: int | None = None, next_page_token: int | None = None) -> dict[str, Any]:
        """One page of model names (spec §2.5): ``limit`` outside 0..100 or unset means 100."""
        if limit is None or limit > DEFAULT_PAGE or limit < 0:
            limit = DEFAULT_PAGE
        offset = max(next_page_token or 0, 0)
        names = sorted(self.registry.models)
        body: dict[str, Any] = {}
        if offset + limit <= len(names):
            body["nextPageToken"] = str(offset + limit)
        page = names[offset : offset + limit]
        body["models"] = [{"modelName": n, "modelUrl": self.registry.get(n).url} for n in page]
        return body

    async def describe(self, name: str, version: str | None = None, *, customized: bool = False) -> list[Any]:
        """``describe`` of one version (the default when None), or of every version for ``"all"``."""
        if version == "all":
            return [describe(v, await v.pool.measured_workers()) for v in self.registry.versions(name)]
        entry = self.registry.get(name, version)
        body = describe(entry, await entry.pool.measured_workers())
        if customized:
            body["customizedMetadata"] = await self.customized_metadata(entry)
        return [body]

    async def customized_metadata(self, entry: ModelVersion) -> Any:
        """The handler's own metadata (its ``describe_handle``), asked of a worker."""
        if not entry.pool.workers():
            raise ServiceUnavailable(
                f'Model "{entry.name}" has no worker to serve describe request. '
                "Please use scale workers API to add workers."
            )
        job = Request(request_id=str(uuid.uuid4()), headers=[("describe", "True")], inputs=[])
        try:
            response = await entry.pool.predict(job, url_version=entry.version)
        except ServeError:
            raise InternalServerError("Failed to get customized model matadata.") from None
        try:
            return json.loads(response.body)
        except ValueError:
            return {}

    def kserve_ready(self, name: str) -> dict[str, Any]:
        """KServe v1 readiness on the management port (spec §1.6)."""
        entry = self.registry.get(name)
        return {"name": name, "ready": entry.pool.healthy() and bool(entry.pool.workers())}

    # ---- changes ------------------------------------------------------------------------------

    async def register(self, url: str | None, options: RegisterOptions) -> Outcome:
        self.require_model_api()
        if url is None:
            raise BadRequest("Parameter url is required.")
        if options.name is not None and (not is_valid_name(options.name) or "\n" in options.name):
            raise BadRequest(
                f"Invalid model name {options.name!r}: use letters, digits, '_', '-' and '.', starting with a letter "
                "or a digit (as torch-model-archiver requires)."
            )
        if options.workers is not None and options.workers > self.max_workers:
            raise BadRequest(f"initial_workers cannot be more than {self.max_workers}.")
        entry = await self.registry.register(url, options)
        await self.registry.changed()
        prefix = f'Model "{entry.name}" Version: {entry.version} registered with'
        if entry.min_workers == 0:
            return Outcome(f"{prefix} 0 initial workers. Use scale workers API to add workers for the model.")
        if not options.synchronous:
            return Outcome("Processing worker updates...", accepted=True)
        return Outcome(f"{prefix} {entry.min_workers} initial workers")

    async def scale(
        self,
        name: str,
        version: str | None,
        min_worker: int | None,
        max_worker: int | None,
        *,
        synchronous: bool = False,
    ) -> Outcome:
        """Scale one version (the default when None): min defaults to 1, max to min (spec §2.3)."""
        entry = self.registry.get(name, version)
        min_workers = 1 if min_worker is None else min_worker
        max_workers = min_workers if max_worker is None else max_worker
        if max_workers < min_workers:
            raise BadRequest("max_worker cannot be less than min_worker.")
        if min_workers < 0:
            # TorchServe answers 500 here, and its own conformance collection expects it; we keep the
            # status for compatibility but say what is wrong, and change nothing.
            raise InternalServerError("min_worker cannot be negative.")
        if max_workers > self.max_workers:
            raise BadRequest(f"max_worker cannot be more than {self.max_workers}.")
        await self.registry.scale(entry, min_workers, max_workers, wait=synchronous, url_version=version)
        await self.registry.changed()
        if not synchronous:
            return Outcome("Processing worker updates...", accepted=True)
        suffix = f", version: {version}" if version else ""
        return Outcome(f"Workers scaled to {min_workers} for model: {name}{suffix}")

    async def set_default(self, name: str, version: str) -> Outcome:
        self.registry.set_default(name, version)
        await self.registry.changed()
        return Outcome(f'Default version successfully updated for model "{name}" to "{version}"')

    async def unregister(self, name: str, version: str | None = None) -> Outcome:
        self.require_model_api()
        await self.registry.unregister(name, version)
        await self.registry.changed()
        return Outcome(f'Model "{name}" unregistered')
