"""``org.pytorch.serve.grpc.management.ManagementAPIsService`` (spec §4.3) over `ModelControl`.

Every call answers ``ManagementResponse.msg``: the JSON text REST returns for describe and list, the REST
``status`` text otherwise. Proto3 has no "unset", so zero and empty fields mean unset (spec §4.3): a scale
without ``min_worker`` asks for 1 worker as REST does, a register without ``synchronous`` does not wait, and
a list without ``limit`` returns a page of 100 (TorchServe returns no models there: a flaw we do not copy).
"""

from __future__ import annotations

from typing import Any

import grpc

from server.api.grpc.inference import translating_errors
from server.api.grpc.proto import management_pb2 as pb
from server.api.grpc.proto import management_pb2_grpc
from server.api.grpc.status import number, text
from server.api.http import render_json
from server.errors import BadRequest
from server.models.control import ModelControl, Outcome
from server.models.registry import RegisterOptions


def _required(value: str, field: str) -> str:
    if not value:
        raise BadRequest(f"Parameter {field} is required.")
    return value


def _msg(result: Outcome) -> pb.ManagementResponse:
    return pb.ManagementResponse(msg=result.status)


class ManagementServicer(management_pb2_grpc.ManagementAPIsServiceServicer):
    def __init__(self, control: ModelControl) -> None:
        self.control = control

    @translating_errors
    async def DescribeModel(self, request: pb.DescribeModelRequest, context: grpc.aio.ServicerContext) -> Any:
        name = _required(request.model_name, "model_name")
        described = await self.control.describe(name, text(request.model_version), customized=request.customized)
        return pb.ManagementResponse(msg=render_json(described))

    @translating_errors
    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> Any:
        page = self.control.list_models(number(request.limit), number(request.next_page_token))
        return pb.ManagementResponse(msg=render_json(page))

    @translating_errors
    async def RegisterModel(self, request: pb.RegisterModelRequest, context: grpc.aio.ServicerContext) -> Any:
        options = RegisterOptions(
            name=text(request.model_name),
            handler=text(request.handler),
            runtime=text(request.runtime),
            workers=number(request.initial_workers),
            batch_size=number(request.batch_size),
            max_batch_delay=number(request.max_batch_delay),
            response_timeout=number(request.response_timeout),
            startup_timeout=number(request.startup_timeout),
            synchronous=request.synchronous,
        )
        return _msg(await self.control.register(text(request.url), options))

    @translating_errors
    async def ScaleWorker(self, request: pb.ScaleWorkerRequest, context: grpc.aio.ServicerContext) -> Any:
        name = _required(request.model_name, "model_name")
        scaled = await self.control.scale(
            name,
            text(request.model_version),
            number(request.min_worker),
            number(request.max_worker),
            synchronous=request.synchronous,
        )
        return _msg(scaled)

    @translating_errors
    async def SetDefault(self, request: pb.SetDefaultRequest, context: grpc.aio.ServicerContext) -> Any:
        name = _required(request.model_name, "model_name")
        return _msg(await self.control.set_default(name, _required(request.model_version, "model_version")))

    @translating_errors
    async def UnregisterModel(self, request: pb.UnregisterModelRequest, context: grpc.aio.ServicerContext) -> Any:
        # the model-API gate comes first, as in TorchServe; an empty name is then simply not found
        return _msg(await self.control.unregister(request.model_name, text(request.model_version)))
