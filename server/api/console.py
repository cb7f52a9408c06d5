"""Console endpoints on the management listener (tsconsole only, all below ``/console/``).

The Textual console shows everything from the server's side, so a console on another machine sees the
server's machine:

- ``GET /console/system``: host CPU/memory/disk, per-GPU figures (``gpuStatus`` says why there are none),
  per-worker process figures (CPU %, RSS, GPU memory) and ``listeners``: where the server listens (REST
  URLs, gRPC ``host:port``, from the settings).
- ``GET /console/logs``: the server's log files; ``GET /console/logs/{name}?lines=N``: their last lines;
  ``GET /console/logs/{name}/follow?lines=N``: the last lines, then every new one (server-sent events).
- ``POST /console/archives``: build a model archive in the model store from uploaded files (multipart).

Everything that touches the disk, NVML or ``/proc`` runs off the event loop (``asyncio.to_thread``; system
samples on one thread of their own, see `ConsoleAPI.system`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import parse_qsl, unquote

import aiohttp
import psutil
from aiohttp import BodyPartReader, web

from archiver import ArchiveInfo, ArchiverError, ModelArchiveConfig, build_model_archive, inspect_archive
from archiver.manifest import BUILTIN_HANDLERS, LSP_BUILTIN_HANDLERS
from archiver.mar import archive_path, check_output
from archiver.writer import FORMAT_SUFFIXES
from server.api.http import NO_CACHE_HEADERS, json_response, request_id
from server.api.openapi import operation, param
from server.config import Settings
from server.errors import (
    BadRequest,
    Conflict,
    InternalServerError,
    MethodNotAllowed,
    ResourceNotFound,
    ServeError,
    ServiceUnavailable,
)
from server.models.registry import Registry
from server.runtime.pool import WorkerInfo
from server.telemetry.system import GB, MB, PsutilNvmlSource, SystemStats, SystemStatsSource

log = logging.getLogger("server.api.console")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_TAIL_LINES = 200
MAX_TAIL_LINES = 10_000
TAIL_MAX_BYTES = 32 * MiB  # never read more than this from the end of a file for one tail
POLL_S = 0.2  # how often a follow stream looks for new lines
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies (and the client's read timeout) happy
FOLLOW_CHUNK = 1 * MiB  # read at most this much per poll; a full chunk is followed at once by the next read
MAX_PARTIAL_LINE = 1 * MiB  # a "line" without a newline longer than this is sent as it is
DEFAULT_MAX_UPLOAD = 20 * GiB  # config key max_upload_size
MAX_LOG_STREAMS = 16  # open /console/logs/{name}/follow streams at once
MAX_UPLOADS = 2  # archive uploads received and built at once
MAX_FIELD_BYTES = 64 * KiB  # a text form field (model_name, handler, ...)
UPLOAD_CHUNK = 1 * MiB

# name -> (file name, "log" or "metrics" location), in the order the console lists them
LOG_FILES = {
    "ts_log": ("ts_log.log", "log"),
    "model_log": ("model_log.log", "log"),
    "access_log": ("access_log.log", "log"),
    "ts_metrics": ("ts_metrics.log", "metrics"),
    "model_metrics": ("model_metrics.log", "metrics"),
}

FILE_FIELDS = ("serialized_file", "model_file", "handler_file", "extra_files", "requirements_file", "config_file")
TEXT_FIELDS = ("model_name", "version", "handler", "runtime", "force", "archive_format")
_REPEATABLE = {"extra_files"}


class PayloadTooLarge(ServeError):
    status, type = 413, "RequestEntityTooLargeException"


# ---- reading log files ------------------------------------------------------------------------------

# Characters Python's str.splitlines() (and so httpx's aiter_lines) takes for line breaks: inside one log
# line they would split a server-sent event, so a follow stream sends them as spaces.
_SSE_BREAKS = str.maketrans(dict.fromkeys("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", " "))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removesuffix("\r")


def read_last_lines(
    f: IO[bytes], n: int, end: int, *, block: int = 64 * KiB, max_bytes: int = TAIL_MAX_BYTES
) -> list[str]:
    """The last ``n`` lines of ``f[0:end]``, reading backwards block by block (never the whole file).

    A final line without a newline counts as a line. At most ``max_bytes`` are read: a tail of huge lines
    comes back shorter rather than exhausting memory.
    """
    if n <= 0 or end <= 0:
        return []
    pos, read, newlines = end, 0, 0
    chunks: list[bytes] = []
    while pos > 0 and newlines <= n and read < max_bytes:
        size = min(block, pos, max_bytes - read)
        pos -= size
        f.seek(pos)
        chunk = f.read(size)  # shorter if the file shrank underneath: then that is all there is
        chunks.append(chunk)
        read += size
        newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    data = data.removesuffix(b"\n")
    lines = data.split(b"\n")
    if pos > 0:
        lines = lines[1:]  # the first piece starts mid-line
    return [_decode(line) for line in lines[-n:]]


def tail_file(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of the file at ``path`` (blocking: call it off the event loop)."""
    with open(path, "rb") as f:
        return read_last_lines(f, n, os.fstat(f.fileno()).st_size)


class LogFollower:
    """The lines appended to a log file, across rotation (rename + new file) and truncation.

    Blocking: call `start` and `poll` off the event loop. Only complete lines are returned; a partial last
    line waits for its newline (or for a rotation, which ends it).
    """

    def __init__(self, path: Path, *, chunk: int = FOLLOW_CHUNK) -> None:
        self.path = path
        self.chunk = chunk
        self._file: IO[bytes] | None = None
        self._partial = b""

    def start(self, history: int) -> list[str]:
        """Open the file; the last ``history`` complete lines; following starts right after them."""
        self._file = open(self.path, "rb")  # noqa: SIM115 - held open while following, closed in close()
        size = os.fstat(self._file.fileno()).st_size
        end = self._last_newline_end(size)
        self._file.seek(end)
        return read_last_lines(self._file, history, end) if history > 0 else []

    def _last_newline_end(self, size: int) -> int:
        """The offset just after the file's last newline (0 when none within TAIL_MAX_BYTES of the end)."""
        assert self._file is not None
        pos = size
        while pos > 0 and size - pos < TAIL_MAX_BYTES:
            step = min(64 * KiB, pos)
            pos -= step
            self._file.seek(pos)
            at = self._file.read(step).rfind(b"\n")
            if at >= 0:
                return pos + at + 1
        return 0 if pos == 0 else size

    def poll(self) -> tuple[list[str], bool]:
        """New complete lines, and whether more are waiting right now (a full chunk was read)."""
        if self._file is None and not self._reopen():
            return [], False
        assert self._file is not None
        data = self._file.read(self.chunk)
        if data:
            return self._lines(data), len(data) >= self.chunk
        lines: list[str] = []
        try:
            on_disk = os.stat(self.path)
        except OSError:  # rotating right now (renamed, not yet recreated): keep the old file
            return [], False
        mine = os.fstat(self._file.fileno())
        if (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev):
            # Rotated: whatever was written to the old file before the rename first, then the new file.
            while rest := self._file.read(self.chunk):
                lines += self._lines(rest)
            lines += self._flush_partial()
            self._file.close()
            self._file = None
            if self._reopen():
                assert self._file is not None
                data = self._file.read(self.chunk)
                lines += self._lines(data)
                return lines, len(data) >= self.chunk
            return lines, False
        if mine.st_size < self._file.tell():  # truncated in place: start again from its beginning
            self._partial = b""
            self._file.seek(0)
            data = self._file.read(self.chunk)
            return self._lines(data), len(data) >= self.chunk
        return lines, False

    def _reopen(self) -> bool:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - see start()
        except OSError:
            return False
        return True

    def _lines(self, data: bytes) -> list[str]:
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        if len(self._partial) > MAX_PARTIAL_LINE:
            pieces.append(self._partial)
            self._partial = b""
        return [_decode(p) for p in pieces]

    def _flush_partial(self) -> list[str]:
        rest, self._partial = self._partial, b""
        return [_decode(rest)] if rest else []

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def sse_lines(lines: Iterable[str]) -> bytes:
    """``data: <line>\\n\\n`` for each line, in one buffer."""
    return "".join(f"data: {line.translate(_SSE_BREAKS)}\n\n" for line in lines).encode("utf-8")


# ---- uploaded file names ------------------------------------------------------------------------------

# "," separates --extra-files and "*?[]" are glob patterns there; control characters have no business here.
_REFUSED_CHARS = re.compile(r"[,*?\[\]\x00-\x1f\x7f]")


def safe_file_name(raw: str | None, field_name: str = "file") -> str:
    """The base name of an uploaded file, or 400: ``../x.py`` -> ``x.py``, ``C:\\a\\b.pth`` -> ``b.pth``.

    Percent-escapes are decoded first (some clients, aiohttp's among them, send ``my%20model.pth``).

    Refused: no name, ``.``/``..``, hidden names (``.bashrc``), control characters, ``,*?[]`` (they mean
    something to the archiver's ``--extra-files``) and names over 255 bytes.
    """
    if raw is None or not raw.strip():
        raise BadRequest(f"{field_name}: the uploaded file has no file name.")
    name = unquote(raw).replace("\\", "/").rstrip("/ ").split("/")[-1].strip()
    if not name or name in (".", "..") or name.startswith("."):
        raise BadRequest(f"{field_name}: refusing the uploaded file name {raw!r} (empty, relative or hidden).")
    if _REFUSED_CHARS.search(name):
        raise BadRequest(f"{field_name}: refusing the uploaded file name {raw!r} (control characters or ,*?[]).")
    if len(name.encode("utf-8")) > 255:
        raise BadRequest(f"{field_name}: the uploaded file name is longer than 255 bytes.")
    return name


# ---- system statistics ----------------------------------------------------------------------------------


@dataclass
class GpuDetails:
    """What NVML tells beyond `GpuStats`: per-GPU temperature (°C) and power (W), GPU memory per pid."""

    temperature: dict[int, float] = field(default_factory=dict)
    power: dict[int, float] = field(default_factory=dict)
    process_memory: dict[int, int] = field(default_factory=dict)  # pid -> bytes


class GpuProbe(Protocol):
    """The console's extra GPU readings (injectable: tests give a fake)."""

    def status(self) -> str:
        """Why there is no GPU, as a plain sentence (asked only when the stats source reports none)."""
        ...

    def details(self, indices: list[int]) -> GpuDetails:
        """Temperature, power and per-process memory of the GPUs at these NVML indices; never raises."""
        ...

    def close(self) -> None: ...


def _nvml_reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "Shared Library Not Found" in text or "Library Not Found" in text:
        return "no NVIDIA driver (libnvidia-ml is not installed)"
    if "Driver Not Loaded" in text:
        return "the NVIDIA driver is not loaded"
    return text


class NvmlProbe:
    """NVML (``pynvml``), initialised once on first use; every failure is a None or a reason, not an error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None
        self._reason: str | None = None  # set once NVML was tried and is unusable

    def _init(self) -> Any:
        if self._nvml is None and self._reason is None:
            try:
                import pynvml
            except ImportError:
                self._reason = "NVML is not available: the nvidia-ml-py package is not installed"
                return None
            try:
                pynvml.nvmlInit()
            except Exception as exc:
                self._reason = f"NVML is not available: {_nvml_reason(exc)}"
            else:
                self._nvml = pynvml
        return self._nvml

    def status(self) -> str:
        with self._lock:
            nvml = self._init()
            if nvml is None:
                return self._reason or "NVML is not available"
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except Exception as exc:
                return f"NVML cannot count the GPUs: {_nvml_reason(exc)}"
            if count == 0:
                return "NVML found no GPU on this host"
            return f"NVML sees {count} GPU(s) but the statistics source reports none"

    def details(self, indices: list[int]) -> GpuDetails:
        out = GpuDetails()
        with self._lock:
            nvml = self._init()
            if nvml is None:
                return out
            for index in indices:
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                except Exception:
                    continue
                with contextlib.suppress(Exception):
                    out.temperature[index] = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
                with contextlib.suppress(Exception):
                    out.power[index] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW -> W
                on_device: dict[int, int] = {}  # a process may be listed as compute and as graphics
                for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                    with contextlib.suppress(Exception):
                        for proc in getattr(nvml, getter)(handle):
                            used = getattr(proc, "usedGpuMemory", None)
                            if isinstance(used, int) and 0 <= used < 1 << 62:  # None / a sentinel: unknown
                                on_device[proc.pid] = max(on_device.get(proc.pid, 0), used)
                for pid, used in on_device.items():
                    out.process_memory[pid] = out.process_memory.get(pid, 0) + used
        return out

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                with contextlib.suppress(Exception):
                    self._nvml.nvmlShutdown()
            self._nvml = None
            self._reason = None


def _bytes(value: float | None, unit: int) -> int | None:
    return None if value is None else round(value * unit)


@dataclass(frozen=True)
class WorkerRef:
    model: str
    version: str
    info: WorkerInfo


class SystemSampler:
    """One ``/console/system`` document. Thread-safe; `sample` blocks (call it off the event loop).

    Per-process CPU % needs a primed `psutil.Process` (its first ``cpu_percent`` call returns 0.0): the
    processes are kept by pid between samples, so a worker's first sample has ``cpuPercent: null`` and every
    later one the percentage since the previous sample (100 = one core).
    """

    def __init__(self, source: SystemStatsSource | None = None, gpu_probe: GpuProbe | None = None) -> None:
        self._owns_source = source is None
        self.source: SystemStatsSource = source if source is not None else PsutilNvmlSource(gpus=True)
        self._owns_probe = gpu_probe is None
        self.probe: GpuProbe = gpu_probe if gpu_probe is not None else NvmlProbe()
        self._procs: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self._status: str | None = None  # the probe's reason, asked once

    def sample(self, workers: list[WorkerRef]) -> dict[str, Any]:
        stats: SystemStats = self.source.sample()
        disk_path = getattr(self.source, "disk_path", "/")
        memory_total = _try(lambda: psutil.virtual_memory().total)
        disk_total = _try(lambda: psutil.disk_usage(disk_path).total)
        host = {
            "cpuPercent": stats.cpu_percent,
            "cpuCount": psutil.cpu_count() or os.cpu_count() or 1,
            "memoryUsed": _bytes(stats.memory_used_mb, MB),
            "memoryTotal": memory_total,
            "memoryPercent": stats.memory_percent,
            "diskUsed": _bytes(stats.disk_used_gb, GB),
            "diskTotal": disk_total,
        }
        details = self.probe.details([g.index for g in stats.gpus]) if stats.gpus else GpuDetails()
        gpus = [
            {
                "id": g.index,
                "name": g.name,
                "utilization": g.utilization_percent,
                "memoryUsed": _bytes(g.memory_used_mb, MB),
                "memoryTotal": _bytes(g.memory_total_mb, MB),
                "temperature": details.temperature.get(g.index),
                "power": details.power.get(g.index),
            }
            for g in stats.gpus
        ]
        if gpus:
            status = "ok"
        else:
            if self._status is None:
                self._status = self.probe.status()
            status = self._status
        return {"host": host, "gpus": gpus, "gpuStatus": status, "workers": self._workers(workers, details)}

    def _workers(self, workers: list[WorkerRef], details: GpuDetails) -> list[dict[str, Any]]:
        out = []
        with self._lock:
            live: set[int] = set()
            for ref in workers:
                pid = ref.info.pid
                cpu = rss = None
                if pid is not None:
                    live.add(pid)
                    cpu, rss = self._process(pid)
                out.append(
                    {
                        "model": ref.model,
                        "version": ref.version,
                        "id": str(ref.info.id),
                        "pid": pid,
                        "status": ref.info.status,
                        "cpuPercent": cpu,
                        "rss": rss,
                        "gpu": ref.info.gpu,
                        "gpuMemory": details.process_memory.get(pid) if pid is not None else None,
                    }
                )
            for gone in set(self._procs) - live:
                del self._procs[gone]
        return out

    def _process(self, pid: int) -> tuple[float | None, int | None]:
        proc = self._procs.get(pid)
        try:
            if proc is None or not proc.is_running():  # is_running also catches a reused pid
                proc = psutil.Process(pid)
                self._procs[pid] = proc
                with proc.oneshot():
                    proc.cpu_percent(interval=None)  # prime
                    return None, proc.memory_info().rss
            with proc.oneshot():
                return float(proc.cpu_percent(interval=None)), proc.memory_info().rss
        except psutil.Error:
            self._procs.pop(pid, None)
            return None, None

    def close(self) -> None:
        if self._owns_source:
            self.source.close()
        if self._owns_probe:
            self.probe.close()


def _try(read: Any) -> Any:
    try:
        return read()
    except Exception:
        return None


# ---- the API --------------------------------------------------------------------------------------------


def listeners(settings: Settings) -> dict[str, str | None]:
    """The ``listeners`` of ``/console/system``: REST URLs (``metrics`` None when its API is off), gRPC targets."""
    return {
        "inference": settings.inference_address.url,
        "management": settings.management_address.url,
        "metrics": settings.metrics_address.url if settings.enable_metrics_api else None,
        "grpc_inference": settings.grpc_inference_address.target,
        "grpc_management": settings.grpc_management_address.target,
    }


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


def _size_setting(settings: Settings, key: str, default: int) -> int:
    raw = settings.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        return max(int(raw.strip()), 0)
    except ValueError:
        log.warning("config: %s=%r is not a whole number of bytes; using %d", key, raw, default)
        return default


@dataclass
class _Upload:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    received: int = 0


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
        self.max_upload_size = (
            max_upload_size
            if max_upload_size is not None
            else _size_setting(settings, "max_upload_size", DEFAULT_MAX_UPLOAD)
        )
        # Samples are taken on one thread of their own: psutil keeps the host's CPU % baseline per thread,
        # so the console's frequent samples never shorten the metrics collector's interval (nor the reverse).
        self._system_thread: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="console-system")
        self._system_thread.submit(psutil.cpu_percent, None)  # prime that thread's baseline
        self._closing: asyncio.Event | None = None
        self._streams = 0
        self._uploads = 0
        self._idle: asyncio.Event | None = None
        self._store_lock = threading.Lock()

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
            return await self.upload(request)
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
        try:
            found = await asyncio.to_thread(tail_file, path, lines)
        except FileNotFoundError:
            raise ResourceNotFound(f"Log {name} has no file yet ({path.name} does not exist).") from None
        return json_response({"name": name, "lines": found})

    async def follow(self, request: web.Request, name: str) -> web.StreamResponse:
        if self._streams >= MAX_LOG_STREAMS:
            raise ServiceUnavailable(f"{MAX_LOG_STREAMS} log streams are open already; close one and try again.")
        history = self._lines_param(request)
        path = self._log_path(name)
        follower = LogFollower(path)
        try:
            first = await asyncio.to_thread(follower.start, history)
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
        self, request: web.Request, response: web.StreamResponse, follower: LogFollower, first: list[str]
    ) -> None:
        if first:
            await response.write(sse_lines(first))
        else:
            await response.write(b": following\n\n")  # headers and a first byte: the client knows it is on
        last_sent = time.monotonic()
        closing = self._closing_event()
        while not closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            lines, more = await asyncio.to_thread(follower.poll)
            if lines:
                await response.write(sse_lines(lines))
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

    # ---- archives ----

    async def upload(self, request: web.Request) -> web.Response:
        if not self.settings.enable_model_api:
            raise MethodNotAllowed()
        if self._uploads >= MAX_UPLOADS:
            raise ServiceUnavailable(f"{MAX_UPLOADS} uploads are in progress; try again when one has finished.")
        self._uploads += 1
        try:
            return await self._upload(request)
        finally:
            self._uploads -= 1

    async def _upload(self, request: web.Request) -> web.Response:
        store = self.settings.model_store
        if store is None:
            raise ResourceNotFound("Model store has not been configured.")
        cap = self.max_upload_size
        if request.content_length is not None and request.content_length > cap:
            raise self._too_large()
        if request.content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise BadRequest("Send the archive's files as multipart/form-data.")
        # A private (0700) folder inside the store: parts are written to disk as they arrive, and the
        # built archive moves into the store with one rename on the same file system.
        try:
            staging = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".tsconsole-upload-", dir=store))
        except OSError as exc:
            raise InternalServerError(f"Cannot write to the model store: {exc.strerror or exc}") from None
        try:
            try:
                upload = await self._receive(request, staging / "in", cap)
            except (aiohttp.ClientError, ConnectionError, asyncio.IncompleteReadError) as exc:
                raise BadRequest(f"The upload was interrupted: {exc or type(exc).__name__}") from None
            config = self._archive_config(upload, staging / "out")
            in_use = {entry.archive.resolve(): entry.name for entry in self.registry.all_versions()}
            result, info = await asyncio.to_thread(self._build, config, Path(store), in_use)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        size = result.stat().st_size if result.is_file() else info.unpacked_bytes
        log.info("Archive %s built from an upload of %d bytes", result.name, upload.received)
        return json_response(
            {
                "status": f"Archive {result.name} created",
                "archive": result.name,
                "url": result.name,
                "files": [e.name for e in info.files],
                "size": size,
            }
        )

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The upload is larger than max_upload_size ({self.max_upload_size} bytes). "
            "Raise max_upload_size in config.properties, or copy the files to the server and archive there."
        )

    async def _receive(self, request: web.Request, folder: Path, cap: int) -> _Upload:
        upload = _Upload()
        await asyncio.to_thread(folder.mkdir)
        if request.content_type == "application/x-www-form-urlencoded":
            # Fields only (what an HTTP client sends when there is no file to upload, e.g. a built-in handler).
            limit = MAX_FIELD_BYTES * len(TEXT_FIELDS)
            body = await request.content.read(limit + 1)
            self._count(upload, len(body), cap)
            if len(body) > limit:
                raise BadRequest(f"The form is longer than {limit} bytes.")
            for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                if key not in TEXT_FIELDS:
                    raise BadRequest(f"Unknown form field {key!r}. Accepted fields: {', '.join(TEXT_FIELDS)}.")
                if key in upload.fields:
                    raise BadRequest(f"Form field {key} is given twice.")
                upload.fields[key] = value.strip()
            return upload
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError) as exc:
            raise BadRequest(f"Cannot read the multipart body: {exc}") from None
        count = 0
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise BadRequest("Nested multipart bodies are not supported.")
            name = part.name or ""
            if name in TEXT_FIELDS:
                if name in upload.fields:
                    raise BadRequest(f"Form field {name} is given twice.")
                upload.fields[name] = await self._read_field(part, upload, cap)
            elif name in FILE_FIELDS:
                if name in upload.files and name not in _REPEATABLE:
                    raise BadRequest(f"Only one {name} may be uploaded.")
                file_name = safe_file_name(part.filename, name)
                count += 1
                target = folder / str(count) / file_name  # one folder per part: same names never collide
                await asyncio.to_thread(target.parent.mkdir)
                await self._save_part(part, target, upload, cap)
                upload.files.setdefault(name, []).append(target)
            else:
                accepted = ", ".join(TEXT_FIELDS + FILE_FIELDS)
                raise BadRequest(f"Unknown form field {name!r}. Accepted fields: {accepted}.")
        return upload

    def _count(self, upload: _Upload, n: int, cap: int) -> None:
        upload.received += n
        if upload.received > cap:
            raise self._too_large()

    async def _read_field(self, part: BodyPartReader, upload: _Upload, cap: int) -> str:
        data = b""
        while chunk := await part.read_chunk(MAX_FIELD_BYTES):
            self._count(upload, len(chunk), cap)
            data += chunk
            if len(data) > MAX_FIELD_BYTES:
                raise BadRequest(f"Form field {part.name} is longer than {MAX_FIELD_BYTES} bytes.")
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise BadRequest(f"Form field {part.name} is not UTF-8 text.") from None

    async def _save_part(self, part: BodyPartReader, target: Path, upload: _Upload, cap: int) -> None:
        out = await asyncio.to_thread(open, target, "xb")
        try:
            while chunk := await part.read_chunk(UPLOAD_CHUNK):
                self._count(upload, len(chunk), cap)
                await asyncio.to_thread(out.write, chunk)
        finally:
            await asyncio.to_thread(out.close)

    def _archive_config(self, upload: _Upload, out: Path) -> ModelArchiveConfig:
        fields, files = upload.fields, upload.files
        for required in ("model_name", "version"):
            if not fields.get(required):
                raise BadRequest(f"Parameter {required} is required.")
        runtime = fields.get("runtime") or "python"
        handler = self._handler(fields.get("handler") or "", files.get("handler_file"), runtime)

        def one(key: str) -> str | None:
            paths = files.get(key)
            return str(paths[0]) if paths else None

        extra = files.get("extra_files") or []
        if any("," in str(p) for p in extra):
            raise ServeError(f"The model store's path contains a comma, which extra_files cannot pass: {out}")
        return ModelArchiveConfig(
            model_name=fields["model_name"],
            handler=handler,
            version=fields["version"],
            serialized_file=one("serialized_file"),
            model_file=one("model_file"),
            extra_files=",".join(_glob_escape(str(p)) for p in extra) or None,
            runtime=runtime,
            export_path=str(out),
            archive_format=fields.get("archive_format") or "default",
            force=(fields.get("force") or "").lower() == "true",
            requirements_file=one("requirements_file"),
            config_file=one("config_file"),
        )

    @staticmethod
    def _handler(handler: str, uploaded: list[Path] | None, runtime: str) -> str:
        """A built-in handler name, or the path of the uploaded handler file (never a path on the server)."""
        handler_file = uploaded[0] if uploaded else None
        if not handler:
            if handler_file is None:
                raise BadRequest("Parameter handler is required: a built-in handler or an uploaded handler_file.")
            return str(handler_file)
        module, sep, function = handler.partition(":")
        if handler_file is not None:
            if module in (handler_file.name, handler_file.stem):
                return f"{handler_file}{sep}{function}"
            raise BadRequest(f"handler {handler!r} does not name the uploaded handler_file {handler_file.name!r}.")
        builtins = LSP_BUILTIN_HANDLERS if runtime == "LSP" else tuple(BUILTIN_HANDLERS)
        if handler in builtins:
            return handler
        raise BadRequest(
            f"handler {handler!r} is neither a built-in handler ({', '.join(builtins)}) "
            "nor the file name of an uploaded handler_file."
        )

    def _build(self, config: ModelArchiveConfig, store: Path, in_use: dict[Path, str]) -> tuple[Path, ArchiveInfo]:
        """Build in the staging folder, check it as every archive is checked, then move it into the store;
        ``force`` never replaces an archive a registered model was loaded from (``in_use``)."""
        try:
            final: Path | None = None
            if config.archive_format in FORMAT_SUFFIXES:  # else the archiver says what is wrong, below
                final = Path(archive_path(str(store), config.model_name, config.archive_format))
                # The archiver's checks and messages (name, existing output), against the store itself.
                check_output(
                    config.model_name, str(store), str(final), config.force, kind="model", what="model archive"
                )
            Path(config.export_path or "").mkdir()
            built = build_model_archive(config)
            info = inspect_archive(built, limits=self.registry.store.limits)
        except ArchiverError as exc:
            raise BadRequest(str(exc)) from None
        assert final is not None
        with self._store_lock:  # two uploads of one name at once: the second sees the first's archive
            if os.path.lexists(final):
                if not config.force:
                    raise BadRequest(
                        f"{final} already exists.\nPlease specify --force/-f option to overwrite the model "
                        "archive output file.\nSee -h/--help for more details."
                    )
                user = in_use.get(final.resolve())
                if user is not None:
                    raise Conflict(f"{final.name} is in use by model {user}: unregister it before replacing it.")
                if final.is_dir() and not final.is_symlink():
                    shutil.rmtree(final)
                else:
                    final.unlink()
            os.replace(built, final)
        return final, replace(info, path=final)


def _glob_escape(path: str) -> str:
    """A literal path for the archiver's ``--extra-files`` (which expands ``*?[]``)."""
    return glob.escape(path)


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
