"""The registry of models: names, versions, the default version, and the worker pool of each version.

Protocol-independent: `ModelControl` and `DataPlane` (server/models) build on it; no front door calls a worker.
Parameter precedence follows TorchServe 0.12's code (spec §2.2), which differs from its docs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archiver import ArchiveInfo, ModelManifest
from archiver.manifest import RUNTIMES
from server.config import Settings
from server.errors import (
    BadRequest,
    Conflict,
    InvalidModel,
    InvalidModelVersion,
    ModelNotFound,
    ModelVersionNotFound,
    ServeError,
)
from server.models.store import ModelStore
from server.runtime.pool import ModelSpec, WorkerPool

log = logging.getLogger("server.models.registry")
DEFAULT_TIMEOUT_IN_YAML = 120  # what TorchServe assumes for a timeout a model-config.yaml leaves out


@dataclass
class ModelVersion:
    name: str
    version: str
    manifest: ModelManifest
    info: ArchiveInfo
    archive: Path  # the store entry it came from
    url: str  # the url exactly as registered (describe's modelUrl)
    downloaded: bool  # fetched from a URL into the store: unregistering deletes the file
    spec: ModelSpec
    pool: WorkerPool
    runtime: str
    loaded_at_startup: bool
    config: dict[str, Any] = field(default_factory=dict)  # model-config.yaml
    registered_at: float = field(default_factory=time.time)

    @property
    def mar_name(self) -> str:
        return self.archive.name

    @property
    def min_workers(self) -> int:
        return self.pool.min_workers

    @property
    def max_workers(self) -> int:
        return self.pool.max_workers


def _yaml_config(info: ArchiveInfo) -> dict[str, Any]:
    manifest = info.manifest
    if not isinstance(manifest, ModelManifest) or not manifest.config_file:
        return {}
    try:
        loaded = yaml.safe_load((info.path / manifest.config_file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:  # validated on unpack; a folder model may change underneath
        log.warning("model-config.yaml of %s is ignored: %s", info.path, exc)
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _int(config: dict[str, Any], key: str) -> int | None:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        if value is not None:
            log.warning("model-config.yaml: ignoring %s=%r (not a whole number)", key, value)
        return None
    return value


def start_failed(name: str, version: str, cause: ServeError) -> ServeError:
    """TorchServe's message, and the worker's reason after it (TorchServe leaves the reason in its logs)."""
    reason = f": {cause.message}" if cause.message else ""
    return ServeError(f"Failed to start workers for model {name} version: {version}{reason}", status=cause.status)


@dataclass(frozen=True)
class RegisterOptions:
    """What a registration may set; None means: from model-config.yaml / config, else the defaults."""

    name: str | None = None  # None: the manifest's modelName
    handler: str | None = None  # None: the manifest's handler
    runtime: str | None = None  # None: the manifest's runtime
    workers: int | None = None  # initial workers; None: TorchServe's rule (startup: #GPUs or #CPUs; API: config)
    max_workers: int | None = None  # only snapshot restores set it: then min/max are taken as given
    batch_size: int | None = None
    max_batch_delay: int | None = None  # ms
    response_timeout: int | None = None  # s
    startup_timeout: int | None = None  # s
    synchronous: bool = True
    loaded_at_startup: bool = False


PoolFactory = Callable[[ModelSpec, list[int]], WorkerPool]
ChangeListener = Callable[[], Awaitable[None]]


class Registry:
    def __init__(self, settings: Settings, store: ModelStore, pool_factory: PoolFactory) -> None:
        self.settings = settings
        self.store = store
        self.pool_factory = pool_factory
        self.models: dict[str, dict[str, ModelVersion]] = {}
        self.defaults: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self.listeners: list[ChangeListener] = []  # told after every successful change (snapshots)

    async def changed(self) -> None:
        for listener in self.listeners:
            await listener()

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

    def versions(self, name: str) -> list[ModelVersion]:
        self.get(name)
        return list(self.models[name].values())

    def is_default(self, entry: ModelVersion) -> bool:
        return self.defaults.get(entry.name) == entry.version

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
        """Resolve ``url`` (store entry, folder or allowed URL), unpack it, add it, start its workers."""
        options = options or RegisterOptions()
        if options.runtime is not None and options.runtime not in RUNTIMES:
            raise BadRequest(f"Invalid RuntimeType value: {options.runtime}")
        archive, downloaded = await self.store.fetch(url, self.settings.get("allowed_urls") or "")
        try:
            info = await self.store.unpack(archive)
        except BaseException:
            if downloaded:
                archive.unlink(missing_ok=True)
            raise
        try:
            return await self._add(url, archive, downloaded, info, options)
        except BaseException:
            # A model loaded at startup stays registered when its workers fail (they keep retrying): its files
            # must stay too, until it is unregistered.
            if not any(e.info is info for versions in self.models.values() for e in versions.values()):
                await self.store.discard(info, archive, downloaded=downloaded)
            raise

    def _spec(
        self, name: str, version: str, handler: str, info: ArchiveInfo, config: dict[str, Any], options: RegisterOptions
    ) -> ModelSpec:
        settings = self.settings
        saved = settings.models.get(name, {}).get(version, {})
        saved = saved if isinstance(saved, dict) else {}

        def batching(api: int | None, key: str, default: int) -> int:
            if api is not None:
                return api
            from_yaml = _int(config, key)
            if from_yaml is not None and from_yaml > 0:
                return from_yaml
            return saved[key] if isinstance(saved.get(key), int) else default

        def timeout(api: int | None, key: str, default: int) -> int:
            manifest = info.manifest
            if isinstance(manifest, ModelManifest) and manifest.config_file:
                from_yaml = _int(config, key)  # a model-config.yaml always wins, 120 when it is silent
                return from_yaml if from_yaml is not None else DEFAULT_TIMEOUT_IN_YAML
            if isinstance(saved.get(key), int) and saved[key] > 0:
                return saved[key]
            return api if api is not None and api >= 0 else default

        return ModelSpec(
            model_name=name,
            model_version=version,
            model_dir=str(info.path),
            handler=handler,
            batch_size=max(1, batching(options.batch_size, "batchSize", 1)),
            max_batch_delay_ms=max(0, batching(options.max_batch_delay, "maxBatchDelay", 100)),
            response_timeout_s=timeout(
                options.response_timeout, "responseTimeout", self.settings.default_response_timeout
            ),
            startup_timeout_s=timeout(options.startup_timeout, "startupTimeout", self.settings.default_startup_timeout),
            envelope=self.settings.service_envelope,
            limit_max_image_pixels=self.settings.limit_max_image_pixels,
            job_queue_size=_int(config, "jobQueueSize") or self.settings.job_queue_size,
            max_retry_timeout_s=_int(config, "maxRetryTimeoutInSec") or 300,
            client_timeout_ms=max(_int(config, "clientTimeoutInMills") or 0, 0),
        )

    def _gpu_ids(self, config: dict[str, Any]) -> list[int]:
        count = self.settings.number_of_gpu
        if count <= 0 or config.get("deviceType", "gpu") == "cpu":
            return []
        ids = config.get("deviceIds")
        valid = isinstance(ids, list) and ids and all(isinstance(i, int) and 0 <= i < count for i in ids)
        return list(ids) if valid else list(range(count))

    async def _add(
        self, url: str, archive: Path, downloaded: bool, info: ArchiveInfo, options: RegisterOptions
    ) -> ModelVersion:
        manifest = info.manifest
        if not isinstance(manifest, ModelManifest):
            raise InvalidModel(f"{archive.name} is a workflow archive, not a model archive")
        name = options.name or manifest.model_name
        version = manifest.model_version
        config = _yaml_config(info)
        handler = options.handler or manifest.handler
        spec = self._spec(name, version, handler, info, config, options)
        workers = options.workers
        if workers is None:
            workers = (
                self.startup_workers(name, version)
                if options.loaded_at_startup
                else self.settings.default_workers_per_model
            )
        workers = max(workers, 0)
        min_w, max_w = workers, options.max_workers if options.max_workers is not None else workers
        yaml_min, yaml_max = _int(config, "minWorkers"), _int(config, "maxWorkers")
        restored = options.max_workers is not None  # a snapshot's saved counts win over the archive's YAML
        if not restored and yaml_min is not None and yaml_max is not None and 0 < yaml_min <= yaml_max:
            min_w, max_w = yaml_min, yaml_max
        async with self._lock:
            if version in self.models.get(name, {}):
                raise Conflict(f"Model version {version} is already registered for model {name}")
            pool = self.pool_factory(spec, self._gpu_ids(config))
            entry = ModelVersion(
                name=name, version=version, manifest=manifest, info=info, archive=archive, url=url,
                downloaded=downloaded, spec=spec, pool=pool, runtime=options.runtime or manifest.runtime,
                loaded_at_startup=options.loaded_at_startup, config=config,
            )  # fmt: skip
            self.models.setdefault(name, {})[version] = entry
            self.defaults.setdefault(name, version)
        log.info("Registered model %s version %s from %s (%d workers)", name, version, url, min_w)
        try:
            await pool.scale(min_w, max_w, wait=options.synchronous)
        except ServeError as exc:
            if options.loaded_at_startup:
                raise
            await self._remove(entry)
            raise start_failed(name, version, exc) from exc
        except BaseException:
            if not options.loaded_at_startup:
                await self._remove(entry)
            raise
        return entry

    # ---- changes ------------------------------------------------------------------------------

    async def scale(
        self, entry: ModelVersion, min_workers: int, max_workers: int, *, wait: bool, url_version: str | None = None
    ) -> None:
        """Scale one version; a failure names the version as the request did (``null`` when it named none)."""
        try:
            await entry.pool.scale(min_workers, max_workers, wait=wait)
        except ServeError as exc:
            raise start_failed(entry.name, url_version or "null", exc) from exc

    def set_default(self, name: str, version: str) -> None:
        if name not in self.models:
            raise ModelNotFound(f"Model not found: {name}")
        if version not in self.models[name]:
            raise ModelVersionNotFound(f"Model version {version} does not exist for model {name}")
        self.defaults[name] = version

    async def unregister(self, name: str, version: str | None = None) -> ModelVersion:
        entry = self.get(name, version)
        if self.is_default(entry) and len(self.models[name]) > 1:
            raise InvalidModelVersion(f"Cannot remove default version for model {name}")
        drain_s = float(self.settings.get("unregister_model_timeout") or 120)
        await self._remove(entry, drain_s=drain_s)
        return entry

    async def _remove(self, entry: ModelVersion, *, drain_s: float = 0) -> None:
        """Take the version out (new requests: 404), let its queued and in-flight requests finish within
        ``drain_s`` seconds (unregister: ``unregister_model_timeout``), then stop its workers."""
        async with self._lock:
            versions = self.models.get(entry.name, {})
            if versions.get(entry.version) is not entry:
                return
            del versions[entry.version]
            if not versions:
                del self.models[entry.name]
                self.defaults.pop(entry.name, None)
            elif self.defaults.get(entry.name) == entry.version:
                self.defaults[entry.name] = next(iter(versions))
        await entry.pool.close(drain_s=drain_s)
        await self.store.discard(entry.info, entry.archive, downloaded=entry.downloaded)

    # ---- startup ------------------------------------------------------------------------------

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

    async def restore(self, snapshot: dict[str, Any]) -> None:
        """Re-register every model version of a config snapshot (spec §10); load_models is ignored then."""
        models = snapshot.get("models", {})
        for name, versions in models.items():
            for version, saved in versions.items():
                options = RegisterOptions(
                    name=name,
                    workers=saved.get("minWorkers"),
                    max_workers=saved.get("maxWorkers"),
                    batch_size=saved.get("batchSize"),
                    max_batch_delay=saved.get("maxBatchDelay"),
                    response_timeout=saved.get("responseTimeout"),
                    startup_timeout=saved.get("startupTimeout"),
                    runtime=saved.get("runtimeType"),
                )
                try:
                    entry = await self.register(saved["marName"], options)
                except Exception as exc:
                    log.error("Failed to restore model %s version %s: %s", name, version, exc)
                    continue
                if entry.version != version:
                    log.warning("Restored %s: the archive now holds version %s, not %s", name, entry.version, version)
                if saved.get("defaultVersion"):
                    self.defaults[name] = entry.version

    async def close(self, *, drain_s: float = 0) -> None:
        """Remove every version at once, each draining its requests for up to ``drain_s`` seconds."""
        await asyncio.gather(*(self._remove(entry, drain_s=drain_s) for entry in self.all_versions()))
