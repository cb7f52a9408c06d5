"""The Open Inference Protocol (KServe v2) over REST, on the inference listener, for every model.

Paths under ``/v2``: ``health/live``, ``health/ready``, the server's metadata (``/v2``), and per model (and
``/versions/{v}``) its metadata, ``/ready`` and ``/infer`` (JSON tensors, or the binary-tensor extension).
Parsing and rendering only: the rules are `server.oip.service.OpenInference`'s, the tensor codecs
`server.oip.rest`'s. Errors are the protocol's ``{"error": "..."}`` bodies with the status of our error
table, which tritonclient and KServe clients read.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.api.http import read_body, render_json
from server.errors import MethodNotAllowed, ResourceNotFound, ServeError
from server.oip.rest import HEADER_LENGTH, parse_infer_request, render_infer_response
from server.oip.service import OpenInference


def oip_json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=render_json(obj), content_type="application/json")


class OpenInferenceREST:
    def __init__(self, oip: OpenInference) -> None:
        self.oip = oip

    def passes_through(self, model: str) -> bool:
        """``/v2/models/{m}/infer`` of a model with a KServe envelope is TorchServe's plain prediction route."""
        try:
            return self.oip.passes_through(model, None)
        except ServeError:
            return False  # unknown model: the protocol's own 404 below

    async def dispatch(self, request: web.Request, method: str, rest: list[str]) -> web.StreamResponse:
        """``rest`` is the path after ``/v2``."""
        try:
            return await self._route(request, method, rest)
        except ServeError as exc:
            return oip_json({"error": exc.message or exc.type}, status=exc.status)

    async def _route(self, request: web.Request, method: str, rest: list[str]) -> web.StreamResponse:
        oip = self.oip
        if not rest:
            _only(method, "GET")
            return oip_json(oip.server_metadata())
        if rest == ["health", "live"]:
            _only(method, "GET")
            return oip_json({"live": oip.live()})
        if rest == ["health", "ready"]:
            _only(method, "GET")
            ready = oip.ready()
            return oip_json({"ready": ready}, status=200 if ready else 503)
        if len(rest) < 2 or rest[0] != "models":
            raise ResourceNotFound()
        model, tail = rest[1], rest[2:]
        version: str | None = None
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        if not tail:
            _only(method, "GET")
            return oip_json(await oip.model_metadata(model, version))
        if tail == ["ready"]:
            _only(method, "GET")
            ready = oip.model_ready(model, version)
            return oip_json({"name": model, "ready": ready}, status=200 if ready else 503)
        if tail == ["infer"]:
            _only(method, "POST")
            oip.registry.get(model, version)  # 404 before reading a body for an unknown model
            body = await read_body(request)
            parsed = parse_infer_request(model, version, body, request.headers.get(HEADER_LENGTH))
            answer = await oip.infer(parsed)
            payload, headers = render_infer_response(answer, parsed)
            reply = web.Response(status=200, body=payload)
            for key, value in headers.items():
                reply.headers[key] = value
            return reply
        raise ResourceNotFound()


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed()
