"""The binary frame protocol between the frontend and its worker processes (one module, both sides).

Every message of `server.runtime.messages` travels as one *frame*::

    frame   := int32 length, payload            (length = number of payload bytes, 1 .. max_size)
    payload := tag byte, body                   ('L' Load, 'I' Inference, 'R' Reply)

The bodies follow TorchServe's own backend protocol (spec §7): integers are 32-bit big-endian, strings are
UTF-8 with an int32 length prefix, byte fields are raw bytes with an int32 length prefix, lists end with
an int32 ``-1`` where the next element's first length would be.

* Load: modelName, modelPath, int batchSize, handler, int gpuId, envelope, bool (1 byte)
  limitMaxImagePixels, then modelVersion (our addition, last).
* Inference: per request: requestId, (headerName, headerValue)... -1, (inputName, contentType, value
  bytes)... -1; the request list ends with -1; then int threads (our addition: 0, or the compute threads
  the worker should use for this batch).
* Reply: int code, message, then per response: requestId, contentType, int status, reason, int
  header-count, (key, value) * count, body bytes; the response list ends with -1; then the handler's
  metric lines (``[METRICS]...`` strings, our addition), ending with -1.

Unlike TorchServe, the whole message is length-prefixed, so a reader knows up front how much to read and can
refuse an absurd length before allocating anything; a Reply carries a tag like the other two, and the
handler's metrics (TorchServe's workers print them on stdout: a pipe write and read per request).

Encoding/decoding are pure functions (`encode`, `encode_parts`, `decode`, `decode_payload`, `frame_length`);
`recv_message` / `send_message` serve blocking sockets (the worker), `server.runtime.connection` the
frontend's asyncio end. Every malformed
or truncated frame raises `ProtocolError`; a clean end of stream *between* frames reads as ``None``.
"""

from __future__ import annotations

import socket
import struct

from server.runtime.messages import Inference, InputItem, Load, Reply, Request, Response

__all__ = [
    "MAX_FRAME_SIZE",
    "FrameTooLarge",
    "Message",
    "ProtocolError",
    "decode",
    "decode_payload",
    "encode",
    "encode_parts",
    "frame_length",
    "recv_message",
    "send_message",
]

Message = Load | Inference | Reply

MAX_FRAME_SIZE = 1 << 30
"""Largest payload a reader accepts by default (1 GiB); the int32 prefix caps any frame at 2 GiB - 1."""

_INT32_MAX = (1 << 31) - 1
_PREFIX = struct.Struct(">i")
_INT = struct.Struct(">i")
_pack = _INT.pack
_END = _pack(-1)
_unpack_from = _INT.unpack_from

TAG_LOAD = b"L"
TAG_INFERENCE = b"I"
TAG_REPLY = b"R"


class ProtocolError(Exception):
    """A frame that is truncated, malformed or otherwise not a message of this protocol."""


class FrameTooLarge(ProtocolError):
    """A frame whose announced (or encoded) length exceeds the allowed maximum."""


# -- encoding --------------------------------------------------------------------------------------------


def _field(parts: list[bytes], value: bytes) -> None:
    """A length-prefixed byte field (strings are given UTF-8 encoded)."""
    if len(value) > _INT32_MAX:
        raise FrameTooLarge(f"field of {len(value)} bytes does not fit an int32 length")
    parts += (_pack(len(value)), value)


def _int(value: int) -> bytes:
    try:
        return _pack(value)
    except struct.error:
        raise ProtocolError(f"integer out of int32 range: {value}") from None


def _encode_load(msg: Load) -> list[bytes]:
    parts = [TAG_LOAD]
    _field(parts, msg.model_name.encode())
    _field(parts, msg.model_path.encode())
    parts.append(_int(msg.batch_size))
    _field(parts, msg.handler.encode())
    parts.append(_int(msg.gpu_id))
    _field(parts, msg.envelope.encode())
    parts.append(b"\x01" if msg.limit_max_image_pixels else b"\x00")
    _field(parts, msg.model_version.encode())
    return parts


def _encode_inference(msg: Inference) -> list[bytes]:
    parts = [TAG_INFERENCE]
    for request in msg.requests:
        _field(parts, request.request_id.encode())
        for name, value in request.headers:
            _field(parts, name.encode())
            _field(parts, value.encode())
        parts.append(_END)
        for item in request.inputs:
            _field(parts, item.name.encode())
            _field(parts, item.content_type.encode())
            _field(parts, bytes(item.value))
        parts.append(_END)
    parts += (_END, _int(msg.threads))
    return parts


def _encode_reply(msg: Reply) -> list[bytes]:
    parts = [TAG_REPLY, _int(msg.code)]
    _field(parts, msg.message.encode())
    for response in msg.responses:
        _field(parts, response.request_id.encode())
        _field(parts, response.content_type.encode())
        parts.append(_int(response.status))
        _field(parts, response.reason.encode())
        parts.append(_pack(len(response.headers)))
        for key, value in response.headers:
            _field(parts, key.encode())
            _field(parts, value.encode())
        _field(parts, bytes(response.body))
    parts.append(_END)
    for line in msg.metrics:
        _field(parts, line.encode())
    parts.append(_END)
    return parts


def encode_parts(msg: Message, max_size: int) -> list[bytes]:
    if isinstance(msg, Load):
        parts = _encode_load(msg)
    elif isinstance(msg, Inference):
        parts = _encode_inference(msg)
    elif isinstance(msg, Reply):
        parts = _encode_reply(msg)
    else:
        raise TypeError(f"not a protocol message: {type(msg).__name__}")
    size = sum(map(len, parts))
    if size > min(max_size, _INT32_MAX):
        raise FrameTooLarge(f"message of {size} bytes exceeds the maximum frame size of {max_size} bytes")
    parts.insert(0, _PREFIX.pack(size))
    return parts


def encode(msg: Message, *, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """One message as a complete frame (length prefix included)."""
    return b"".join(encode_parts(msg, max_size))


# -- decoding --------------------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "pos", "size")

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0
        self.size = len(data)

    def _truncated(self, n: int, what: str) -> ProtocolError:
        left = self.size - self.pos
        return ProtocolError(f"truncated frame: {what} needs {n} bytes at {self.pos}, only {left} left")

    def int(self, what: str) -> int:
        pos = self.pos
        if pos + 4 > self.size:
            raise self._truncated(4, what)
        self.pos = pos + 4
        return _unpack_from(self.data, pos)[0]

    def bool(self, what: str) -> bool:
        if self.pos + 1 > self.size:
            raise self._truncated(1, what)
        value = self.data[self.pos]
        self.pos += 1
        if value not in (0, 1):
            raise ProtocolError(f"malformed frame: {what} is {value}, expected a 0/1 byte")
        return value == 1

    def _span(self, what: str, *, terminator: bool = False) -> tuple[int, int] | None:
        """Where the next length-prefixed field lies; None for the list terminator -1 (when allowed)."""
        n = self.int(what)
        if n < 0:
            if n == -1 and terminator:
                return None
            raise ProtocolError(f"malformed frame: negative length {n} for {what}")
        start = self.pos
        if start + n > self.size:
            raise self._truncated(n, what)
        self.pos = start + n
        return start, start + n

    def bytes(self, what: str) -> bytes:
        span = self._span(what)
        assert span is not None
        return bytes(self.data[span[0] : span[1]])

    def str(self, what: str) -> str:
        span = self._span(what)
        assert span is not None
        return self._decode_str(span, what)

    def str_or_end(self, what: str) -> str | None:
        """A string, or None when the list terminator -1 stands where its length would be."""
        span = self._span(what, terminator=True)
        return None if span is None else self._decode_str(span, what)

    def _decode_str(self, span: tuple[int, int], what: str) -> str:
        try:
            return str(self.data[span[0] : span[1]], "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"malformed frame: {what} is not valid UTF-8 ({exc})") from None


def _decode_load(r: _Reader) -> Load:
    return Load(
        model_name=r.str("modelName"),
        model_path=r.str("modelPath"),
        batch_size=r.int("batchSize"),
        handler=r.str("handler"),
        gpu_id=r.int("gpuId"),
        envelope=r.str("envelope"),
        limit_max_image_pixels=r.bool("limitMaxImagePixels"),
        model_version=r.str("modelVersion"),
    )


def _decode_inference(r: _Reader) -> Inference:
    requests: list[Request] = []
    while (request_id := r.str_or_end("requestId")) is not None:
        headers: list[tuple[str, str]] = []
        while (name := r.str_or_end("header name")) is not None:
            headers.append((name, r.str("header value")))
        inputs: list[InputItem] = []
        while (input_name := r.str_or_end("input name")) is not None:
            content_type = r.str("input contentType")
            inputs.append(InputItem(input_name, content_type, r.bytes("input value")))
        requests.append(Request(request_id, headers, inputs))
    return Inference(requests, r.int("threads"))


def _decode_reply(r: _Reader) -> Reply:
    code = r.int("code")
    message = r.str("message")
    responses: list[Response] = []
    while (request_id := r.str_or_end("response requestId")) is not None:
        content_type = r.str("response contentType")
        status = r.int("response status")
        reason = r.str("response reason")
        count = r.int("response header count")
        if count < 0:
            raise ProtocolError(f"malformed frame: negative header count {count}")
        headers = [(r.str("response header key"), r.str("response header value")) for _ in range(count)]
        body = r.bytes("response body")
        responses.append(Response(request_id, body, status, reason, content_type, headers))
    metrics: list[str] = []
    while (line := r.str_or_end("metric line")) is not None:
        metrics.append(line)
    return Reply(code, message, responses, metrics)


_DECODERS = {TAG_LOAD[0]: _decode_load, TAG_INFERENCE[0]: _decode_inference, TAG_REPLY[0]: _decode_reply}


def decode_payload(payload: bytes | bytearray | memoryview) -> Message:
    """A message from a frame's payload (the bytes after the length prefix)."""
    view = memoryview(payload)
    if not view:
        raise ProtocolError("malformed frame: empty payload")
    decoder = _DECODERS.get(view[0])
    if decoder is None:
        raise ProtocolError(f"malformed frame: unknown message tag {bytes(view[:1])!r}")
    reader = _Reader(view)
    reader.pos = 1
    msg = decoder(reader)
    if reader.pos != len(view):
        raise ProtocolError(f"malformed frame: {len(view) - reader.pos} unexpected bytes after the message")
    return msg


def frame_length(buffer: bytes | bytearray, start: int, max_size: int) -> int:
    """The payload length announced by the frame at ``start`` of ``buffer`` (4 bytes there), checked."""
    (length,) = _PREFIX.unpack_from(buffer, start)
    _check_length(length, max_size)
    return length


def _check_length(length: int, max_size: int) -> None:
    if length <= 0:
        raise ProtocolError(f"malformed frame: announced length {length}")
    if length > max_size:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the maximum frame size of {max_size} bytes")


def decode(frame: bytes | bytearray | memoryview, *, max_size: int = MAX_FRAME_SIZE) -> Message:
    """A message from one complete frame (length prefix included); anything missing or extra is an error."""
    view = memoryview(frame)
    if len(view) < _PREFIX.size:
        raise ProtocolError(f"truncated frame: {len(view)} bytes, the length prefix alone needs 4")
    (length,) = _PREFIX.unpack(view[: _PREFIX.size])
    _check_length(length, max_size)
    available = len(view) - _PREFIX.size
    if available < length:
        raise ProtocolError(f"truncated frame: expected {length} payload bytes, got {available}")
    if available > length:
        raise ProtocolError(f"malformed frame: {available - length} bytes after the announced {length}")
    return decode_payload(view[_PREFIX.size :])


# -- blocking sockets (worker) ----------------------------------------------------------------------------


def _recv_exactly(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            break
        got += k
    del view
    if got < n:
        del buf[got:]
    return buf


def recv_message(sock: socket.socket, *, max_size: int = MAX_FRAME_SIZE) -> Message | None:
    """The next message from a blocking socket; ``None`` at a clean end of stream between two frames."""
    head = _recv_exactly(sock, _PREFIX.size)
    if not head:
        return None
    if len(head) < _PREFIX.size:
        raise ProtocolError(f"truncated frame: stream ended inside the length prefix ({len(head)} of 4)")
    (length,) = _PREFIX.unpack(head)
    _check_length(length, max_size)
    payload = _recv_exactly(sock, length)
    if len(payload) < length:
        raise ProtocolError(f"truncated frame: stream ended after {len(payload)} of {length} payload bytes")
    return decode_payload(payload)


def send_message(sock: socket.socket, msg: Message, *, max_size: int = MAX_FRAME_SIZE) -> None:
    """Send one message on a blocking socket."""
    sock.sendall(encode(msg, max_size=max_size))
