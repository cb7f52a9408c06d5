"""Console endpoints on the management listener (tsconsole only, all below ``/console/``).

The Textual console shows everything from the server's side, so a console on another machine sees the
server's machine:

- ``GET /console/system``: host CPU/memory/disk, per-GPU figures (``gpuStatus`` says why there are none),
  per-worker process figures (CPU %, RSS, GPU memory) and ``listeners``: where the server listens (REST
  URLs, gRPC ``host:port``, from the settings) (`server.console.system`).
- ``GET /console/logs``: the server's log files; ``GET /console/logs/{name}?lines=N``: their last lines;
  ``GET /console/logs/{name}/follow?lines=N``: the last lines, then every new one (server-sent events)
  (`server.console.logs`).
- ``POST /console/archives``: build a model archive in the model store from uploaded files (multipart)
  (`server.console.uploads`).

Everything that touches the disk, NVML or ``/proc`` runs off the event loop (``asyncio.to_thread``; system
samples on one thread of their own, see `ConsoleAPI.system`), and so does rendering what it read: a tail of
10,000 long lines is JSON (or server-sent events) before it comes back to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

from server.api.http import NO_CACHE_HEADERS, json_response, render_json, request_id, stamp
from server.api.openapi import operation, param
from server.config import Settings
from server.console.logs import DEFAULT_TAIL_LINES, LOG_FILES, MAX_TAIL_LINES, LogFollower, sse_lines, tail_file
from server.console.system import GpuProbe, SystemSampler, WorkerRef, listeners
from server.console.uploads import FILE_FIELDS, TEXT_FIELDS, ArchiveUploads
from server.errors import BadRequest, MethodNotAllowed, ResourceNotFound, ServiceUnavailable
from server.models.registry import Registry
from server.telemetry.system import SystemStatsSource

log = logging.getLogger("server.api.console")

POLL_S = 0.2  # how often a follow stream looks for new lines
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies (and the client's read timeout) happy
MAX_LOG_STREAMS = 16  # open /console/logs/{name}/follow streams at once
WRITE_CHUNK = 1 << 20  # a log tail larger than this is written in pieces of this size


def _poll_events(follower: LogFollower) -> tuple[bytes, bool]:
    lines, more = follower.poll()
    return sse_lines(lines), more


def _positive_int(value: str | None, key: str, default: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise BadRequest(f"{key} must be a whole number, got {value!r}.") from None
    if number < 0:
        raise BadRequest(f"{key} must not be negative, got {number}.")
    return number


class ConsoleAPI:
    """The ``/console/...`` routes of the management listener (see the module docstring)."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        *,
        stats_source: SystemStatsSource | None = None,
        gpu_probe: GpuProbe | None = None,
        log_files: dict[str, Path] | None = None,
        max_upload_size: int | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.system_sampler = SystemSampler(stats_source, gpu_probe)
        self.listeners = listeners(settings)
        if log_files is None:
            where = {"log": settings.log_location.resolve(), "metrics": settings.metrics_location.resolve()}
            log_files = {name: where[loc] / file for name, (file, loc) in LOG_FILES.items()}
        self.log_files = log_files
        self.uploads = ArchiveUploads(registry, settings, max_upload_size=max_upload_size)
        # Samples are taken on one thread of their own: psutil keeps the host's CPU % baseline per thread,
        # so the console's frequent samples never shorten the metrics collector's interval (nor the reverse).
        self._system_thread: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="console-system")
        self._system_thread.submit(psutil.cpu_percent, None)  # prime that thread's baseline
        self._closing: asyncio.Event | None = None
        self._streams = 0
        self._idle: asyncio.Event | None = None

    # ---- routing ----

    async def dispatch(self, request: web.Request, method: str, rest: list[str]) -> web.StreamResponse:
        """``rest``: the path segments after ``console``."""
        if rest == ["system"]:
            self._only(method, "GET")
            return await self.system()
        if rest and rest[0] == "logs" and len(rest) <= 3:
            self._only(method, "GET")
            if len(rest) == 1:
                return await self.logs()
            if len(rest) == 2:
                return await self.tail(request, rest[1])
            if rest[2] == "follow":
                return await self.follow(request, rest[1])
        if rest == ["archives"]:
            self._only(method, "POST")
            return await self.uploads.upload(request)
        raise ResourceNotFound()

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise MethodNotAllowed()

    # ---- system ----

    async def system(self) -> web.Response:
        workers = [
            WorkerRef(entry.name, entry.version, info)
            for entry in self.registry.all_versions()
            for info in entry.pool.workers()
        ]
        sample = functools.partial(self.system_sampler.sample, workers)
        if self._system_thread is None:  # closed: the server is stopping
            body = await asyncio.to_thread(sample)
        else:
            body = await asyncio.get_running_loop().run_in_executor(self._system_thread, sample)
        return json_response(body | {"listeners": self.listeners})

    # ---- logs ----

    def _log_path(self, name: str) -> Path:
        path = self.log_files.get(name)
        if path is None:
            raise ResourceNotFound(f"Unknown log: {name}. The server's logs are: {', '.join(self.log_files)}.")
        if not path.is_file():
            raise ResourceNotFound(f"Log {name} has no file yet ({path.name} does not exist).")
        return path

    async def logs(self) -> web.Response:
        def listing() -> list[dict[str, Any]]:
            out = []
            for name, path in self.log_files.items():
                with contextlib.suppress(OSError):
                    if path.is_file():
                        out.append({"name": name, "file": path.name, "size": path.stat().st_size})
            return out

        return json_response({"logs": await asyncio.to_thread(listing)})

    @staticmethod
    def _lines_param(request: web.Request) -> int:
        return min(_positive_int(request.query.get("lines"), "lines", DEFAULT_TAIL_LINES), MAX_TAIL_LINES)

    async def tail(self, request: web.Request, name: str) -> web.Response:
        lines = self._lines_param(request)
        path = self._log_path(name)

        def render() -> bytes:
            return render_json({"name": name, "lines": tail_file(path, lines)}).encode("utf-8")

        try:
            body = await asyncio.to_thread(render)
        except FileNotFoundError:
            raise ResourceNotFound(f"Log {name} has no file yet ({path.name} does not exist).") from None
        if len(body) <= WRITE_CHUNK:
            return web.Response(body=body, content_type="application/json", charset="utf-8")
        # a large tail (up to tens of MB) goes out in pieces, the loop free between them: handing the transport
        # all of it at once copies it in one go on the loop (hundreds of ms on a fresh VM's memory)
        response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
        response.content_length = len(body)
        stamp(request, response)
        await response.prepare(request)
        view = memoryview(body)
        for start in range(0, len(body), WRITE_CHUNK):
            await response.write(view[start : start + WRITE_CHUNK])
        await response.write_eof()
        return response

    async def follow(self, request: web.Request, name: str) -> web.StreamResponse:
        if self._streams >= MAX_LOG_STREAMS:
            raise ServiceUnavailable(f"{MAX_LOG_STREAMS} log streams are open already; close one and try again.")
        history = self._lines_param(request)
        path = self._log_path(name)
        follower = LogFollower(path)
        try:
            first = await asyncio.to_thread(lambda: sse_lines(follower.start(history)))
        except FileNotFoundError:
            follower.close()
            raise ResourceNotFound(f"Log {name} has no file yet ({path.name} does not exist).") from None
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "X-Accel-Buffering": "no",
                "x-request-id": request_id(request),
                **NO_CACHE_HEADERS,
            }
        )
        self._stream_opened()
        try:
            await response.prepare(request)
            await self._pump(request, response, follower, first)
        except ConnectionError:
            pass  # the client went away: nothing more to send
        finally:  # no await here: a second cancellation must not skip the bookkeeping
            self._stream_closed()
            follower.close()  # closing a file descriptor does not block
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    async def _pump(
        self, request: web.Request, response: web.StreamResponse, follower: LogFollower, first: bytes
    ) -> None:
        if first:
            await response.write(first)
        else:
            await response.write(b": following\n\n")  # headers and a first byte: the client knows it is on
        last_sent = time.monotonic()
        closing = self._closing_event()
        while not closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            events, more = await asyncio.to_thread(_poll_events, follower)
            if events:
                await response.write(events)
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= KEEPALIVE_S:
                await response.write(b": keep-alive\n\n")
                last_sent = time.monotonic()
            if not more and await self._wait_closing(POLL_S):
                return

    def _closing_event(self) -> asyncio.Event:
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    async def _wait_closing(self, seconds: float) -> bool:
        closing = self._closing_event()
        try:
            async with asyncio.timeout(seconds):
                await closing.wait()
        except TimeoutError:
            return False
        return True

    def _stream_opened(self) -> None:
        self._streams += 1
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()

    def _stream_closed(self) -> None:
        self._streams -= 1
        if self._streams == 0 and self._idle is not None:
            self._idle.set()

    async def close(self, timeout: float = 5.0) -> None:
        """End every follow stream (they return within one poll) and release NVML; call before the
        listeners are cleaned up, so no open stream holds up the server's stop."""
        self._closing_event().set()
        if self._streams and self._idle is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
        if self._system_thread is not None:
            self._system_thread.shutdown(wait=False)
            self._system_thread = None
        await asyncio.to_thread(self.system_sampler.close)


# ---- the API description ------------------------------------------------------------------------------


def console_paths() -> dict[str, Any]:
    """The ``/console/...`` operations, for the management listener's OpenAPI document."""
    name = param("log_name", doc="a log name from GET /console/logs (ts_log, model_log, access_log, ...)")
    lines = param(
        "lines", "query", "integer", doc=f"how many of the last lines (default 200, at most {MAX_TAIL_LINES})"
    )
    properties: dict[str, Any] = {key: {"type": "string"} for key in TEXT_FIELDS}
    properties |= {key: {"type": "string", "format": "binary"} for key in FILE_FIELDS}
    properties["extra_files"] = {"type": "array", "items": {"type": "string", "format": "binary"}}
    upload_body = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["model_name", "version"], "properties": properties}
            }
        },
    }
    return {
        "/console/system": {
            "get": operation(
                "consoleSystem",
                "tsconsole: host CPU/memory/disk, GPUs and per-worker process statistics of the server's machine, "
                "and where the server listens (listeners: inference/management/metrics URLs, metrics null when "
                "its API is off; grpc_inference/grpc_management as host:port).",
            )
        },
        "/console/logs": {"get": operation("consoleLogs", "tsconsole: the server's log files and their sizes.")},
        "/console/logs/{log_name}": {
            "get": operation(
                "consoleLogTail",
                "tsconsole: the last lines of a server log file.",
                name,
                lines,
                responses={"200": "OK", "400": "Bad request", "404": "Unknown log"},
            )
        },
        "/console/logs/{log_name}/follow": {
            "get": operation(
                "consoleLogFollow",
                "tsconsole: the last lines of a server log file, then every new line (text/event-stream).",
                name,
                lines,
                responses={"200": "Server-sent events", "400": "Bad request", "404": "Unknown log"},
            )
        },
        "/console/archives": {
            "post": {
                **operation(
                    "consoleBuildArchive",
                    "tsconsole: build a model archive in the model store from uploaded files (multipart/form-data).",
                    responses={
                        "200": "Archive created",
                        "400": "Bad request",
                        "404": "No model store",
                        "405": "Model API disabled",
                        "413": "Upload larger than max_upload_size",
                    },
                ),
                "requestBody": upload_body,
            }
        },
    }
