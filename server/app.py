"""The model server: settings in, listeners and worker pools up, a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import encodings.idna  # noqa: F401  (the first listener would import it on the event loop)
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from server.api.console import ConsoleAPI
from server.api.grpc.inference import InferenceServicer
from server.api.grpc.management import ManagementServicer
from server.api.grpc.oip import OpenInferenceServicer
from server.api.grpc.server import GrpcServers
from server.api.http import BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT_S, STATUS_HOOK, AccessLogger
from server.api.inference import InferenceAPI
from server.api.management import ManagementAPI
from server.api.metrics import metrics_app
from server.api.oip_rest import OpenInferenceREST
from server.auth import TokenAuthority
from server.config import Address, Settings
from server.models.control import ModelControl
from server.models.dataplane import DataPlane
from server.models.download import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S
from server.models.registry import Registry
from server.models.snapshot import SnapshotWriter
from server.models.store import ModelStore
from server.oip.service import OpenInference
from server.runtime.pool import ModelSpec, WorkerPool
from server.telemetry.loop_watch import LoopWatch
from server.telemetry.metrics import ServerMetrics

log = logging.getLogger("server.app")
STARTED = "Model server started."
SHUTDOWN_DRAIN_S = 20.0  # how long requests under way may take to finish when the server stops


class ListenError(Exception):
    """A listener could not be opened (port in use, bad address)."""


def worker_env(settings: Settings) -> dict[str, str]:
    """The server's environment less ``blacklist_env_vars`` (the pool makes this project importable)."""
    env = dict(os.environ)
    pattern = settings.get("blacklist_env_vars")
    if pattern:
        env = {k: v for k, v in env.items() if not re.fullmatch(pattern, k)}
    env["TS_DECODE_INPUT_REQUEST"] = str(settings.decode_input_request).lower()
    return env


class ModelServer:
    def __init__(self, settings: Settings, *, python: str | None = None) -> None:
        self.settings = settings
        self.python = python or sys.executable
        self.work_dir = Path(tempfile.mkdtemp(prefix="tsconsole-"))
        self.store = ModelStore(
            settings.model_store,
            self.work_dir,
            max_download_bytes=int(settings.positive("max_download_size", DEFAULT_MAX_BYTES)),
            download_timeout_s=settings.positive("download_timeout", DEFAULT_TIMEOUT_S),
        )
        self.metrics = ServerMetrics(settings)
        self.loop_watch = LoopWatch.from_settings(settings)  # logs event-loop stalls (loop_stall_warn_ms)
        self._collector: asyncio.Task[None] | None = None
        env = worker_env(settings)
        self.registry = Registry(settings, self.store, self._pool_factory(env))
        self.snapshots = SnapshotWriter(settings, self.registry)
        self.registry.listeners.append(self.snapshots.write)
        self.runners: list[web.AppRunner] = []
        self.console = ConsoleAPI(self.registry, settings)  # the management listener's /console/... routes
        # The core every front door calls: management rules, inference, the Open Inference Protocol.
        self.control = ModelControl(self.registry, settings)
        self.data = DataPlane(self.registry, settings.max_response_size)
        self.oip = OpenInference(self.data, self.control)
        self.auth = TokenAuthority(settings)
        self.grpc = GrpcServers(
            settings,
            self.auth,
            InferenceServicer(self.data),
            ManagementServicer(self.control),
            OpenInferenceServicer(self.oip),
        )

    def _pool_factory(self, env: dict[str, str]):
        def make(spec: ModelSpec, gpu_ids: list[int]) -> WorkerPool:
            return WorkerPool(spec, python=self.python, env=env, gpu_ids=gpu_ids, socket_dir=None, metrics=self.metrics)

        return make

    async def _listen(self, app: web.Application, address: Address, name: str, *, cancel: bool = False) -> None:
        """Serve ``app`` at ``address``; ``cancel``: a client that disconnects cancels its request's handler."""
        app[STATUS_HOOK] = self.metrics.http_response
        app[BODY_TIMEOUT] = self.settings.positive("request_body_timeout", DEFAULT_BODY_TIMEOUT_S)
        runner = web.AppRunner(app, access_log_class=AccessLogger, handle_signals=False, handler_cancellation=cancel)
        await runner.setup()
        self.runners.append(runner)
        site: web.BaseSite
        if address.scheme == "unix":
            site = web.UnixSite(runner, address.path)
        elif address.scheme == "https":
            raise ListenError(f"{name}: https listeners are not supported yet ({address.url})")
        else:
            site = web.TCPSite(runner, address.host, address.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(f"{name}: cannot listen on {address.url}: {exc.strerror or exc}") from None
        log.info("%s API bind to: %s", name, address.url)

    async def start(self) -> None:
        s = self.settings
        self.loop_watch.start()
        log.info("Model store: %s", s.model_store or "(none)")
        for key in s.unknown_keys:
            log.warning("config: unknown key %s is ignored", key)
        self.auth.start()
        inference = InferenceAPI(
            self.data,
            OpenInferenceREST(self.oip),
            self.auth,
            startup_models=[],
        )
        management = ManagementAPI(self.control, self.auth, self.console)
        if s.inference_address == s.management_address:
            raise ListenError("one address for both the inference and management APIs is not supported yet")
        await self._listen(inference.app(s.max_request_size), s.inference_address, "Inference", cancel=True)
        await self._listen(management.app(s.max_request_size), s.management_address, "Management")
        if s.enable_metrics_api:
            await self._listen(metrics_app(self.metrics, s.max_request_size), s.metrics_address, "Metrics")
        try:
            await self.grpc.start()
        except OSError as exc:
            raise ListenError(str(exc)) from None
        self._collector = asyncio.create_task(self.metrics.run_system_collector())
        if s.model_snapshot is not None:
            log.info("Restoring %d models from snapshot %s", len(s.model_snapshot.get("models", {})), s.config_file)
            await self.registry.restore(s.model_snapshot)
        else:
            await self.registry.load_startup_models()
        inference.startup_models = list(self.registry.models)
        await self.snapshots.write("startup")
        log.info(STARTED)

    async def stop(self) -> None:
        """Stop taking connections, write the shutdown snapshot, let the requests under way finish (up to
        `SHUTDOWN_DRAIN_S`, while their model has a ready worker; else 503 at once), then stop everything."""
        log.info("Stopping the model server")
        await self.console.close()  # ends open log streams first: they would hold up the listeners' cleanup
        for runner in self.runners:
            for site in list(runner.sites):
                await site.stop()  # no new connections; requests under way go on
        await self.snapshots.write("shutdown")
        await asyncio.gather(self.grpc.stop(SHUTDOWN_DRAIN_S), self.registry.close(drain_s=SHUTDOWN_DRAIN_S))
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        self.metrics.close()
        self.auth.close()
        await asyncio.to_thread(shutil.rmtree, self.work_dir, True)  # unpacked models: off the event loop
        self.loop_watch.stop()
        log.info("Model server stopped.")


async def serve(settings: Settings, *, python: str | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop every listener and worker."""
    server = ModelServer(settings, python=python)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        print(STARTED, flush=True)
        await stop.wait()
    finally:
        await server.stop()
