"""The worker pool of ONE model version: processes, their life cycle, and the way requests reach them.

`WorkerPool` is the runtime interface the core talks to (``scale``, ``predict``, ``workers``, ``close``); this
implementation runs local worker processes (`server.runtime.worker`) over Unix sockets, asyncio only: the
event loop is never blocked.

Life of a worker slot (spec §12.3). A slot has a stable id (one global counter from 9000, like TorchServe's
worker ports) and a supervisor task that repeats: spawn ``python -m server.runtime.worker --sock
<dir>/w-<id>.sock``, wait for ``Torch worker started.`` on its stdout (120 s), connect, send `Load` and await
the `Reply` within ``startup_timeout_s``; then serve batches until told to stop or until the instance fails.
Any failure (exit, end of stream, load error, timeout, malformed frame) kills and reaps the process, fails
the in-flight batch with `WorkerDied` (507 when it looks OOM-killed: exit code 137, or SIGKILL not sent by
us) and restarts it after a Fibonacci back-off (1, 1, 2, 3, 5, 8, ... s; reset by a successful load) while the
slot has been failing for less than ``max_retry_timeout_s``; then the slot gives up and stays STOPPED.
Queued jobs are never failed by a crash: they wait for the replacement (or another worker). The slot keeps
the reason of its last failure (`WorkerInfo.failure`) until a process of it loads the model again.

A process that is still there ``KILL_WAIT_S`` after its SIGKILL is stuck in the kernel (uninterruptible sleep,
e.g. in a hung GPU driver) and may never exit: the pool logs an ERROR and abandons it, as if it had exited
with an unknown exit code. Its batch fails with `WorkerDied` at once, the slot restarts as after any crash,
`close` does not wait for it, and a background task logs the exit if it ever comes. Processes are started
by the ``spawn`` function (`server.runtime.spawn.default_spawn`: off the event loop, unless a test gives
another), and everything else that touches the disk (socket folder, socket files) runs off the loop too.

Requests (spec §12.5). One `Batcher` per pool (the version's FIFO queue of ``job_queue_size``); each
serving worker takes a batch from it, sends it as one `Inference`, and waits ``response_timeout_s`` for the
`Reply`. Code 200 gives every request its own `Response` (matched by ``request_id``, arrival order for
duplicates); any other code gives every request of the batch `WorkerError(code, message)`. A streaming
handler first sends intermediate 200 replies whose responses carry ``ts_stream_next: true``; each one goes
to its request's ``on_intermediate`` callback (see `WorkerPool.predict_stream`), the last reply as usual.

Environment of a worker: the caller's ``env`` (default: this process's environment), the project root put in
front of ``PYTHONPATH``, ``PYTHONUNBUFFERED=1`` unless set, and ``TSC_TORCH_THREADS`` unless set: it is
``max(1, os.cpu_count() // n)`` where ``n`` is the number of (not stopping) workers of this pool at the
moment the process is spawned, so the workers of one model share the cores instead of each using all of
them. After that, threads follow the load: each batch carries its share of the cores (`CoreShare`: the
cores divided by the batches running at that moment in every pool of this process), which the worker sets
before running it; a user's ``TSC_TORCH_THREADS`` or ``OMP_NUM_THREADS`` fixes them instead.
The working directory is the model directory (when it exists), as in TorchServe.

Logging: every line a worker writes goes to the ``MODEL_LOG`` logger (stdout at INFO, stderr at WARNING)
with ``extra={"ts_thread": "W-<id>-<model>_<version>-stdout"}`` (or ``-stderr``); life-cycle events go to
``server.runtime.pool`` with ``ts_thread`` ``W-<id>-<model>_<version>``. Nothing is printed.

Metrics (spec §3), when the pool is given a `ServerMetrics`: ``ts_inference_requests_total`` for every
`predict` call; per answered job ``QueueTime`` and the ``ts_inference_latency_microseconds`` /
``ts_queue_latency_microseconds`` counters (enqueue → reply, enqueue → dispatch; version label
``url_version`` or ``"default"``); per batch ``WorkerThreadTime`` (the batch's time in the frontend, the
wait for the worker excluded); per load ``WorkerLoadTime`` of ``W-<id>-<model>_<version>`` (spawn → loaded).
Worker output lines that carry a metric (``[METRICS]...``, on either stream, as TorchServe reads them) go
to ``metrics.backend_line`` instead of MODEL_LOG.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

import server
from server.errors import RequestTimeout, ServeError, WorkerDied, WorkerError, no_worker
from server.runtime import protocol
from server.runtime.batcher import Batcher, QueueFull
from server.runtime.connection import WorkerConnection
from server.runtime.messages import Inference, Load, Reply, Request, Response
from server.runtime.spawn import default_spawn
from server.telemetry.metrics import is_metrics_line

if TYPE_CHECKING:
    from server.telemetry.metrics import ServerMetrics

__all__ = [
    "BACKOFF_S",
    "WORKER_START_TIMEOUT_S",
    "ModelSpec",
    "WorkerInfo",
    "WorkerPool",
    "WorkerStatus",
]

log = logging.getLogger(__name__)
model_log = logging.getLogger("MODEL_LOG")

T = TypeVar("T")

BACKOFF_S = (1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597)
"""Seconds before restart number 1, 2, 3, ... of a failing worker (spec §12.3); the last value repeats."""

WORKER_START_TIMEOUT_S = 120.0  # for "Torch worker started." on stdout
CONNECT_TIMEOUT_S = 120.0
EXIT_GRACE_S = 5.0  # per step of a stop: end of stream, then SIGTERM, then SIGKILL
KILL_WAIT_S = 5.0  # after SIGKILL, for the exit; a process still there then is stuck in the kernel: abandoned
DEATH_GRACE_S = 2.0  # after an unexpected end of stream, for the exit code to arrive
MAX_LOG_LINE = 64 * 1024  # longer worker output lines are logged in pieces
STARTED_LINE = "Torch worker started."
STREAM_HEADER = "ts_stream_next"
WORKER_MODULE = "server.runtime.worker"
PROJECT_ROOT = str(Path(server.__file__).resolve().parent.parent)
AF_UNIX_PATH_MAX = 107

_worker_ids = itertools.count(9000)
_Outgoing = Load | Inference | None  # what the frontend sends (None: nothing, just read the next reply)
Spawn = Callable[..., Awaitable[Any]]  # asyncio.create_subprocess_exec's shape (and result's interface)


FIXED_THREADS_ENV = ("TSC_TORCH_THREADS", "OMP_NUM_THREADS")  # set by the user: threads stay as given


class CoreShare:
    """The cores, shared by the batches that run at this moment in the workers of every pool of this process:
    a batch is sent with ``threads = cores // running`` (at least 1), so a worker alone in its work uses every
    core and busy workers split them; the worker sets torch's thread count before the batch (it can change
    between batches, so running workers re-balance as the load and the worker count change)."""

    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores if cores is not None else _usable_cores()
        self.running = 0

    def take(self) -> int:
        self.running += 1
        return max(1, self.cores // self.running)

    def give_back(self) -> None:
        self.running = max(0, self.running - 1)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


CORES = CoreShare()


class WorkerStatus:
    LOADING = "LOADING"  # process starting or model loading
    READY = "READY"  # model loaded, serving (idle or busy)
    UNLOADING = "UNLOADING"  # being stopped by a scale-down / close
    STOPPED = "STOPPED"  # dead: waiting for its restart, or given up


@dataclass(frozen=True)
class ModelSpec:
    """What a pool needs to know about its model version (times in seconds unless the name says ms)."""

    model_name: str
    model_version: str
    model_dir: str
    handler: str
    batch_size: int = 1
    max_batch_delay_ms: float = 100
    response_timeout_s: float = 120
    startup_timeout_s: float = 120
    envelope: str = ""
    limit_max_image_pixels: bool = True
    job_queue_size: int = 100
    max_retry_timeout_s: float = 300
    client_timeout_ms: float = 0  # clientTimeoutInMills: longest wait in the queue (0: no limit)


@dataclass(frozen=True)
class WorkerInfo:
    id: int
    pid: int | None  # None while no process runs (between a crash and its restart)
    status: str  # a WorkerStatus value
    start_time: float  # epoch seconds the current (or last) process was started
    gpu: int | None  # None: CPU
    memory: int = 0  # resident set size in bytes (0 while no process runs)
    failure: str | None = None  # why the slot's last process failed; None once a process loaded the model


@dataclass(eq=False)
class _Job:
    request: Request
    future: asyncio.Future[Response]
    url_version: str | None = None
    on_intermediate: Callable[[Response], None] | None = None
    enqueued_ns: int = 0  # time.monotonic_ns() when queued
    scheduled_ns: int = 0  # ... when its batch was sent to a worker


class Answers:
    """The responses to one request, as an async iterator (`WorkerPool.predict_stream`): the intermediate
    ones of a streaming handler as they arrive, then the final one. A class, not an async generator: this is
    every request's path, and an async generator costs a hook, a weak reference and a task switch more."""

    __slots__ = ("_arrived", "_check", "_finished", "_job", "_pool", "_wake")

    def __init__(
        self, pool: WorkerPool, request: Request, url_version: str | None, check: Callable[[Response], Response] | None
    ) -> None:
        self._pool = pool
        self._check = check
        self._arrived: deque[Response] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._finished = False  # the final response (or error) was handed out, or the request abandoned
        self._job = pool._enqueue(request, url_version, self._on_intermediate)
        self._job.future.add_done_callback(self._wake_up)

    def _wake_up(self, _: object = None) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _on_intermediate(self, response: Response) -> None:
        self._arrived.append(response)
        self._wake_up()

    def __aiter__(self) -> Answers:
        return self

    async def __anext__(self) -> Response:
        response = await self._next()
        return self._check(response) if self._check is not None else response

    async def _next(self) -> Response:
        if self._arrived:
            return self._arrived.popleft()
        if self._finished:
            raise StopAsyncIteration
        job = self._job
        try:
            while not job.future.done():
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake
                if self._arrived:
                    return self._arrived.popleft()
        except BaseException:  # cancelled while waiting: the caller is gone
            await self.aclose()
            raise
        self._finish()
        return job.future.result()

    def _finish(self) -> None:
        self._finished = True
        self._job.on_intermediate = None  # no cycle left (job -> this): freed at once, not by the collector

    async def aclose(self) -> None:
        """Stop early: a request not answered yet is abandoned (see `WorkerPool.predict`)."""
        if not self._finished:
            self._finish()
            self._arrived.clear()
            self._pool._abandon(self._job)


class _Failure(Exception):
    """Why one worker process ended; `error` makes what a waiting scale() and each in-flight job get."""

    def __init__(self, reason: str, *, code: int | None = None, message: str = "", oom: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code  # the worker's load error code; None: the process died or timed out
        self.message = message
        self.oom = oom

    @property
    def is_load_error(self) -> bool:
        return self.code is not None

    def error(self) -> ServeError:
        """A fresh exception for one recipient (one exception object must not be raised in two tasks)."""
        if self.code is not None:
            return WorkerError(self.code, self.message)
        return WorkerDied(oom_killed=self.oom)


class _Instance:
    """One OS process of a slot, with its pipes and its connection."""

    def __init__(self, proc: asyncio.subprocess.Process, sock_path: Path) -> None:
        self.proc = proc
        self.sock_path = sock_path
        self.started = asyncio.Event()
        self.exited: asyncio.Task[int] = asyncio.ensure_future(proc.wait())
        self.pumps: list[asyncio.Task[None]] = []
        self.conn: WorkerConnection | None = None
        self.loaded = False  # the model is loaded: the worker is reading the socket, EOF ends it
        self.killed_by_us = False
        self.sigkilled = False  # SIGKILL was sent: nothing gentler is worth trying any more
        self.abandoned = False  # did not exit after SIGKILL: given up on, watched in the background

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            self.killed_by_us = True
            if sig == signal.SIGKILL:
                self.sigkilled = True
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def exit_code(self) -> int | None:
        """The exit code, once the process has exited (even while a grandchild still holds its pipes)."""
        if self.exited.done() and not self.exited.cancelled():
            return self.exited.result()
        return self.proc.returncode


class _Worker:
    """A worker slot: a stable id and GPU, and the supervisor task that (re)starts its process."""

    def __init__(self, worker_id: int, gpu: int | None, thread: str) -> None:
        self.id = worker_id
        self.gpu = gpu
        self.thread = thread  # "W-<id>-<model>_<version>"
        self.extra = {"ts_thread": thread}
        self.status = WorkerStatus.LOADING
        self.start_time = time.time()
        self.inst: _Instance | None = None
        self.task: asyncio.Task[None] | None = None
        self.loaded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.loaded.add_done_callback(_consume)
        self.stopping = False
        self.stop_event = asyncio.Event()
        self.serving = False
        self.gave_up = False
        self.failing = False  # its process failed since it last loaded the model (a crash loop, if it goes on)
        self.last_failure: str | None = None  # the reason of that failure (a `_Failure.reason`)
        self.in_flight: list[_Job] = []

    @property
    def active(self) -> bool:
        return not self.stopping and not self.gave_up

    def info(self) -> WorkerInfo:
        pid = self.inst.proc.pid if self.inst is not None else None
        return WorkerInfo(self.id, pid, self.status, self.start_time, self.gpu, failure=self.last_failure)


SOCKET_NAME_ROOM = len("/w-4294967295.sock")


def _private_socket_dir() -> Path:
    """A new 0700 folder for worker sockets: in the temp folder, unless its path is so long that a socket
    path there would pass the OS limit (a deep TMPDIR); then in /tmp, else in /dev/shm."""
    for parent in (None, "/tmp", "/dev/shm"):
        made = Path(tempfile.mkdtemp(prefix="tsc-", dir=parent))  # mode 0700
        if len(os.fsencode(made)) + SOCKET_NAME_ROOM <= AF_UNIX_PATH_MAX:
            return made
        made.rmdir()
    raise OSError("no temporary folder with a path short enough for a Unix socket: set TMPDIR to a short path")


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _rss(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def _consume(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as retrieved (nobody may be waiting for a worker's first load)."""
    if not fut.cancelled():
        fut.exception()


def _is_intermediate(reply: Reply) -> bool:
    """A 200 reply of a streaming handler that more replies for the same batch will follow."""
    return reply.code == 200 and any(
        key.lower() == STREAM_HEADER and value.strip().lower() == "true"
        for response in reply.responses
        for key, value in response.headers
    )


def _exit_text(code: int | None) -> str:
    return f"exit code {code}" if code is not None else "exit code unknown"


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)


class WorkerPool:
    """The worker processes of one model version, with its job queue and batching.

    ``python`` runs the workers; ``service`` (``module:Class``) is handed to them as ``--service`` (default:
    the worker's own default, the handler library); ``env`` replaces this process's environment for the
    workers; ``gpu_ids`` are given to new workers round-robin (none: CPU, ``gpu_id`` -1); ``socket_dir``
    holds the worker sockets (default: a private 0700 temporary directory, removed by `close`);
    ``metrics`` receives the pool's metrics and the workers' metric lines (see the module docstring);
    ``spawn`` starts a worker process (called like `asyncio.create_subprocess_exec`; default: `default_spawn`).
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        python: str = sys.executable,
        service: str | None = None,
        env: dict[str, str] | None = None,
        gpu_ids: Sequence[int] = (),
        socket_dir: Path | None = None,
        metrics: ServerMetrics | None = None,
        spawn: Spawn = default_spawn,
        cores: CoreShare | None = None,
    ) -> None:
        self.spec = spec
        self._cores = cores if cores is not None else CORES
        self._metrics = metrics
        self._spawn = spawn
        self._python = python
        self._service = service
        self._env = dict(env) if env is not None else None
        fixed = os.environ if env is None else env
        self._threads_follow_load = not any(fixed.get(key) for key in FIXED_THREADS_ENV)
        self._gpu_ids = tuple(gpu_ids)
        self._next_gpu = 0
        self._socket_dir_arg = Path(socket_dir) if socket_dir is not None else None
        self._socket_dir: Path | None = None
        self._owns_socket_dir = socket_dir is None
        self._batcher: Batcher[_Job] = Batcher(spec.batch_size, spec.max_batch_delay_ms, spec.job_queue_size)
        self._workers: list[_Worker] = []  # oldest first
        self._min = 0
        self._max = 0
        self._scale_lock = asyncio.Lock()
        self._closed = False
        self._abandoned: set[asyncio.Task[None]] = set()  # watchers of processes that did not exit on SIGKILL

    # -- public API --------------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Enough workers that have not given up restarting (TorchServe's ping, spec §1.2), and not a version
        that should serve but has no loaded worker while its workers keep failing (pytorch/serve#2099)."""
        enough = sum(1 for w in self._workers if w.active) >= self._min
        return enough and not self.crash_looping()

    def crash_looping(self) -> bool:
        """Should serve (min > 0), has no READY worker, and its workers failed since they last loaded."""
        return (
            self._min > 0
            and not any(w.status == WorkerStatus.READY for w in self._workers)
            and any(w.failing for w in self._workers)
        )

    @property
    def min_workers(self) -> int:
        return self._min

    @property
    def max_workers(self) -> int:
        return self._max

    @property
    def queue_depth(self) -> int:
        return len(self._batcher)

    def workers(self) -> list[WorkerInfo]:
        """Every worker slot, oldest first (stopping ones included until their process is gone)."""
        return [w.info() for w in self._workers]

    async def measured_workers(self) -> list[WorkerInfo]:
        """`workers` with each process's resident memory, read by a thread (never on the event loop)."""
        infos = self.workers()
        sizes = await asyncio.to_thread(lambda: [_rss(info.pid) for info in infos])
        return [dataclasses.replace(info, memory=size) for info, size in zip(infos, sizes, strict=True)]

    async def scale(
        self,
        min_workers: int,
        max_workers: int | None = None,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Set min/max workers (max defaults to min): start workers up to ``min``, stop those beyond ``max``.

        Workers are stopped newest first; a stopping worker finishes its in-flight batch first. With
        ``wait`` this returns once every new worker has loaded its model and every stopped one is gone, and
        raises the first failure of a new worker: `WorkerError` with the worker's load code/message, or
        `WorkerDied` when it crashed or timed out while starting (the worker keeps retrying in the
        background either way). ``timeout`` bounds that wait: `RequestTimeout` when exceeded.
        """
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        if max_workers is None:
            max_workers = min_workers
        if min_workers < 0 or max_workers < min_workers:
            raise ValueError(f"invalid worker counts: min {min_workers}, max {max_workers}")
        async with self._scale_lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            self._min, self._max = min_workers, max_workers
            self._workers = [w for w in self._workers if not w.gave_up]
            active = [w for w in self._workers if w.active]
            target = min(max(len(active), min_workers), max_workers)
            new: list[_Worker] = []
            victims: list[_Worker] = []
            if target > len(active):
                await self._ensure_socket_dir()
                for _ in range(target - len(active)):
                    worker = self._new_worker()
                    self._workers.append(worker)
                    new.append(worker)
                for worker in new:
                    worker.task = asyncio.create_task(self._supervise(worker), name=worker.thread)
            elif target < len(active):
                victims = active[target:][::-1]  # newest first
                for worker in victims:
                    self._request_stop(worker)
                self._check_no_workers()
        if not wait:
            return
        try:
            async with asyncio.timeout(timeout) as deadline:
                if new:
                    await asyncio.wait([w.loaded for w in new], return_when=asyncio.FIRST_EXCEPTION)
                    for worker in new:
                        error = worker.loaded.exception() if worker.loaded.done() else None
                        if error is not None:
                            raise error
                tasks = [w.task for w in victims if w.task is not None]
                if tasks:
                    await asyncio.wait(tasks)
        except TimeoutError:
            if deadline.expired():
                raise RequestTimeout(f"Timed out after {timeout} s while scaling workers") from None
            raise

    async def predict(
        self,
        request: Request,
        *,
        url_version: str | None = None,
        on_intermediate: Callable[[Response], None] | None = None,
    ) -> Response:
        """Queue ``request``, have a worker run it (batched), and return its `Response`.

        Raises `no_worker` (503) at once when the version has no worker or its queue is full
        (``url_version`` is the version as the client named it, only used in that message), `WorkerError`
        when the batch failed in the worker, `WorkerDied` when the worker died or timed out with it.
        ``on_intermediate`` receives the intermediate responses of a streaming handler, in order.
        """
        job = self._enqueue(request, url_version, on_intermediate)
        try:
            return await job.future
        except asyncio.CancelledError:
            self._abandon(job)
            raise

    def _enqueue(
        self, request: Request, url_version: str | None, on_intermediate: Callable[[Response], None] | None
    ) -> _Job:
        """Queue a job for ``request`` (see `predict`); with ``clientTimeoutInMills`` a timer fails it with 408
        if it is still queued then (TorchServe drops such a request without any answer)."""
        if self._metrics is not None:
            self._metrics.inference_request(self.spec.model_name, url_version or "default")
        if self._closed or not any(w.active for w in self._workers):
            raise no_worker(self.spec.model_name, url_version)
        loop = asyncio.get_running_loop()
        job = _Job(request, loop.create_future(), url_version, on_intermediate, time.monotonic_ns())
        try:
            self._batcher.put(job)
        except QueueFull:
            raise no_worker(self.spec.model_name, url_version) from None
        if self.spec.client_timeout_ms > 0:
            timer = loop.call_later(self.spec.client_timeout_ms / 1000, self._queue_deadline, job)
            job.future.add_done_callback(lambda _: timer.cancel())
        return job

    def _queue_deadline(self, job: _Job) -> None:
        if job.scheduled_ns == 0 and self._batcher.remove(job):  # still queued: it never reaches a worker
            limit_ms = self.spec.client_timeout_ms
            _fail(job, RequestTimeout(f"Request waited in the queue longer than {limit_ms:.0f} ms"))

    def _abandon(self, job: _Job) -> None:
        """The caller went away (disconnect, cancel, deadline): a queued job leaves the queue and never reaches
        a worker; an in-flight one is answered by its worker and the answer dropped."""
        if job.future.done() and not job.future.cancelled():
            return  # answered already
        job.future.cancel()
        self._batcher.remove(job)  # False when a batch is being gathered with it: that batch skips it
        if self._metrics is not None:
            queued = job.scheduled_ns == 0  # set when its batch is sent to a worker
            self._metrics.cancelled(self.spec.model_name, job.url_version or "default", queued=queued)

    def predict_stream(
        self, request: Request, *, url_version: str | None = None, check: Callable[[Response], Response] | None = None
    ) -> Answers:
        """Like `predict`, but yield each intermediate response of a streaming handler, then the final one.

        A handler that does not stream yields exactly one response. Errors are raised where they happen
        (possibly after some intermediate responses were yielded). Closing the iterator early (``aclose``), or
        cancelling the task that awaits it, cancels the request as a cancelled `predict` does. ``check`` sees
        each response before the caller does (it may raise instead).
        """
        return Answers(self, request, url_version, check)

    async def close(self, timeout: float = 30, *, drain_s: float = 0) -> None:
        """Stop every worker (SIGTERM, up to ``timeout`` s, then SIGKILL), reap them, remove the sockets.

        A process that is still there ``KILL_WAIT_S`` after its SIGKILL is abandoned (see the module docstring),
        so this returns within about ``timeout + KILL_WAIT_S`` seconds whatever the workers do.

        New requests get 503 from now on. With ``drain_s`` the requests already queued or in flight are first
        served, for up to ``drain_s`` seconds while a worker is ready to serve them; whatever is left then
        fails: queued requests with 503 (no worker), in-flight ones with `WorkerDied`.
        """
        if self._closed:
            return
        self._closed = True
        await self._drain(drain_s)
        workers = list(self._workers)
        for worker in workers:
            worker.stopping = True
            worker.status = WorkerStatus.UNLOADING
            worker.stop_event.set()
            if worker.inst is not None:
                worker.inst.signal(signal.SIGTERM)
        self._fail_queued()
        tasks = [w.task for w in workers if w.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for worker in workers:
                if worker.task in pending:
                    if worker.inst is not None:
                        worker.inst.signal(signal.SIGKILL)
                    worker.task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        if self._socket_dir is not None and self._owns_socket_dir:  # off the loop: a slow disk takes its time
            await asyncio.to_thread(shutil.rmtree, self._socket_dir, True)
        self._socket_dir = None

    async def _drain(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        def pending() -> bool:
            return bool(len(self._batcher) or any(w.in_flight for w in self._workers))

        def can_serve() -> bool:
            return any(w.status == WorkerStatus.READY and not w.stopping for w in self._workers)

        while pending() and can_serve() and loop.time() < deadline:
            await asyncio.sleep(0.02)

    # -- slots ---------------------------------------------------------------------------------------------

    def _new_worker(self) -> _Worker:
        gpu: int | None = None
        if self._gpu_ids:
            gpu = self._gpu_ids[self._next_gpu % len(self._gpu_ids)]
            self._next_gpu += 1
        worker_id = next(_worker_ids)
        thread = f"W-{worker_id}-{self.spec.model_name}_{self.spec.model_version}"
        return _Worker(worker_id, gpu, thread)

    async def _ensure_socket_dir(self) -> Path:
        if self._socket_dir is None:
            if self._socket_dir_arg is not None:
                await asyncio.to_thread(self._socket_dir_arg.mkdir, mode=0o700, parents=True, exist_ok=True)
                self._socket_dir = self._socket_dir_arg
            else:
                self._socket_dir = await asyncio.to_thread(_private_socket_dir)
        return self._socket_dir

    def _request_stop(self, worker: _Worker) -> None:
        """Stop a slot: a serving worker finishes its in-flight batch first; otherwise it stops at once."""
        worker.stopping = True
        worker.status = WorkerStatus.UNLOADING
        worker.stop_event.set()
        if not worker.serving and worker.task is not None:
            worker.task.cancel()

    def _check_no_workers(self) -> None:
        """Nobody will ever take the queued jobs once no worker is active: fail them with 503."""
        if not any(w.active for w in self._workers):
            self._fail_queued()

    def _fail_queued(self) -> None:
        for job in self._batcher.drain():
            _fail(job, no_worker(self.spec.model_name, job.url_version))

    def _worker_env(self) -> dict[str, str]:
        env = dict(os.environ if self._env is None else self._env)
        if "TSC_TORCH_THREADS" not in env:
            n = max(1, sum(1 for w in self._workers if w.active))
            env["TSC_TORCH_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
        path = env.get("PYTHONPATH", "")
        if path.split(os.pathsep)[0] != PROJECT_ROOT:
            env["PYTHONPATH"] = PROJECT_ROOT + (os.pathsep + path if path else "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    # -- supervisor ------------------------------------------------------------------------------------------

    async def _supervise(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        retries = 0
        failing_since: float | None = None
        try:
            while not worker.stopping:
                started_ns = time.monotonic_ns()
                try:
                    await self._start(worker)
                except _Failure as exc:
                    failure: _Failure | None = exc
                    if exc.is_load_error:
                        log.warning("Load model failed: %s", exc.reason, extra=worker.extra)
                except Exception as exc:  # a bug of ours must not leave a slot that never serves
                    log.exception("Worker %s failed to start", worker.thread, extra=worker.extra)
                    failure = _Failure(f"{type(exc).__name__}: {exc}")
                else:
                    retries, failing_since = 0, None
                    worker.failing = False
                    worker.last_failure = None
                    if self._metrics is not None:
                        load_ms = (time.monotonic_ns() - started_ns) // 1_000_000
                        self._metrics.worker_loaded(worker.thread, float(load_ms))
                    worker.status = WorkerStatus.READY
                    log.info("Worker %s loaded the model, pid %d", worker.thread, self._pid(worker),
                             extra=worker.extra)  # fmt: skip
                    if not worker.loaded.done():
                        worker.loaded.set_result(None)
                    try:
                        failure = await self._serve(worker)
                    except Exception as exc:  # in-flight jobs were failed by _run_batch
                        log.exception("Worker %s failed while serving", worker.thread, extra=worker.extra)
                        failure = _Failure(f"{type(exc).__name__}: {exc}")
                if failure is None:
                    return  # stopped on request
                await self._reap(worker, graceful=False)
                if not worker.loaded.done():
                    worker.loaded.set_exception(failure.error())
                if worker.stopping:
                    return
                worker.status = WorkerStatus.STOPPED
                worker.failing = True
                worker.last_failure = failure.reason
                now = loop.time()
                if failing_since is None:
                    failing_since = now
                if now - failing_since >= self.spec.max_retry_timeout_s:
                    log.error("Worker %s failed for %.0f s; no more restarts", worker.thread,
                              now - failing_since, extra=worker.extra)  # fmt: skip
                    worker.gave_up = True
                    self._check_no_workers()
                    return
                delay = BACKOFF_S[min(retries, len(BACKOFF_S) - 1)]
                retries += 1
                log.info("Retry worker: %s in %d seconds.", worker.thread, delay, extra=worker.extra)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await worker.stop_event.wait()
        finally:
            await self._reap(worker, graceful=True)
            worker.status = WorkerStatus.STOPPED
            worker.serving = False
            if not worker.loaded.done():
                worker.loaded.set_exception(WorkerDied())
            if worker.stopping:
                with contextlib.suppress(ValueError):
                    self._workers.remove(worker)
                log.info("Worker %s stopped", worker.thread, extra=worker.extra)
                self._check_no_workers()

    @staticmethod
    def _pid(worker: _Worker) -> int:
        return worker.inst.proc.pid if worker.inst is not None else -1

    async def _start(self, worker: _Worker) -> None:
        """Spawn the process, wait for its start line, connect and load the model (raises `_Failure`)."""
        worker.status = WorkerStatus.LOADING
        worker.start_time = time.time()
        sock_path = await self._ensure_socket_dir() / f"w-{worker.id}.sock"
        if len(os.fsencode(sock_path)) > AF_UNIX_PATH_MAX:
            message = "Worker socket path too long"
            raise _Failure(f"{message}: {sock_path}", code=500, message=message)
        await asyncio.to_thread(_unlink, sock_path)
        cmd = [self._python, "-m", WORKER_MODULE, "--sock", str(sock_path)]
        if self._service:
            cmd += ["--service", self._service]
        cwd = self.spec.model_dir if os.path.isdir(self.spec.model_dir) else None
        try:
            proc = await self._spawn(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._worker_env(),
                cwd=cwd,
            )
        except OSError as exc:
            message = f"Cannot start worker: {exc}"
            raise _Failure(message, code=500, message=message) from None
        inst = _Instance(proc, sock_path)
        worker.inst = inst
        assert proc.stdout is not None and proc.stderr is not None
        inst.pumps = [
            asyncio.create_task(self._pump(worker, inst, proc.stdout, "stdout")),
            asyncio.create_task(self._pump(worker, inst, proc.stderr, "stderr")),
        ]
        log.info("Worker %s started, pid %d", worker.thread, proc.pid, extra=worker.extra)

        await self._until(worker, inst.started.wait(), WORKER_START_TIMEOUT_S, "starting")
        connect = WorkerConnection.open(sock_path)
        inst.conn = await self._until(worker, connect, CONNECT_TIMEOUT_S, "connecting")
        spec = self.spec
        load = Load(
            model_name=spec.model_name,
            model_path=str(spec.model_dir),
            batch_size=spec.batch_size,
            handler=spec.handler,
            gpu_id=worker.gpu if worker.gpu is not None else -1,
            envelope=spec.envelope,
            limit_max_image_pixels=spec.limit_max_image_pixels,
            model_version=spec.model_version,
        )
        reply = await self._exchange(worker, load, spec.startup_timeout_s, "loading the model")
        if reply.code != 200:
            raise _Failure(f"code {reply.code}: {reply.message}", code=reply.code, message=reply.message)
        inst.loaded = True

    async def _serve(self, worker: _Worker) -> _Failure | None:
        """Take batches and run them until stopped (None) or until the process fails (its `_Failure`)."""
        inst = worker.inst
        assert inst is not None
        worker.serving = True
        try:
            while not worker.stopping:
                if not inst.exited.done() and (ready := self._batcher.ready_batch()) is not None:
                    failure = await self._serve_batch(worker, ready)  # busy: no waiting, no tasks
                    if failure is not None:
                        return failure
                    continue
                getter = asyncio.ensure_future(self._batcher.get_batch())
                stopper = asyncio.ensure_future(worker.stop_event.wait())
                try:
                    waits = {getter, stopper, inst.exited}
                    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                    if not getter.done():
                        getter.cancel()
                        await asyncio.wait([getter])
                if getter.cancelled():
                    if inst.exited in done:
                        return await self._died(worker, "worker exited while idle")
                    return None
                batch = getter.result()
                if worker.stopping or inst.exited.done():
                    self._batcher.put_front(batch)  # someone else's work now
                    continue
                failure = await self._serve_batch(worker, batch)
                if failure is not None:
                    return failure
            return None
        finally:
            worker.serving = False

    async def _serve_batch(self, worker: _Worker, batch: list[_Job]) -> _Failure | None:
        jobs = [job for job in batch if not job.future.done()]  # a caller that went away is skipped
        return await self._run_batch(worker, jobs) if jobs else None

    async def _run_batch(self, worker: _Worker, jobs: list[_Job]) -> _Failure | None:
        worker.in_flight = jobs
        timeout = self.spec.response_timeout_s
        start_ns = time.monotonic_ns()
        backend_ns = 0  # waiting for the worker
        for job in jobs:
            job.scheduled_ns = start_ns
        threads = self._cores.take() if self._threads_follow_load else 0
        try:
            batch = Inference([job.request for job in jobs], threads)
            sent_ns = time.monotonic_ns()
            reply = await self._exchange(worker, batch, timeout, "inference")
            backend_ns += time.monotonic_ns() - sent_ns
            while _is_intermediate(reply):
                self._deliver_intermediate(jobs, reply)
                sent_ns = time.monotonic_ns()
                reply = await self._exchange(worker, None, timeout, "streaming")
                backend_ns += time.monotonic_ns() - sent_ns
        except _Failure as failure:
            log.warning("Worker %s failed with a batch of %d in flight: %s", worker.thread, len(jobs),
                        failure.reason, extra=worker.extra)  # fmt: skip
            for job in jobs:
                _fail(job, failure.error())
            return failure
        except BaseException:  # cancelled (close() gave up waiting) or a bug: never leave a caller hanging
            for job in jobs:
                _fail(job, WorkerDied())
            raise
        finally:
            worker.in_flight = []
            if threads:
                self._cores.give_back()
        answered = self._deliver(jobs, reply)
        if self._metrics is not None:
            try:
                self._report_batch(answered, start_ns, backend_ns)
            except Exception:  # a metrics fault must never cost a worker
                log.exception("Reporting the metrics of a batch failed", extra=worker.extra)
        return None

    def _report_batch(self, answered: list[_Job], start_ns: int, backend_ns: int) -> None:
        metrics = self._metrics
        assert metrics is not None
        now = time.monotonic_ns()
        model = self.spec.model_name
        for job in answered:
            queued_ns = job.scheduled_ns - job.enqueued_ns
            metrics.inference(model, job.url_version or "default", (now - job.enqueued_ns) / 1000, queued_ns / 1000)
            metrics.queue_time(float(queued_ns // 1_000_000))
        metrics.worker_thread_time(float((now - start_ns - backend_ns) // 1_000_000))

    @staticmethod
    def _deliver_intermediate(jobs: list[_Job], reply: Reply) -> None:
        pending = list(jobs)
        for response in reply.responses:
            job = next((j for j in pending if j.request.request_id == response.request_id), None)
            if job is None:
                continue
            pending.remove(job)
            if job.on_intermediate is not None and not job.future.done():
                try:
                    job.on_intermediate(response)
                except Exception:
                    log.exception("Intermediate response callback failed for %s", response.request_id)

    @staticmethod
    def _deliver(jobs: list[_Job], reply: Reply) -> list[_Job]:
        """Settle every job of the batch from the worker's final reply; the jobs that got a response."""
        if reply.code != 200:
            for job in jobs:
                _fail(job, WorkerError(reply.code, reply.message))
            return []
        answered: list[_Job] = []
        by_id: dict[str, deque[Response]] = {}
        for response in reply.responses:
            by_id.setdefault(response.request_id, deque()).append(response)
        for job in jobs:
            queue = by_id.get(job.request.request_id)
            if queue:
                response = queue.popleft()
                if not job.future.done():
                    job.future.set_result(response)
                    answered.append(job)
            else:
                _fail(job, WorkerError(503, "number of batch response mismatched"))
        return answered

    # -- process plumbing ----------------------------------------------------------------------------------

    async def _exchange(self, worker: _Worker, msg: _Outgoing, timeout: float, what: str) -> Reply:
        """Send ``msg`` (unless None), then await the worker's next `Reply` within ``timeout``."""
        inst = worker.inst
        assert inst is not None and inst.conn is not None
        conn = inst.conn
        if inst.exited.done():
            raise await self._died(worker, f"worker exited while {what}")
        if msg is not None:
            try:
                conn.send(msg)
            except (protocol.ProtocolError, OSError) as exc:
                raise await self._io_failure(worker, exc, what) from None
        # a message the worker has not taken yet (a large one) is waited for within the same timeout
        answer = self._drained_then_receive(conn) if conn.paused else conn.receive()
        reply = await self._until(worker, answer, timeout, what)
        if reply is None:
            raise await self._died(worker, f"connection closed while {what}")
        if not isinstance(reply, Reply):
            inst.signal(signal.SIGKILL)
            raise _Failure(f"unexpected {type(reply).__name__} message while {what}")
        if reply.metrics:
            self._metric_lines(worker, reply.metrics)
        return reply

    @staticmethod
    async def _drained_then_receive(conn: WorkerConnection) -> protocol.Message | None:
        await conn.drained()
        return await conn.receive()

    async def _until(self, worker: _Worker, aw: Awaitable[T], timeout: float, what: str) -> T:
        """Await ``aw`` unless the process exits first or ``timeout`` passes (then the process is killed).

        ``aw`` runs in the calling task (this is every request's path: no task, no `asyncio.wait`); the
        process's exit, or the timer, interrupts it by cancelling that task, told apart from any other
        cancellation.
        """
        inst = worker.inst
        assert inst is not None
        if inst.exited.done():
            if asyncio.iscoroutine(aw):
                aw.close()
            elif isinstance(aw, asyncio.Future):
                aw.cancel()
            raise await self._died(worker, f"worker exited while {what}")
        task = asyncio.current_task()
        assert task is not None
        waiting, cause = True, ""

        def interrupt(exited: object) -> None:  # may run late (scheduled before removal): then it does nothing
            nonlocal cause
            if waiting and not cause:
                cause = "timeout" if exited is None else "exit"
                task.cancel()

        timer = asyncio.get_running_loop().call_later(timeout, interrupt, None)
        inst.exited.add_done_callback(interrupt)
        try:
            return await aw
        except asyncio.CancelledError:
            if not cause or task.uncancel() > 0:
                raise  # cancelled from outside (close() gave up, shutdown): not ours to handle
            if cause == "exit":
                raise await self._died(worker, f"worker exited while {what}") from None
        except (protocol.ProtocolError, OSError) as exc:
            raise await self._io_failure(worker, exc, what) from None
        finally:
            waiting = False
            timer.cancel()
            inst.exited.remove_done_callback(interrupt)
        log.warning("Worker %s: no answer within %s s while %s; killing it", worker.thread, timeout, what,
                    extra=worker.extra)  # fmt: skip
        code = await self._kill(worker, inst)
        raise _Failure(f"timed out after {timeout} s while {what} ({_exit_text(code)})")

    async def _io_failure(self, worker: _Worker, exc: Exception, what: str) -> _Failure:
        """What a failed exchange with the process means: a frame of the wrong shape (the process is killed: it
        no longer speaks the protocol), or a connection that broke because the process died."""
        if isinstance(exc, protocol.ProtocolError):
            assert worker.inst is not None
            worker.inst.signal(signal.SIGKILL)
            return _Failure(f"protocol error while {what}: {exc}")
        return await self._died(worker, f"{exc} while {what}")

    async def _died(self, worker: _Worker, what: str) -> _Failure:
        """The failure of a process that exited (or closed its socket) on its own, with its exit code."""
        inst = worker.inst
        assert inst is not None
        await asyncio.wait([inst.exited], timeout=DEATH_GRACE_S)
        code = inst.exit_code()
        if code is None:
            code = await self._kill(worker, inst)
        oom = code == 137 or (code == -signal.SIGKILL and not inst.killed_by_us)
        log.warning("Worker %s died (%s), %s", worker.thread, what, _exit_text(code), extra=worker.extra)
        return _Failure(f"{what} ({_exit_text(code)})", oom=oom)

    async def _kill(self, worker: _Worker, inst: _Instance) -> int | None:
        """SIGKILL the process and wait up to ``KILL_WAIT_S`` for it to exit; its exit code, or None when it is
        still there (stuck in the kernel): then it is abandoned, and watched in the background."""
        if not inst.abandoned and inst.exit_code() is None:
            inst.signal(signal.SIGKILL)
            await asyncio.wait([inst.exited], timeout=KILL_WAIT_S)
        code = inst.exit_code()
        if code is None and not inst.abandoned:
            inst.abandoned = True
            log.error("Worker %s: pid %d did not exit %g s after SIGKILL (stuck in the kernel?); abandoning it",
                      worker.thread, inst.proc.pid, KILL_WAIT_S, extra=worker.extra)  # fmt: skip
            watcher = asyncio.create_task(self._watch_abandoned(worker, inst), name=f"{worker.thread}-abandoned")
            self._abandoned.add(watcher)
            watcher.add_done_callback(self._abandoned.discard)
        return code

    @staticmethod
    async def _watch_abandoned(worker: _Worker, inst: _Instance) -> None:
        """Log the exit of an abandoned process, if it ever comes (its output is still logged until then)."""
        await asyncio.wait([inst.exited])
        if inst.exited.cancelled():
            return
        log.warning("Worker %s: abandoned pid %d exited with code %s", worker.thread, inst.proc.pid,
                    inst.exited.result(), extra=worker.extra)  # fmt: skip

    async def _reap(self, worker: _Worker, *, graceful: bool) -> None:
        """Make sure the slot's process is gone: end of stream (graceful, once loaded), SIGTERM, SIGKILL."""
        inst = worker.inst
        if inst is None:
            return
        try:
            if not inst.sigkilled:  # after a SIGKILL, nothing gentler is worth waiting for
                if graceful and inst.loaded and inst.conn is not None and inst.proc.returncode is None:
                    inst.conn.close()
                    await asyncio.wait([inst.exited], timeout=EXIT_GRACE_S)
                if inst.exit_code() is None:
                    inst.signal(signal.SIGTERM)
                    await asyncio.wait([inst.exited], timeout=EXIT_GRACE_S)
            if inst.exit_code() is None:
                await self._kill(worker, inst)  # bounded: a process stuck in the kernel is abandoned
        finally:
            if inst.conn is not None:
                if inst.abandoned:  # its end of the socket stays open: never wait to flush to it
                    inst.conn.abort()
                else:
                    inst.conn.close()
                await inst.conn.wait_closed()
            if inst.pumps and not inst.abandoned:  # an abandoned process's output is still logged
                _, pending = await asyncio.wait(inst.pumps, timeout=1.0)
                for pump in pending:  # a grandchild may still hold the pipes
                    pump.cancel()
            await asyncio.to_thread(_unlink, inst.sock_path)
            if worker.inst is inst and (inst.exit_code() is not None or inst.abandoned):
                worker.inst = None

    def _metric_lines(self, worker: _Worker, lines: list[str]) -> None:
        """A worker's ``[METRICS]`` lines (sent in its replies, or printed by a handler): to the metrics, or to
        MODEL_LOG as TorchServe logs them when this pool reports no metrics."""
        if self._metrics is None:
            for line in lines:
                model_log.info(line, extra={"ts_thread": f"{worker.thread}-stdout"})
            return
        for line in lines:
            try:
                self._metrics.backend_line(line)
            except Exception:  # never cost a batch or a worker
                log.exception("Recording a worker metric failed", extra=worker.extra)

    async def _pump(self, worker: _Worker, inst: _Instance, stream: asyncio.StreamReader, which: str) -> None:
        """Log each line of a worker's stdout (INFO) or stderr (WARNING) to MODEL_LOG; metric lines to metrics."""
        level = logging.INFO if which == "stdout" else logging.WARNING
        extra = {"ts_thread": f"{worker.thread}-{which}"}
        buf = bytearray()
        metrics = self._metrics

        def emit(raw: bytes) -> None:
            line = raw.decode("utf-8", errors="replace").rstrip("\r")
            if metrics is not None and is_metrics_line(line):
                self._metric_lines(worker, [line])
                return
            if which == "stdout" and line == STARTED_LINE:
                inst.started.set()
            model_log.log(level, line, extra=extra)

        while chunk := await stream.read(65536):
            buf += chunk
            start = 0
            while (end := buf.find(b"\n", start)) >= 0:
                emit(bytes(buf[start:end]))
                start = end + 1
            del buf[:start]
            while len(buf) >= MAX_LOG_LINE:
                emit(bytes(buf[:MAX_LOG_LINE]))
                del buf[:MAX_LOG_LINE]
        if buf:
            emit(bytes(buf))
