"""Our errors as gRPC statuses: the code from the one table in `server.errors`, the message as details."""

from __future__ import annotations

from typing import NoReturn

import grpc

from server.errors import ServeError


def status_code(error: ServeError) -> grpc.StatusCode:
    return grpc.StatusCode[error.grpc_code]


async def abort(context: grpc.aio.ServicerContext, error: ServeError) -> NoReturn:
    """End the call with ``error``'s code and message (raises, as ``context.abort`` does)."""
    await context.abort(status_code(error), error.grpc_message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def text(value: str) -> str | None:
    """A proto3 string field: empty means unset (spec §4.3)."""
    return value or None


def number(value: int) -> int | None:
    """A proto3 int field: zero or less means unset (spec §4.3)."""
    return value if value > 0 else None
