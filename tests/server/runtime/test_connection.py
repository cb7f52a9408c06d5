"""WorkerConnection: the frontend's end of a worker socket, against the worker's blocking end."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from server.runtime import protocol
from server.runtime.connection import WorkerConnection
from server.runtime.messages import Reply, Response
from server.runtime.protocol import FrameTooLarge, ProtocolError, encode
from tests.server.runtime.test_protocol import INFERENCE, MESSAGES

try:
    import uvloop
except ImportError:  # a platform without uvloop's wheels: the server runs asyncio's loop there
    uvloop = None

# Both loops the server runs on (uvloop by default; its transports are not asyncio's classes).
LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(uvloop and uvloop.new_event_loop, id="uvloop", marks=pytest.mark.skipif(not uvloop, reason="uvloop")),
]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    """Runs a test's coroutine on a fresh loop of each kind."""

    def run_on_loop(main: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=request.param) as runner:
            runner.run(main)

    return run_on_loop


async def connect(sock: socket.socket, max_size: int = protocol.MAX_FRAME_SIZE) -> WorkerConnection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_unix_connection(lambda: WorkerConnection(max_size), sock=sock)
    return conn


def echo(sock: socket.socket, seen: list[protocol.Message | None]) -> None:
    """The worker's side: blocking reads, each message sent back, until the frontend ends the stream."""
    while True:
        msg = protocol.recv_message(sock)
        seen.append(msg)
        if msg is None:
            sock.close()
            return
        protocol.send_message(sock, msg)


def test_messages_go_and_come_back_whole_a_large_one_through_the_paused_transport(run) -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair()
        seen: list[protocol.Message | None] = []
        worker = threading.Thread(target=echo, args=(theirs, seen), daemon=True)
        worker.start()
        conn = await connect(ours)
        big = Reply(200, "ok", [Response("big", b"\x01" * (10 * 1024 * 1024))])
        for msg in [*MESSAGES, big]:
            conn.send(msg)
            await conn.drained()
            assert await conn.receive() == msg
        conn.close()
        await conn.wait_closed()
        await asyncio.to_thread(worker.join, 10)
        assert seen == [*MESSAGES, big, None]

    run(main())


def test_frames_split_or_joined_anyhow_arrive_as_messages_in_order(run) -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            conn = await connect(ours)
            stream = b"".join(encode(m) for m in MESSAGES)
            for i in range(0, len(stream), 7):  # odd-sized chunks: frames cut anywhere
                theirs.sendall(stream[i : i + 7])
            got = [await conn.receive() for _ in MESSAGES]
            assert got == MESSAGES
            theirs.sendall(encode(INFERENCE) * 2)  # two frames in one write
            assert [await conn.receive(), await conn.receive()] == [INFERENCE, INFERENCE]
        assert await conn.receive() is None  # a clean end between frames
        assert await conn.receive() is None

    run(main())


@pytest.mark.parametrize(
    ("sent", "error", "match"),
    [
        (encode(INFERENCE)[:-1], ProtocolError, "truncated frame: stream ended after"),
        (b"\x00", ProtocolError, "length prefix"),
        (struct.pack(">i", 5000), FrameTooLarge, "exceeds the maximum frame size"),
        (struct.pack(">i", 2) + b"Zx", ProtocolError, "unknown message tag"),
        (struct.pack(">i", -3), ProtocolError, "announced length"),
    ],
)
def test_a_bad_stream_fails_the_waiting_receive_and_every_later_one(run, sent, error, match) -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair()
        conn = await connect(ours, max_size=4096)
        waiting = conn.receive()
        with theirs:
            theirs.sendall(sent)
        with pytest.raises(error, match=match):
            await waiting
        with pytest.raises(error, match=match):
            await conn.receive()
        conn.abort()

    run(main())


def test_sending_more_than_the_frame_limit_sends_nothing(run) -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            conn = await connect(ours, max_size=64)
            with pytest.raises(FrameTooLarge):
                conn.send(Reply(200, "x" * 100))
            conn.send(Reply(200, "ok"))
            await conn.drained()
            theirs.settimeout(5)
            assert protocol.recv_message(theirs) == Reply(200, "ok")
        conn.abort()
        with pytest.raises(ConnectionResetError):
            conn.send(Reply(200, "ok"))

    run(main())
