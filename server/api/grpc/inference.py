"""``org.pytorch.serve.grpc.inference.InferenceAPIsService`` (spec §4.2) over `DataPlane`.

Each entry of a request's ``input`` map becomes one handler input of that name with no content type (the
handler gets bytes); there are no HTTP headers, and only the handler's body comes back. ``StreamPredictions``
sends one message per intermediate response and ends after the last, also for a handler that does not
stream (one message; TorchServe leaves that stream open). ``StreamPredictions2`` answers each request of the
client's stream in order, with errors in-band in ``status`` so the stream goes on; ``sequence_id`` is passed
to the handler as header ``ts_request_sequence_id`` (a stream that sends none gets one ``ts-seq-<uuid>``).
A call cancelled or past its deadline cancels its request: queued, it never reaches a worker.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2
from google.rpc import status_pb2

from server.api.grpc.proto import inference_pb2 as pb
from server.api.grpc.proto import inference_pb2_grpc
from server.api.grpc.status import abort, status_code, text
from server.api.http import render_json
from server.errors import BadRequest, ServeError
from server.models.dataplane import DataPlane
from server.runtime.messages import InputItem, Request

SEQUENCE_HEADER = "ts_request_sequence_id"
R = TypeVar("R")
Unary = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]]


def translating_errors(method: Unary[R]) -> Unary[R]:
    """A unary rpc whose `ServeError` ends the call with the error's status."""

    @functools.wraps(method)
    async def call(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except ServeError as exc:
            await abort(context, exc)

    return call


def to_request(message: pb.PredictionsRequest, headers: list[tuple[str, str]] | None = None) -> tuple[str, Request]:
    """The model name and the handler's request for a PredictionsRequest."""
    if not message.model_name:
        raise BadRequest("Parameter model_name is required.")
    inputs = [InputItem(name, "", bytes(value)) for name, value in message.input.items()]
    return message.model_name, Request(request_id=str(uuid.uuid4()), headers=headers or [], inputs=inputs)


class InferenceServicer(inference_pb2_grpc.InferenceAPIsServiceServicer):
    def __init__(self, data: DataPlane) -> None:
        self.data = data

    async def Ping(self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext) -> pb.TorchServeHealthResponse:
        _, body = self.data.ping()
        return pb.TorchServeHealthResponse(health=render_json(body))

    @translating_errors
    async def Predictions(self, request: pb.PredictionsRequest, context: grpc.aio.ServicerContext) -> Any:
        model, job = to_request(request)
        response = await self.data.predict(model, text(request.model_version), job)
        return pb.PredictionResponse(prediction=response.body)

    async def StreamPredictions(
        self, request: pb.PredictionsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PredictionResponse]:
        try:
            model, job = to_request(request)
            async with contextlib.aclosing(self.data.stream(model, text(request.model_version), job)) as answers:
                async for response in answers:
                    yield pb.PredictionResponse(prediction=response.body)
        except ServeError as exc:
            await abort(context, exc)

    async def StreamPredictions2(
        self, requests: AsyncIterator[pb.PredictionsRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PredictionResponse]:
        generated: str | None = None
        async for request in requests:
            sequence = request.sequence_id if request.HasField("sequence_id") and request.sequence_id else None
            if sequence is None:
                generated = generated or f"ts-seq-{uuid.uuid4()}"
                sequence = generated
            try:
                model, job = to_request(request, [(SEQUENCE_HEADER, sequence)])
                answers = self.data.stream(model, text(request.model_version), job)
                async with contextlib.aclosing(answers):
                    async for response in answers:
                        yield pb.PredictionResponse(prediction=response.body, sequence_id=sequence)
            except ServeError as exc:
                status = status_pb2.Status(code=status_code(exc).value[0], message=exc.grpc_message)
                yield pb.PredictionResponse(sequence_id=sequence, status=status)
