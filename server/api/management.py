"""The management API (default 127.0.0.1:8081), spec §2: register, scale, describe, list, unregister,
set-default, KServe readiness and the API description; plus tsconsole's ``/console/...`` endpoints
(`server.api.console`).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import psutil
from aiohttp import web

from server.api.console import ConsoleAPI, console_paths
from server.api.http import json_response, new_app, segments
from server.api.openapi import document, operation, param
from server.config import Settings
from server.errors import (
    BadRequest,
    InternalServerError,
    MethodNotAllowed,
    ResourceNotFound,
    ServeError,
    ServiceUnavailable,
)
from server.models.registry import ModelVersion, RegisterOptions, Registry
from server.runtime.messages import Request

# No client needs more workers than this for one model version; larger counts are typos.
DEFAULT_MAX_WORKERS_PER_MODEL = 256
MODEL = param("model_name")
VERSION = param("model_version")


class Params:
    """Query (or JSON body) parameters, parsed the way TorchServe parses them."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    @classmethod
    async def of(cls, request: web.Request, *, json_body: bool = False) -> Params:
        if json_body and request.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/json":
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                raise BadRequest("Invalid JSON in the request body.") from None
            if not isinstance(body, dict):
                raise BadRequest("The request body must be a JSON object.")
            return cls(body)
        return cls({key: request.query.getone(key) for key in request.query})  # the first value wins

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        return None if value is None else str(value)

    def integer(self, key: str, default: int | None = None) -> int | None:
        """An int, or ``default`` when absent or not an integer (TorchServe ignores such values silently)."""
        value = self.values.get(key)
        if isinstance(value, bool):
            return default
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except (TypeError, ValueError):
            return default

    def boolean(self, key: str, default: bool) -> bool:
        """Java's parseBoolean: exactly "true" (any case) is true, anything else false."""
        value = self.values.get(key)
        if value is None:
            return default
        return value is True or str(value).strip().lower() == "true"


def _start_time(epoch: float) -> str:
    """``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`` in local time with a literal Z, as TorchServe 0.12 renders it."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))
    return f"{stamp}.{int(epoch * 1000) % 1000:03d}Z"


def _memory(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def describe(entry: ModelVersion) -> dict[str, Any]:
    """One element of the describe array, fields in TorchServe's order (spec §2.4)."""
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
        "clientTimeoutInMills": int(config.get("clientTimeoutInMills", 0) or 0),
        "parallelType": str(config.get("parallelType", "")),
        "parallelLevel": int(config.get("parallelLevel", 0) or 0),
        "deviceType": "gpu" if entry.pool.workers() and any(w.gpu is not None for w in entry.pool.workers()) else "cpu",
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
                "startTime": _start_time(w.start_time),
                "status": "READY" if w.status == "READY" else "UNLOADING",
                "memoryUsage": _memory(w.pid),
                "pid": w.pid if w.pid is not None else -1,
                "gpu": w.gpu is not None,
                "gpuUsage": "N/A" if w.gpu is None else f"gpuId::{w.gpu}",
            }
            for w in entry.pool.workers()
        ],
        "jobQueueStatus": {
            "remainingCapacity": max(spec.job_queue_size - entry.pool.queue_depth, 0),
            "pendingRequests": entry.pool.queue_depth,
        },
    }
    return out


def api_description() -> dict[str, Any]:
    describe_api = operation("apiDescription", "Get openapi description.")
    register = operation(
        "registerModel",
        "Register a new model.",
        *(
            param(name, "query", kind, required=name == "url")
            for name, kind in (
                ("url", "string"),
                ("model_name", "string"),
                ("handler", "string"),
                ("runtime", "string"),
                ("batch_size", "integer"),
                ("max_batch_delay", "integer"),
                ("initial_workers", "integer"),
                ("synchronous", "boolean"),
                ("response_timeout", "integer"),
                ("startup_timeout", "integer"),
            )
        ),
        responses={
            "200": "Model registered",
            "202": "Accepted",
            "400": "Bad request",
            "404": "Not found",
            "409": "Version already registered",
            "500": "Internal server error",
        },
    )
    scale = operation(
        "setAutoScale",
        "Configure number of workers for a model.",
        MODEL,
        param("min_worker", "query", "integer"),
        param("max_worker", "query", "integer"),
        param("synchronous", "query", "boolean"),
        responses={"200": "Scaled", "202": "Accepted", "400": "Bad request", "404": "Not found"},
    )
    return document(
        {
            "/": {"options": describe_api},
            "/models": {
                "get": operation(
                    "listModels",
                    "List registered models.",
                    param("limit", "query", "integer"),
                    param("next_page_token", "query", "string"),
                ),
                "post": register,
            },
            "/models/{model_name}": {
                "get": operation("describeModel", "Provides detailed information about the default version.", MODEL),
                "put": scale,
                "delete": operation("unregisterModel", "Unregister the default version of a model.", MODEL),
            },
            "/models/{model_name}/{model_version}": {
                "get": operation("version_describeModel", "Describe a version of a model.", MODEL, VERSION),
                "put": {**scale, "operationId": "version_setAutoScale"},
                "delete": operation("version_unregisterModel", "Unregister a version of a model.", MODEL, VERSION),
            },
            "/models/{model_name}/{model_version}/set-default": {
                "put": operation("setDefault", "Set the default version of a model.", MODEL, VERSION)
            },
            "/api-description": {"get": describe_api},
            **console_paths(),
        }
    )


class ManagementAPI:
    def __init__(self, registry: Registry, settings: Settings, console: ConsoleAPI | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.console = console if console is not None else ConsoleAPI(registry, settings)
        self.max_workers = int(settings.get("max_workers_per_model") or DEFAULT_MAX_WORKERS_PER_MODEL)

    def app(self, max_request_size: int) -> web.Application:
        return new_app(self.dispatch, max_request_size)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        segs = segments(request)
        method = request.method.upper()
        if not segs:
            if method != "OPTIONS":
                raise MethodNotAllowed()
            return json_response(api_description())
        if segs == ["api-description"]:
            return json_response(api_description())
        if segs[0] == "models":
            return await self.models(request, method, segs[1:])
        if segs[0] == "console":
            return await self.console.dispatch(request, method, segs[1:])
        if segs[0] == "v1" and len(segs) == 3 and segs[1] == "models":
            if method != "GET":
                raise MethodNotAllowed()
            entry = self.registry.get(segs[2])
            return json_response({"name": segs[2], "ready": entry.pool.healthy() and bool(entry.pool.workers())})
        raise ResourceNotFound()

    async def models(self, request: web.Request, method: str, rest: list[str]) -> web.StreamResponse:
        if not rest:
            if method == "GET":
                return self.list(request)
            if method == "POST":
                return await self.register(request)
            raise MethodNotAllowed()
        name = rest[0]
        if len(rest) == 3 and rest[2] == "set-default":
            if method != "PUT":
                raise MethodNotAllowed()
            self.registry.set_default(name, rest[1])
            await self.registry.changed()
            return json_response({"status": f'Default version successfully updated for model "{name}" to "{rest[1]}"'})
        if len(rest) > 2:
            raise ResourceNotFound()
        version = rest[1] if len(rest) == 2 else None
        if method == "GET":
            return await self.describe(request, name, version)
        if method == "PUT":
            return await self.scale(request, name, version)
        if method == "DELETE":
            return await self.unregister(name, version)
        if method == "OPTIONS":
            self.registry.get(name, None if version == "all" else version)
            return json_response(
                document(api_description()["paths"], title=f"RESTful Management API for: {name}", version="1.0.0")
            )
        raise MethodNotAllowed()

    def _require_model_api(self) -> None:
        if not self.settings.enable_model_api:
            raise MethodNotAllowed()

    def list(self, request: web.Request) -> web.Response:
        params = Params({key: request.query.getone(key) for key in request.query})
        limit = params.integer("limit", 100)
        if limit is None or limit > 100 or limit < 0:
            limit = 100
        offset = max(params.integer("next_page_token", 0) or 0, 0)
        names = sorted(self.registry.models)
        page = names[offset : offset + limit]
        body: dict[str, Any] = {}
        if offset + limit <= len(names):
            body["nextPageToken"] = str(offset + limit)
        body["models"] = [{"modelName": n, "modelUrl": self.registry.get(n).url} for n in page]
        return json_response(body)

    async def register(self, request: web.Request) -> web.Response:
        self._require_model_api()
        params = await Params.of(request, json_body=True)
        url = params.text("url")
        if url is None:
            raise BadRequest("Parameter url is required.")
        initial = params.integer("initial_workers")
        options = RegisterOptions(
            name=params.text("model_name") or None,
            handler=params.text("handler") or None,
            runtime=params.text("runtime"),
            workers=max(initial, 0) if initial is not None else None,
            batch_size=params.integer("batch_size"),
            max_batch_delay=params.integer("max_batch_delay"),
            response_timeout=params.integer("response_timeout"),
            startup_timeout=params.integer("startup_timeout"),
            synchronous=params.boolean("synchronous", True),
        )
        if options.workers is not None and options.workers > self.max_workers:
            raise BadRequest(f"initial_workers cannot be more than {self.max_workers}.")
        entry = await self.registry.register(url, options)
        await self.registry.changed()
        workers = entry.min_workers
        prefix = f'Model "{entry.name}" Version: {entry.version} registered with'
        if workers == 0:
            message = f"{prefix} 0 initial workers. Use scale workers API to add workers for the model."
            return json_response({"status": message})
        if not options.synchronous:
            return json_response({"status": "Processing worker updates..."}, status=202)
        return json_response({"status": f"{prefix} {workers} initial workers"})

    async def describe(self, request: web.Request, name: str, version: str | None) -> web.Response:
        if version == "all":
            return json_response([describe(v) for v in self.registry.versions(name)])
        entry = self.registry.get(name, version)
        body = describe(entry)
        if request.query.get("customized", "").lower() == "true":
            body["customizedMetadata"] = await self.customized_metadata(entry)
        return json_response([body])

    async def customized_metadata(self, entry: ModelVersion) -> Any:
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

    async def scale(self, request: web.Request, name: str, version: str | None) -> web.Response:
        params = await Params.of(request)
        version = version or params.text("model_version")
        entry = self.registry.get(name, version)
        min_workers = params.integer("min_worker", 1)
        assert min_workers is not None
        max_workers = params.integer("max_worker", min_workers)
        assert max_workers is not None
        if max_workers < min_workers:
            raise BadRequest("max_worker cannot be less than min_worker.")
        if min_workers < 0:
            # TorchServe answers 500 here, and its own conformance collection expects it; we keep the
            # status for compatibility but say what is wrong, and change nothing.
            raise InternalServerError("min_worker cannot be negative.")
        if max_workers > self.max_workers:
            raise BadRequest(f"max_worker cannot be more than {self.max_workers}.")
        synchronous = params.boolean("synchronous", False)
        await self.registry.scale(entry, min_workers, max_workers, wait=synchronous, url_version=version)
        await self.registry.changed()
        if not synchronous:
            return json_response({"status": "Processing worker updates..."}, status=202)
        suffix = f", version: {version}" if version else ""
        return json_response({"status": f"Workers scaled to {min_workers} for model: {name}{suffix}"})

    async def unregister(self, name: str, version: str | None) -> web.Response:
        self._require_model_api()
        await self.registry.unregister(name, version)
        await self.registry.changed()
        return json_response({"status": f'Model "{name}" unregistered'})
