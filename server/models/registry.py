"""The registry of models: names, versions, the default version, and the worker pool of each version.

Protocol-independent: the REST (and later gRPC / KServe) adapters call this, never a worker directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archiver import ArchiveInfo, ModelManifest
from server.config import Settings
from server.errors import Conflict, InvalidModel, ModelNotFound, ModelVersionNotFound
from server.models.store import ModelStore, default_name
from server.runtime.messages import Request, Response
from server.runtime.pool import ModelSpec, WorkerPool

log = logging.getLogger("server.models.registry")


@dataclass
class ModelVersion:
    name: str
    version: str
    manifest: ModelManifest
    info: ArchiveInfo
    archive: Path  # the store entry it came from
    spec: ModelSpec
    pool: WorkerPool
    min_workers: int
    max_workers: int
    loaded_at_startup: bool
    config: dict[str, Any] = field(default_factory=dict)  # model-config.yaml
    registered_at: float = field(default_factory=time.time)

    @property
    def mar_name(self) -> str:
        return self.archive.name


def _yaml_config(info: ArchiveInfo) -> dict[str, Any]:
    manifest = info.manifest
    if not isinstance(manifest, ModelManifest) or not manifest.config_file:
        return {}
    loaded = yaml.safe_load((info.path / manifest.config_file).read_text(encoding="utf-8"))  # validated on unpack
    return loaded if isinstance(loaded, dict) else {}


def _positive_int(config: dict[str, Any], key: str) -> int | None:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        if value is not None:
            log.warning("model-config.yaml: ignoring %s=%r (not a whole number)", key, value)
        return None
    return value


@dataclass(frozen=True)
class RegisterOptions:
    """What a registration may set; None means: from model-config.yaml, else the server's defaults."""

    name: str | None = None  # None: the manifest's modelName
    workers: int | None = None  # None: TorchServe's rule (startup: #GPUs or #CPUs; API: 0)
    batch_size: int | None = None
    max_batch_delay: int | None = None  # ms
    response_timeout: int | None = None  # s
    startup_timeout: int | None = None  # s
    synchronous: bool = True
    loaded_at_startup: bool = False


PoolFactory = Callable[[ModelSpec, list[int]], WorkerPool]


class Registry:
    def __init__(self, settings: Settings, store: ModelStore, pool_factory: PoolFactory) -> None:
        self.settings = settings
        self.store = store
        self.pool_factory = pool_factory
        self.models: dict[str, dict[str, ModelVersion]] = {}
        self.defaults: dict[str, str] = {}
        self._lock = asyncio.Lock()

    # ---- lookups ------------------------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        versions = self.models.get(name)
        if not versions:
            raise ModelNotFound(f"Model not found: {name}")
        if version is None:
            return versions[self.defaults[name]]
        if version not in versions:
            raise ModelVersionNotFound(f"Model version: {version} does not exist for model: {name}")
        return versions[version]

    async def predict(self, name: str, version: str | None, request: Request) -> Response:
        model = self.get(name, version)
        return await model.pool.predict(request, url_version=version)

    def all_versions(self) -> list[ModelVersion]:
        return [v for versions in self.models.values() for v in versions.values()]

    # ---- registration -------------------------------------------------------------------------

    def startup_workers(self, name: str, version: str) -> int:
        """Worker count for a model loaded at startup (spec §12.1), before model-config.yaml."""
        saved = self.settings.models.get(name, {}).get(version, {})
        if isinstance(saved.get("minWorkers"), int):
            return saved["minWorkers"]
        if self.settings.default_workers_per_model > 0:
            return self.settings.default_workers_per_model
        if self.settings.number_of_gpu > 0:
            return self.settings.number_of_gpu
        return self.settings.cpu_count

    async def register(self, url: str, options: RegisterOptions | None = None) -> ModelVersion:
        """Find ``url`` in the model store, unpack it, add it, and start its workers."""
        options = options or RegisterOptions()
        archive = self.store.locate(url)
        info = await self.store.unpack(archive)
        try:
            return await self._add(archive, info, options)
        except BaseException:
            self.store.discard(info, archive)
            raise

    async def _add(self, archive: Path, info: ArchiveInfo, options: RegisterOptions) -> ModelVersion:
        name, workers = options.name, options.workers
        loaded_at_startup = options.loaded_at_startup
        manifest = info.manifest
        if not isinstance(manifest, ModelManifest):
            raise InvalidModel(f"{archive.name} is a workflow archive, not a model archive")
        if manifest.synthesized:
            manifest = ModelManifest.synthesize(name or default_name(archive.name))
        model_name = name or manifest.model_name
        version = manifest.model_version
        config = _yaml_config(info)
        saved = self.settings.models.get(model_name, {}).get(version, {})
        if workers is None:
            workers = self.startup_workers(model_name, version) if loaded_at_startup else 0
        min_w, max_w = workers, workers
        yaml_min, yaml_max = _positive_int(config, "minWorkers"), _positive_int(config, "maxWorkers")
        if yaml_min is not None and yaml_max is not None and yaml_max >= max(yaml_min, 1):
            min_w, max_w = max(yaml_min, 1), yaml_max

        def pick(explicit: int | None, yaml_key: str, saved_key: str, default: int) -> int:
            if explicit is not None:
                return explicit
            from_yaml = _positive_int(config, yaml_key)
            if from_yaml is not None:
                return from_yaml
            return saved.get(saved_key, default) if isinstance(saved.get(saved_key), int) else default

        spec = ModelSpec(
            model_name=model_name,
            model_version=version,
            model_dir=str(info.path),
            handler=manifest.handler,
            batch_size=max(1, pick(options.batch_size, "batchSize", "batchSize", 1)),
            max_batch_delay_ms=pick(options.max_batch_delay, "maxBatchDelay", "maxBatchDelay", 100),
            response_timeout_s=pick(
                options.response_timeout, "responseTimeout", "responseTimeout", self.settings.default_response_timeout
            ),
            startup_timeout_s=pick(
                options.startup_timeout, "startupTimeout", "startupTimeout", self.settings.default_startup_timeout
            ),
            envelope=self.settings.service_envelope,
            limit_max_image_pixels=self.settings.limit_max_image_pixels,
            job_queue_size=_positive_int(config, "jobQueueSize") or self.settings.job_queue_size,
            max_retry_timeout_s=_positive_int(config, "maxRetryTimeoutInSec") or 300,
        )
        use_gpu = self.settings.number_of_gpu > 0 and config.get("deviceType", "gpu") != "cpu"
        gpu_ids: list[int] = []
        if use_gpu:
            ids = config.get("deviceIds")
            valid = isinstance(ids, list) and all(
                isinstance(i, int) and 0 <= i < self.settings.number_of_gpu for i in ids
            )
            gpu_ids = list(ids) if valid and ids else list(range(self.settings.number_of_gpu))
        async with self._lock:
            if version in self.models.get(model_name, {}):
                raise Conflict(f"Model version {version} is already registered for model {model_name}")
            pool = self.pool_factory(spec, gpu_ids)
            entry = ModelVersion(
                name=model_name, version=version, manifest=manifest, info=info, archive=archive, spec=spec,
                pool=pool, min_workers=min_w, max_workers=max_w, loaded_at_startup=loaded_at_startup,
                config=config,
            )  # fmt: skip
            self.models.setdefault(model_name, {})[version] = entry
            self.defaults.setdefault(model_name, version)
        log.info("Registered model %s version %s from %s (%d workers)", model_name, version, archive.name, min_w)
        try:
            if min_w > 0:
                await pool.scale(min_w, max_w, wait=options.synchronous)
        except BaseException:
            if not loaded_at_startup:
                await self.unregister(model_name, version)
            raise
        return entry

    async def unregister(self, name: str, version: str) -> None:
        async with self._lock:
            entry = self.models.get(name, {}).pop(version, None)
            if entry is None:
                return
            if not self.models[name]:
                del self.models[name]
                self.defaults.pop(name, None)
            elif self.defaults.get(name) == version:
                self.defaults[name] = next(iter(self.models[name]))
        await entry.pool.close()
        self.store.discard(entry.info, entry.archive)

    async def load_startup_models(self) -> None:
        """``--models`` / ``load_models``: ``all`` or ``[name=]url`` entries; a failing model is logged, not fatal."""
        targets: list[tuple[str | None, str]] = []
        for item in self.settings.load_models:
            if item.lower() == "all":
                targets += [(None, p.name) for p in self.store.entries()]
            elif "=" in item:
                name, url = item.split("=", 1)
                targets.append((name.strip() or None, url.strip()))
            else:
                targets.append((None, item))
        if targets:
            log.info("Loading initial models: %s", ", ".join(url for _, url in targets))

        async def load(name: str | None, url: str) -> None:
            try:
                await self.register(url, RegisterOptions(name=name, loaded_at_startup=True))
            except Exception as exc:  # one bad archive must not keep the others from loading
                log.error("Failed to load model %s: %s", url, exc)

        await asyncio.gather(*(load(name, url) for name, url in targets))

    async def close(self) -> None:
        for entry in self.all_versions():
            await self.unregister(entry.name, entry.version)
