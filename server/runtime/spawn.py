"""Starting worker processes without blocking the event loop.

``asyncio.create_subprocess_exec`` forks and execs on the event loop's thread while holding the GIL: tens of
milliseconds for a large frontend (more on a busy host), during which nothing else is served. `spawn_process`
runs ``subprocess.Popen`` on a thread instead (CPython starts it with ``vfork`` and without the GIL), then
follows the child from the loop: its stdout/stderr as asyncio streams, its exit through a Linux pidfd. It
returns an object with the parts of `asyncio.subprocess.Process` the pool uses (``pid``, ``returncode``,
``wait``, ``send_signal``, ``stdout``, ``stderr``). Where pidfds do not exist (not Linux), `default_spawn` is
asyncio's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["SpawnedProcess", "default_spawn", "spawn_process"]


class SpawnedProcess:
    """A child started by `spawn_process`."""

    def __init__(
        self, popen: subprocess.Popen[bytes], stdout: asyncio.StreamReader | None,
        stderr: asyncio.StreamReader | None, exited: asyncio.Future[int],
    ) -> None:  # fmt: skip
        self._popen = popen
        self.stdout = stdout
        self.stderr = stderr
        self._exited = exited

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode if self._exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        if not self._exited.done():
            os.kill(self._popen.pid, sig)  # ProcessLookupError when it is gone: the caller's to handle


async def _reader(loop: asyncio.AbstractEventLoop, pipe: Any) -> asyncio.StreamReader | None:
    if pipe is None:
        return None
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


async def spawn_process(*cmd: str, **kwargs: Any) -> SpawnedProcess:
    """Like ``asyncio.create_subprocess_exec(*cmd, **kwargs)`` (stdin/stdout/stderr, env, cwd), off the loop."""
    loop = asyncio.get_running_loop()
    popen = await asyncio.to_thread(subprocess.Popen, cmd, **kwargs)
    try:
        pidfd = os.pidfd_open(popen.pid)
    except OSError:
        popen.kill()
        await asyncio.to_thread(popen.wait)
        raise
    exited: asyncio.Future[int] = loop.create_future()

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        code = popen.wait()  # it has exited: this only reaps it
        if not exited.done():
            exited.set_result(code)

    loop.add_reader(pidfd, on_exit)
    try:
        stdout = await _reader(loop, popen.stdout)
        stderr = await _reader(loop, popen.stderr)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            popen.kill()
        raise
    return SpawnedProcess(popen, stdout, stderr, exited)


def _has_pidfd() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # an old kernel, or a sandbox without the syscall
        return False
    return True


default_spawn: Callable[..., Awaitable[Any]] = spawn_process if _has_pidfd() else asyncio.create_subprocess_exec
