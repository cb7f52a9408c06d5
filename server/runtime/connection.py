"""The frontend's end of one worker's socket: frames out, whole messages in, as an asyncio protocol.

Every request crosses this twice, so it is lean where asyncio's streams are general: a message goes out as
one write (a few small parts are joined first; a large body is handed over without a copy), and frames are
cut out of what arrives in ``data_received`` and decoded there, so a waiting caller gets a whole message with
one wake-up (streams take two coroutine reads, each with its own checks and waiter, per frame).

`receive` returns a future: the next message, or None at a clean end of stream between two frames. A frame
that is malformed, truncated by the end of the stream, or too large fails it (and every later one) with
`ProtocolError`; a connection lost with an error fails it with that `OSError`. Writes that outrun the worker
pause: `drained` waits until the transport takes more.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import cast

from server.runtime import protocol
from server.runtime.protocol import Message, ProtocolError

JOIN_BELOW = 64 * 1024  # a message smaller than this is joined into one buffer before it is written


class WorkerConnection(asyncio.Protocol):
    def __init__(self, max_size: int = protocol.MAX_FRAME_SIZE) -> None:
        self.max_size = max_size
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._messages: collections.deque[Message] = collections.deque()
        self._waiter: asyncio.Future[Message | None] | None = None
        self._ended = False  # end of stream, or the connection was lost
        self._error: BaseException | None = None  # what fails every receive from now on
        self._paused = False
        self._resumed: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None  # done when the connection is lost

    @classmethod
    async def open(cls, path: str | Path, *, max_size: int = protocol.MAX_FRAME_SIZE) -> WorkerConnection:
        """Connect to the worker listening on the unix socket ``path``."""
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_unix_connection(lambda: cls(max_size), str(path))
        return conn

    # -- sending -------------------------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        """Queue ``msg`` for the worker (raises `FrameTooLarge` when it exceeds ``max_size``, sending nothing)."""
        parts = protocol.encode_parts(msg, self.max_size)
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the worker connection is closed")
        if len(parts) == 1 or sum(map(len, parts)) < JOIN_BELOW:
            self.transport.write(b"".join(parts))
        else:
            self.transport.writelines(parts)

    @property
    def paused(self) -> bool:
        """The transport's buffer is full: `drained` before writing more."""
        return self._paused

    async def drained(self) -> None:
        """Until the worker has taken enough of what was sent (at once when writing is not paused)."""
        if not self._paused:
            return
        if self._resumed is None or self._resumed.done():
            self._resumed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._resumed)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)

    # -- receiving -----------------------------------------------------------------------------------------

    def receive(self) -> asyncio.Future[Message | None]:
        """The next message (None: the worker closed the stream cleanly between frames)."""
        future: asyncio.Future[Message | None] = asyncio.get_running_loop().create_future()
        if self._messages:
            future.set_result(self._messages.popleft())
        elif self._error is not None:
            future.set_exception(self._error)
        elif self._ended:
            future.set_result(None)
        else:
            self._waiter = future
        return future

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's transports are not its subclasses)
        self._lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        buffer = self._buffer
        buffer += data
        start = 0
        try:
            while len(buffer) - start >= 4:
                end = start + 4 + protocol.frame_length(buffer, start, self.max_size)
                if len(buffer) < end:
                    break
                msg = protocol.decode_payload(memoryview(buffer)[start + 4 : end])
                start = end
                self._deliver(msg)
        except ProtocolError as exc:
            self._fail(exc)
            return
        if start:
            del buffer[:start]

    def _deliver(self, msg: Message) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)
        else:
            self._messages.append(msg)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._buffer = bytearray()  # (a new one: a view of the old may still be alive in a traceback)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def eof_received(self) -> bool:
        self._end()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self._ended:
            self._fail(exc)
        self._end()
        self.resume_writing()  # a writer waiting for room gives up on a closed transport
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._buffer and self._error is None:
            have = len(self._buffer)
            if have < 4:
                self._fail(ProtocolError(f"truncated frame: stream ended inside the length prefix ({have} of 4)"))
            else:
                length = int.from_bytes(self._buffer[:4], "big", signed=True)
                self._fail(ProtocolError(f"truncated frame: stream ended after {have - 4} of {length} payload bytes"))
            return
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            if self._error is not None:
                waiter.set_exception(self._error)
            else:
                waiter.set_result(None)

    # -- closing -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """End the stream (the worker sees EOF and exits) once what was sent is written."""
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        """Until the connection is lost (closed by either end, or aborted)."""
        if self._lost is not None:
            await asyncio.shield(self._lost)

    def abort(self) -> None:
        """Drop the connection at once, unsent data too (the other end may never read again)."""
        if self.transport is not None:
            self.transport.abort()
