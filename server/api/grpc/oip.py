"""The Open Inference Protocol's ``GRPCInferenceService`` (spec §4.4) over `OpenInference`.

Served twice on the inference port with the same messages: as ``org.pytorch.serve.grpc.openinference`` (the
name TorchServe's clients call) and as ``inference.GRPCInferenceService`` (KServe's standard name, which
Triton's, KServe's and MLServer's clients call). ``ServerMetadata`` is implemented (TorchServe declares it
and answers UNIMPLEMENTED). Tensors arrive typed or as ``raw_input_contents``; answers are raw when the
request was.
"""

from __future__ import annotations

from typing import Any

import grpc

from server.api.grpc.inference import translating_errors
from server.api.grpc.proto import open_inference_pb2 as pb
from server.api.grpc.status import text
from server.models.registry import Registry
from server.oip.grpc_codec import request_from_proto, response_to_proto
from server.oip.service import OpenInference

SERVICE_NAMES = ("org.pytorch.serve.grpc.openinference.GRPCInferenceService", "inference.GRPCInferenceService")
METHODS = {  # rpc -> (request type, response type)
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}


class OpenInferenceServicer:
    def __init__(self, oip: OpenInference) -> None:
        self.oip = oip

    @property
    def registry(self) -> Registry:
        return self.oip.registry

    @translating_errors
    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=self.oip.live())

    @translating_errors
    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.oip.ready())

    @translating_errors
    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.ModelReadyResponse(ready=self.oip.model_ready(request.name, text(request.version)))

    @translating_errors
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(**self.oip.server_metadata())

    @translating_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext) -> Any:
        found = await self.oip.model_metadata(request.name, text(request.version))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        tensors = {key: [tensor(**t) for t in found[key]] for key in ("inputs", "outputs")}
        return pb.ModelMetadataResponse(
            name=found["name"], versions=found["versions"], platform=found["platform"], **tensors
        )

    @translating_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> Any:
        self.registry.get(request.model_name, text(request.model_version))  # NOT_FOUND before decoding tensors
        answer = await self.oip.infer(request_from_proto(request))
        return response_to_proto(answer, raw=bool(request.raw_input_contents))


def handlers(servicer: OpenInferenceServicer) -> list[grpc.GenericRpcHandler]:
    """One generic handler per service name, all calling ``servicer``."""
    methods = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
        for name, (request_type, response_type) in METHODS.items()
    }
    return [grpc.method_handlers_generic_handler(service, methods) for service in SERVICE_NAMES]
