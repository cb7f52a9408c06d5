"""What every REST listener shares (spec §0): JSON rendering, headers, the error body, the access log."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from server.errors import (
    Forbidden,
    InternalServerError,
    MethodNotAllowed,
    RequestTimeout,
    ResourceNotFound,
    ServeError,
)
from server.telemetry.logs import ACCESS_LOG, emit_line

log = logging.getLogger("server.api")
NO_CACHE_HEADERS = {
    "Pragma": "no-cache",
    "Cache-Control": "no-cache; no-store, must-revalidate, private",
    "Expires": "Thu, 01 Jan 1970 00:00:00 UTC",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The per-request UUID: the x-request-id header and the handler's request id (spec §0.3).
REQUEST_ID = web.RequestKey("request_id", str)
# Told the status of every response a listener writes (the Requests2XX/4XX/5XX metrics).
STATUS_HOOK = web.AppKey("status_hook", Callable[[int], None])
# How long a request's whole body may take to arrive (config ``request_body_timeout``, seconds).
BODY_TIMEOUT = web.AppKey("body_timeout_s", float)
DEFAULT_BODY_TIMEOUT_S = 60.0


def render_json(obj: Any) -> str:
    """TorchServe's (Gson's) pretty JSON: 2-space indent, no HTML escaping, one trailing newline."""
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=render_json(obj), content_type="application/json")


def error_response(error: ServeError) -> web.Response:
    return json_response(error.body(), status=error.status)


def request_id(request: web.Request) -> str:
    return request[REQUEST_ID]


def body_timeout(request: web.Request) -> float:
    return request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT_S)


class body_deadline:
    """``async with body_deadline(request):`` read a request's body inside this block: a client that trickles
    it (slowloris) gets 408 (``message``) after ``request_body_timeout`` seconds instead of holding a
    connection and its buffers forever. A body that has wholly arrived already (the usual small request)
    needs no timer."""

    __slots__ = ("_message", "_request", "_seconds", "_timeout")

    def __init__(
        self, request: web.Request, message: str = "The request body did not arrive within {seconds:g} s."
    ) -> None:
        self._request = request
        self._message = message
        self._seconds = 0.0
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        if self._request.content.is_eof():
            return
        self._seconds = body_timeout(self._request)
        self._timeout = asyncio.timeout(self._seconds)
        await self._timeout.__aenter__()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self._timeout is None:
            return
        try:
            await self._timeout.__aexit__(kind, exc, tb)
        except TimeoutError:
            raise RequestTimeout(self._message.format(seconds=self._seconds)) from None


async def read_body(request: web.Request) -> bytes:
    """The whole body (at most ``max_request_size``: aiohttp answers 413 beyond), within the body deadline."""
    async with body_deadline(request):
        return await request.read()


@web.middleware
async def torchserve_conventions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ids, cache headers, JSON errors, ``connection: close`` on every status >= 400."""
    request[REQUEST_ID] = str(uuid.uuid4())
    try:
        response = await handler(request)
    except ServeError as exc:
        response = error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        response = web.Response(status=413, reason="Request Entity Too Large")
        response.force_close()
        return response  # TorchServe answers this one before routing: no JSON, no request id
    except web.HTTPMethodNotAllowed:
        response = error_response(MethodNotAllowed())
    except web.HTTPNotFound:
        response = error_response(ResourceNotFound())
    except web.HTTPException as exc:
        response = error_response(ServeError(exc.reason, status=exc.status))
    except Exception as exc:  # a bug of ours: report it as TorchServe does, keep serving
        log.exception("Unexpected error serving %s %s", request.method, request.path)
        response = error_response(InternalServerError(str(exc) or type(exc).__name__))
    hook = request.app.get(STATUS_HOOK)
    if hook is not None:
        hook(response.status)
    if not response.prepared:
        stamp(request, response)
    return response


def stamp(request: web.Request, response: web.StreamResponse) -> None:
    """The headers of every response (spec §0.3); a handler that streams calls this before ``prepare``."""
    response.headers["x-request-id"] = request[REQUEST_ID]
    for key, value in NO_CACHE_HEADERS.items():
        response.headers.setdefault(key, value)
    if response.status >= 400:
        response.force_close()


class AccessLogger(AbstractAccessLogger):
    """``/127.0.0.1:53514 "POST /predictions/m HTTP/1.1" 200 118`` on the ACCESS_LOG logger."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logging.getLogger(ACCESS_LOG), log_format)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        remote = f"/{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "/unknown"
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        line = f'{remote} "{request.method} {request.path_qs} {version}" {response.status} {int(elapsed * 1000)}'
        emit_line(ACCESS_LOG, line)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def refuse_cross_origin_writes(request: web.Request, allowed_origin: str | None) -> None:
    """A browser page of another site may not change the server (when no key guards it): a request that
    changes something and comes with an ``Origin`` other than the server's own (or ``cors_allowed_origin``)
    is refused, so a web page cannot register a handler through ``localhost:8081``."""
    origin = request.headers.get("Origin")
    if request.method.upper() in SAFE_METHODS or origin is None:
        return
    if allowed_origin and (allowed_origin == "*" or origin == allowed_origin):
        return
    if origin != "null" and urlsplit(origin).netloc.lower() == request.host.lower():
        return
    raise Forbidden(f"Cross-origin request from {origin} refused: it may not change the server.")


def new_app(handler: Handler, max_request_size: int) -> web.Application:
    """One listener: every path goes to ``handler``, which routes by path segments as TorchServe does."""
    app = web.Application(client_max_size=max_request_size, middlewares=[torchserve_conventions])
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def segments(request: web.Request) -> list[str]:
    """The path split on ``/`` with empty segments dropped (``/models/`` is ``/models``)."""
    return [s for s in request.path.split("/") if s]
