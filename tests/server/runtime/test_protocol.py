from __future__ import annotations

import socket
import struct

import pytest

from server.runtime import protocol
from server.runtime.messages import Inference, InputItem, Load, Reply, Request, Response
from server.runtime.protocol import FrameTooLarge, ProtocolError, decode, encode

LOAD = Load(
    model_name="résnet-18 🚀",
    model_path="/models/résnet",
    batch_size=8,
    handler="image_classifier",
    gpu_id=3,
    envelope="kservev2",
    limit_max_image_pixels=False,
    model_version="1.0",
)
INFERENCE = Inference(
    [
        Request(
            "req-1",
            [("content-type", "image/jpeg"), ("x-ünicode", "väl ✓")],
            [InputItem("body", "image/jpeg", b"\x00\xff" * 10), InputItem("field", "", "😀".encode())],
        ),
        Request("req-2"),
        Request("", [("", "")], [InputItem("", "", b"")]),
    ]
)
REPLY = Reply(
    200,
    "Prediction success",
    [
        Response("req-1", b'{"a": 1}', 200, "", "application/json", [("x-h", "1"), ("dummy", "ü")]),
        Response("req-2", b"", 599, "Custom ✗", "", []),
    ],
)

MESSAGES = [
    LOAD,
    Load("m", "/p", 1, "h"),
    Load("", "", 1, "", -1, "", True, ""),
    INFERENCE,
    Inference([]),
    Inference([], threads=3),
    REPLY,
    Reply(200, "m loaded"),
    Reply(507, "Out of resources"),
    Reply(0, ""),
    Reply(200, "ok", [Response("r", b"x")], metrics=["[METRICS]HandlerTime.ms:1.5|#ModelName:m|#hostname:h,1,r"]),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: protocol.Message) -> None:
    frame = encode(msg)
    (length,) = struct.unpack(">i", frame[:4])
    assert length == len(frame) - 4
    assert decode(frame) == msg


def test_torchserve_shapes() -> None:
    frame = encode(Load("m", "/p", 2, "h", gpu_id=-1, envelope="", limit_max_image_pixels=True))
    payload = frame[4:]
    assert payload[:1] == b"L"
    expected = (
        b"L"
        + struct.pack(">i", 1)
        + b"m"
        + struct.pack(">i", 2)
        + b"/p"
        + struct.pack(">i", 2)
        + struct.pack(">i", 1)
        + b"h"
        + struct.pack(">i", -1)
        + struct.pack(">i", 0)
        + b"\x01"
        + struct.pack(">i", 0)
    )
    assert payload == expected
    empty = encode(Inference([]))[4:]
    assert empty == b"I" + struct.pack(">i", -1) + struct.pack(">i", 0)  # no requests; threads 0
    reply = encode(Reply(200, ""))[4:]  # no responses, no metric lines
    assert reply == b"R" + struct.pack(">i", 200) + struct.pack(">i", 0) + struct.pack(">i", -1) * 2
    with_metrics = encode(Reply(200, "", metrics=["[METRICS]X.Count:1"]))[4:]
    line = b"[METRICS]X.Count:1"
    assert with_metrics.endswith(struct.pack(">i", -1) + struct.pack(">i", len(line)) + line + struct.pack(">i", -1))


def test_large_bodies_round_trip() -> None:
    big = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    inference = Inference([Request("big", [], [InputItem("body", "application/octet-stream", big)])])
    assert decode(encode(inference)).requests[0].inputs[0].value == big
    reply = Reply(200, "ok", [Response("big", big)])
    assert decode(encode(reply)).responses[0].body == big


@pytest.mark.parametrize("msg", [LOAD, INFERENCE, REPLY], ids=lambda m: type(m).__name__)
def test_every_truncation_is_refused(msg: protocol.Message) -> None:
    frame = encode(msg)
    for cut in range(len(frame)):
        with pytest.raises(ProtocolError, match="truncated"):
            decode(frame[:cut])


@pytest.mark.parametrize("msg", [LOAD, INFERENCE, REPLY], ids=lambda m: type(m).__name__)
def test_truncated_payload_with_matching_prefix_is_refused(msg: protocol.Message) -> None:
    """A frame whose prefix agrees with its (too short) payload still fails inside the message."""
    payload = encode(msg)[4:]
    for cut in range(1, len(payload)):
        with pytest.raises(ProtocolError):
            decode(struct.pack(">i", cut) + payload[:cut])


def test_malformed_frames() -> None:
    with pytest.raises(ProtocolError, match="unknown message tag"):
        decode(struct.pack(">i", 1) + b"X")
    with pytest.raises(ProtocolError, match="announced length 0"):
        decode(struct.pack(">i", 0))
    with pytest.raises(ProtocolError, match="after the announced"):
        decode(encode(REPLY) + b"\x00")
    with pytest.raises(ProtocolError, match="unexpected bytes"):
        payload = encode(Reply(200, ""))[4:] + b"\x00"
        decode(struct.pack(">i", len(payload)) + payload)
    with pytest.raises(ProtocolError, match="negative length"):
        payload = b"R" + struct.pack(">i", 200) + struct.pack(">i", -5)
        decode(struct.pack(">i", len(payload)) + payload)
    with pytest.raises(ProtocolError, match="UTF-8"):
        payload = b"R" + struct.pack(">i", 200) + struct.pack(">i", 1) + b"\xff" + struct.pack(">i", -1)
        decode(struct.pack(">i", len(payload)) + payload)
    with pytest.raises(ProtocolError, match="0/1 byte"):
        payload = bytearray(encode(Load("m", "/p", 1, "h"))[4:])
        payload[-5] = 7  # the limitMaxImagePixels byte, before the empty model version
        decode(struct.pack(">i", len(payload)) + bytes(payload))
    with pytest.raises(TypeError):
        encode("not a message")  # type: ignore[arg-type]


def test_absurd_lengths_are_refused() -> None:
    with pytest.raises(FrameTooLarge):
        decode(struct.pack(">i", 2**31 - 1) + b"R")
    with pytest.raises(FrameTooLarge):
        decode(struct.pack(">i", 100) + b"R" * 100, max_size=99)
    with pytest.raises(ProtocolError, match="announced length -7"):
        decode(struct.pack(">i", -7) + b"R")
    with pytest.raises(FrameTooLarge):
        encode(Reply(200, "x" * 100), max_size=50)
    with pytest.raises(ProtocolError, match="int32"):
        encode(Reply(2**31, ""))


def test_blocking_socket_helpers() -> None:
    a, b = socket.socketpair()
    with a, b:
        for msg in MESSAGES:
            protocol.send_message(a, msg)
        for msg in MESSAGES:
            assert protocol.recv_message(b) == msg
        a.shutdown(socket.SHUT_WR)
        assert protocol.recv_message(b) is None  # clean end of stream


def test_blocking_truncated_stream_and_size_limit() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(encode(REPLY)[:-3])
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(ProtocolError, match="truncated frame: stream ended after"):
            protocol.recv_message(b)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"\x00\x00")
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(ProtocolError, match="inside the length prefix"):
            protocol.recv_message(b)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">i", 1 << 30))
        with pytest.raises(FrameTooLarge):
            protocol.recv_message(b, max_size=1 << 20)
