"""Turning a handler's return value into per-request `Response` objects (spec §6.3), and streaming.

Element serialization: ``bytes``/``bytearray`` raw, ``str`` UTF-8, ``torch.Tensor`` as a ``torch.save``
byte stream, anything else ``json.dumps(obj, indent=2)``. Per-request status, reason phrase, content
type and headers come from the context (``set_response_status``, ``set_response_content_type``,
``set_response_header``). As in TorchServe, a content type set by the handler is also one of the
response headers (``content-type``).

Streaming: `send_intermediate_predict_response` (TorchServe's ``ts.handler_utils.utils`` function) sends
an intermediate `Reply` through ``context.intermediate_sender`` (set by the worker with
`HandlerService.set_intermediate_sender`), marking each response with header ``ts_stream_next: true``;
the final reply of the batch then carries ``ts_stream_next: false``.
"""

from __future__ import annotations

import io
import json
from typing import Any

from server.handlers.context import Context
from server.runtime.messages import Reply, Response

STREAM_HEADER = "ts_stream_next"


class UnsupportedOutput(TypeError):
    """A handler output element that cannot be serialized."""


def encode_body(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    import torch

    if isinstance(value, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue()
    try:
        return json.dumps(value, indent=2).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise UnsupportedOutput(f"cannot serialize a {type(value).__name__}: {e}") from e


def _mark_stream(ret: list[Any], idx: int, context: Context, intermediate: bool) -> None:
    if intermediate:
        context.set_response_header(idx, STREAM_HEADER, "true")
    elif context.stopping_criteria:
        is_stop = context.stopping_criteria[idx](ret[idx])
        if is_stop is not None:
            context.set_response_header(idx, STREAM_HEADER, "false" if is_stop else "true")
    elif context.get_response_headers(idx).get(STREAM_HEADER) == "true":
        context.set_response_header(idx, STREAM_HEADER, "false")


def build_responses(
    ret: list[Any], request_ids: dict[int, str], context: Context, *, intermediate: bool = False
) -> list[Response]:
    """One `Response` per batch index; raises `UnsupportedOutput` for an element it cannot serialize."""
    responses = []
    for idx, request_id in request_ids.items():
        _mark_stream(ret, idx, context, intermediate)
        code, phrase = context.get_response_status(idx)
        responses.append(
            Response(
                request_id=request_id,
                body=encode_body(ret[idx]),
                status=int(code) if code is not None else 200,
                reason=phrase or "",
                content_type=context.get_response_content_type(idx) or "",
                headers=[(str(k), str(v)) for k, v in context.get_response_headers(idx).items()],
            )
        )
    return responses


def send_intermediate_predict_response(
    ret: list[Any], req_id_map: dict[int, str], message: str, code: int, context: Context
) -> None:
    """Send one intermediate reply of a streamed prediction (the handler then returns the final one)."""
    sender = getattr(context, "intermediate_sender", None)
    if sender is None:
        raise RuntimeError("this worker cannot send intermediate responses (no intermediate_sender)")
    sender(Reply(code=code, message=message, responses=build_responses(ret, req_id_map, context, intermediate=True)))
