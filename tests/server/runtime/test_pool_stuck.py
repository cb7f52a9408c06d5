"""A worker process that does not exit on SIGKILL (stuck in the kernel, e.g. in a hung GPU driver).

Such a process is simulated with the pool's ``spawn`` seam: the real worker process is wrapped so that the
pool's SIGKILL becomes SIGSTOP. The process freezes and never exits, exactly what the pool sees of a process
in uninterruptible sleep. Each test SIGKILLs it for real at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psutil
import pytest

from server.errors import WorkerDied
from server.runtime import pool as pool_module
from server.runtime.pool import WorkerPool, WorkerStatus

from .conftest import make_request
from .test_pool import body, eventually

KILL_WAIT_S = 0.5
RESPONSE_TIMEOUT_S = 0.5


class FreezesOnKill:
    """A worker process whose SIGKILL is turned into SIGSTOP; everything else goes to the real process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proc, name)

    def send_signal(self, sig: int) -> None:
        self._proc.send_signal(signal.SIGSTOP if sig == signal.SIGKILL else sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The pids of the processes made to freeze on SIGKILL; SIGKILLed for real after the test."""
    monkeypatch.setattr(pool_module, "KILL_WAIT_S", KILL_WAIT_S)
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def spawn_freezing_first(frozen: list[int]) -> Callable[..., Awaitable[Any]]:
    """A ``spawn`` whose first process freezes on SIGKILL; the processes after it are plain."""

    async def spawn(*args: Any, **kwargs: Any) -> Any:
        proc = await asyncio.create_subprocess_exec(*args, **kwargs)
        if frozen:
            return proc
        frozen.append(proc.pid)
        return FreezesOnKill(proc)

    return spawn


def stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == pool_module.__name__ and r.levelno == level and text in r.getMessage()
    ]


async def kill_for_real_and_see_it_logged(caplog: pytest.LogCaptureFixture, pid: int, thread: str) -> None:
    os.kill(pid, signal.SIGKILL)
    exited = f"Worker {thread}: abandoned pid {pid} exited with code {-signal.SIGKILL}"
    await eventually(lambda: bool(records(caplog, logging.WARNING, exited)), timeout=10)


@pytest.mark.asyncio
async def test_a_worker_stuck_after_sigkill_is_abandoned_and_replaced(make_pool, frozen, caplog) -> None:
    caplog.set_level(logging.INFO, logger=pool_module.__name__)
    pool: WorkerPool = make_pool(pool_kwargs={"spawn": spawn_freezing_first(frozen)},
                                 response_timeout_s=RESPONSE_TIMEOUT_S)  # fmt: skip
    await pool.scale(1)
    [before] = pool.workers()
    assert frozen == [before.pid]
    thread = f"W-{before.id}-m_1.0"

    start = time.monotonic()
    with pytest.raises(WorkerDied) as info:
        await pool.predict(make_request("slow", "sleep:60"))
    elapsed = time.monotonic() - start
    assert RESPONSE_TIMEOUT_S + KILL_WAIT_S - 0.1 <= elapsed < RESPONSE_TIMEOUT_S + KILL_WAIT_S + 2
    assert (info.value.status, info.value.message) == (500, "Worker died.")  # killed by us: not an OOM
    assert stopped(before.pid)  # still there: the pool gave up waiting for it

    [abandoned] = records(caplog, logging.ERROR, "abandoning it")
    assert abandoned.getMessage() == (
        f"Worker {thread}: pid {before.pid} did not exit 0.5 s after SIGKILL (stuck in the kernel?); abandoning it"
    )
    assert abandoned.ts_thread == thread  # type: ignore[attr-defined]

    # the slot restarts as after any crash, and says why its last process failed until the next one loads
    await eventually(lambda: pool.workers()[0].failure is not None)
    [failed] = pool.workers()
    assert failed.failure == "timed out after 0.5 s while inference (exit code unknown)"
    assert failed.pid != before.pid
    response = await asyncio.wait_for(pool.predict(make_request("next", "x")), 20)
    assert body(response)["pid"] not in (before.pid, None)
    [now] = pool.workers()
    assert (now.id, now.status, now.pid, now.failure) == (before.id, WorkerStatus.READY, body(response)["pid"], None)
    assert stopped(before.pid)

    start = time.monotonic()
    await pool.close(timeout=5)
    assert time.monotonic() - start < 3
    await kill_for_real_and_see_it_logged(caplog, before.pid, thread)


@pytest.mark.asyncio
async def test_close_does_not_hang_on_a_worker_stuck_after_sigkill(make_pool, frozen, caplog) -> None:
    caplog.set_level(logging.INFO, logger=pool_module.__name__)
    pool: WorkerPool = make_pool(pool_kwargs={"spawn": spawn_freezing_first(frozen)})
    await pool.scale(1)
    [worker] = pool.workers()
    stuck = asyncio.create_task(pool.predict(make_request("stuck", "stubborn:60")))  # ignores SIGTERM
    await eventually(lambda: pool.queue_depth == 0)
    await asyncio.sleep(0.2)

    start = time.monotonic()
    await pool.close(timeout=0.5)  # SIGTERM: ignored; SIGKILL after 0.5 s: frozen
    assert time.monotonic() - start < 0.5 + KILL_WAIT_S + 2
    with pytest.raises(WorkerDied):
        await stuck
    assert stopped(worker.pid)
    assert records(caplog, logging.ERROR, f"pid {worker.pid} did not exit")
    assert pool.workers() == []
    await kill_for_real_and_see_it_logged(caplog, worker.pid, f"W-{worker.id}-m_1.0")
