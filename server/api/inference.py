"""The inference API (default 127.0.0.1:8080), spec §1: ping, predictions, explanations, KServe paths,
SageMaker and legacy routes, the API description, and the Open Inference Protocol (`server.api.oip_rest`).

Streaming handlers' intermediate responses reach the client as HTTP chunks as they are produced. The
listener runs with aiohttp's handler cancellation: a client that disconnects cancels its request, which
leaves the queue without reaching a worker (or, in flight, has its answer dropped).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from server.api.http import body_deadline, json_response, new_app, request_id, segments, stamp
from server.api.oip_rest import OpenInferenceREST
from server.api.openapi import document, operation, param
from server.auth import TokenAuthority
from server.errors import BadRequest, MethodNotAllowed, ResourceNotFound, ServeError
from server.models.dataplane import DataPlane
from server.runtime.messages import InputItem, Request, Response

log = logging.getLogger(__name__)
STREAM_HEADER = "ts_stream_next"

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _mime(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


async def to_request(request: web.Request, extra_headers: dict[str, str], *, query_inputs: bool) -> Request:
    """How a request becomes handler input (spec §1.3); the body, in any form, within ``request_body_timeout``."""
    inputs: list[InputItem] = []
    if query_inputs:
        for key in dict.fromkeys(request.query.keys()):
            inputs.append(InputItem(key, "", request.query.getone(key).encode()))
    mime = _mime(request)
    async with body_deadline(request):
        inputs += await _body_inputs(request, mime)
    headers = [*request.headers.items(), *extra_headers.items()]
    if not "".join(itertools.chain.from_iterable(headers)).isascii():  # else surely valid UTF-8
        for name, value in headers:  # the worker protocol carries UTF-8: refuse here, never fail a batch
            try:
                name.encode("utf-8")
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(f"Header {name.encode('utf-8', 'replace').decode()!r} is not valid UTF-8.") from None
    return Request(request_id=request_id(request), headers=headers, inputs=inputs)


async def _body_inputs(request: web.Request, mime: str) -> list[InputItem]:
    if mime == "multipart/form-data":
        inputs = []
        reader = await request.multipart()
        total = 0
        while (part := await reader.next()) is not None:
            content_type = part.headers.get("Content-Type", "") if part.filename is not None else ""
            value = bytearray()
            while chunk := await part.read_chunk():
                total += len(chunk)
                if total > request.client_max_size:  # max_request_size bounds the parts together
                    raise web.HTTPRequestEntityTooLarge(max_size=request.client_max_size, actual_size=total)
                value += chunk
            inputs.append(InputItem(part.name or "", content_type, bytes(value)))
        return inputs
    if mime == "application/x-www-form-urlencoded":
        form = await request.post()
        return [
            InputItem(key, "", value.encode() if isinstance(value, str) else value.file.read())
            for key in form
            for value in [form.getone(key)]
        ]
    return [InputItem("body", mime, await request.read())]


class HandlerResponse(web.Response):
    """Handler output as TorchServe sends it: no ``Content-Type`` unless the handler set one.

    aiohttp adds ``application/octet-stream`` to any body while preparing the headers; this drops it
    again when the handler chose none.
    """

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        if not getattr(self, "handler_content_type", True):
            self.headers.popall("Content-Type", None)


def to_http(response: Response) -> web.Response:
    """The handler's per-request answer: its status, body, headers; a Content-Type only if it set one."""
    reply = HandlerResponse(status=response.status, reason=response.reason or None, body=response.body)
    reply.handler_content_type = bool(response.content_type)
    if response.content_type:
        reply.headers["Content-Type"] = response.content_type
    for key, value in response.headers:
        reply.headers[key] = value
    return reply


MODEL = param("model_name")
VERSION = param("model_version")


def api_description() -> dict:
    """OpenAPI 3.0.1 description of this listener (``OPTIONS /`` and ``/api-description``)."""
    describe = operation("apiDescription", "Get openapi description.")
    return document(
        {
            "/": {"options": describe},
            "/ping": {"get": operation("ping", "Get TorchServe status.")},
            "/v1/models/{model_name}:predict": {"post": operation("kservePredict", "KServe v1 predict.", MODEL)},
            "/v2/models/{model_name}/infer": {"post": operation("kservev2Infer", "KServe v2 infer.", MODEL)},
            "/predictions/{model_name}": {
                "post": operation("predictions", "Predictions entry point using the default model version.", MODEL)
            },
            "/predictions/{model_name}/{model_version}": {
                "post": operation("version_predictions", "Predictions with a given model version.", MODEL, VERSION)
            },
            "/explanations/{model_name}": {"post": operation("explanations", "Explanations of a prediction.", MODEL)},
            "/api-description": {"get": describe},
        }
    )


def model_description(model: str) -> dict:
    """``OPTIONS /predictions/{m}``: the per-model document (TorchServe keeps the singular ``/prediction``)."""
    paths = api_description()["paths"]
    return document(
        {
            f"/prediction/{model}": paths["/predictions/{model_name}"],
            "/v1/models/{model_name}:predict": paths["/v1/models/{model_name}:predict"],
            "/v2/models/{model_name}/infer": paths["/v2/models/{model_name}/infer"],
        },
        title=f"RESTful API for: {model}",
        version="1.0.0",
    )


class InferenceAPI:
    """Parses inference requests and renders `DataPlane`'s answers; Open Inference Protocol paths go to `oip`."""

    def __init__(
        self,
        data: DataPlane,
        oip: OpenInferenceREST,
        auth: TokenAuthority,
        startup_models: list[str] | None = None,
    ) -> None:
        self.data = data
        self.oip = oip
        self.auth = auth
        self.startup_models = startup_models or []

    def app(self, max_request_size: int) -> web.Application:
        return new_app(self.dispatch, max_request_size)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        segs = segments(request)
        method = request.method
        if not segs:
            if method != "OPTIONS":
                raise MethodNotAllowed()
            return json_response(api_description())
        head = segs[0]
        if head == "api-description":
            return json_response(api_description())
        self.auth.check("inference", request.headers.get("Authorization"))  # every route below (spec §0.5)
        if head == "ping":
            status, body = self.data.ping()
            return json_response(body, status=status)
        if head in ("predictions", "explanations"):
            if len(segs) < 2:
                raise ResourceNotFound()
            version = segs[2] if len(segs) > 2 else None
            if method == "OPTIONS" and len(segs) <= 3:
                self.data.registry.get(segs[1], version)
                return json_response(model_description(segs[1]))
            headers = {"url_path": "/".join(segs[3:]), "explain": str(head == "explanations")}
            return await self.predict(request, segs[1], version, headers, query_inputs=False)
        if head == "v1" and len(segs) == 3 and segs[1] == "models" and ":" in segs[2]:
            model, _, verb = segs[2].rpartition(":")
            if verb in ("predict", "explain"):
                return await self.predict(request, model, None, {"explain": str(verb == "explain")})
        if head == "v2":
            if len(segs) == 4 and segs[1] == "models" and segs[3] == "explain":
                return await self.predict(request, segs[2], None, {"explain": "True"})
            if len(segs) == 4 and segs[1] == "models" and segs[3] == "infer" and self.oip.passes_through(segs[2]):
                return await self.predict(request, segs[2], None, {"explain": "False"})
            return await self.oip.dispatch(request, method, segs[1:])
        if head == "invocations":
            return await self.invocations(request)
        if head == "models" and len(segs) == 3 and segs[2] == "invoke":
            return await self.predict(request, segs[1], None, {}, query_inputs=True)
        if len(segs) in (2, 3) and segs[-1] == "predict":
            version = segs[1] if len(segs) == 3 else None
            return await self.predict(request, segs[0], version, {}, query_inputs=True)
        raise ResourceNotFound()

    async def predict(
        self,
        request: web.Request,
        model: str,
        version: str | None,
        headers: dict[str, str],
        *,
        query_inputs: bool = False,
    ) -> web.StreamResponse:
        self.data.registry.get(model, version)  # 404 before reading a body for an unknown model
        job = await to_request(request, headers, query_inputs=query_inputs)
        return await respond(request, self.data.stream(model, version, job))

    async def invocations(self, request: web.Request) -> web.StreamResponse:
        """SageMaker's route: the model from ``?model_name=``, a form field of that name, or the only model
        loaded at startup. The body is read once, so multipart bodies work (TorchServe answers 500)."""
        job = await to_request(request, {}, query_inputs=True)
        model = request.query.get("model_name")
        if model is None and _mime(request) in FORM_TYPES:
            field = next((item for item in job.inputs if item.name == "model_name"), None)
            model = field.value.decode("utf-8", "replace") if field is not None else None
        if model is None and len(self.startup_models) == 1:
            model = self.startup_models[0]
        if model is None:
            raise BadRequest("Parameter model_name is required.")
        self.data.registry.get(model)
        return await respond(request, self.data.stream(model, None, job))


def is_intermediate(response: Response) -> bool:
    """A streaming handler's response that more will follow (header ``ts_stream_next: true``, spec §1.5)."""
    return any(k.lower() == STREAM_HEADER and v.strip().lower() == "true" for k, v in response.headers)


async def respond(request: web.Request, answers: AsyncIterator[Response]) -> web.StreamResponse:
    """One response, or, for a streaming handler, HTTP chunks as its responses arrive (spec §1.5).

    The head (status, headers) comes from the first intermediate response; each response is one chunk. A
    failure after the head was sent can no longer become an error body: the connection is aborted, so the
    client sees an incomplete chunked body rather than a complete one.
    """
    try:
        first = await anext(answers)
        if not is_intermediate(first):
            return to_http(first)
        reply = web.StreamResponse(status=first.status, reason=first.reason or None)
        if first.content_type:
            reply.content_type = first.content_type
        for key, value in first.headers:
            reply.headers[key] = value
        reply.enable_chunked_encoding()
        stamp(request, reply)
        await reply.prepare(request)
        await reply.write(first.body)
        try:
            async for more in answers:
                await reply.write(more.body)
        except ServeError as exc:
            log.warning("Stream of %s failed after its first chunk: %s", request.path, exc.message)
            if request.transport is not None:
                request.transport.abort()
            return reply
        await reply.write_eof()
        return reply
    finally:
        await answers.aclose()
