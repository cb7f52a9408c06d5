"""The two gRPC servers (grpc.aio, in the frontend's event loop), their token check and access log.

Message limits are ``max_request_size`` (inbound) and ``max_response_size`` (outbound): a larger message
fails with RESOURCE_EXHAUSTED. Every call must carry the key of its server's role in the ``authorization``
metadata (``Bearer <key>``) unless token authorization is off: else PERMISSION_DENIED (spec §4.1). Each call
writes TorchServe's access line, ``/127.0.0.1:53514 "gRPC <full method> HTTP/2.0" <status code number>
<ms>``, to the ACCESS_LOG logger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from server.api.grpc.inference import InferenceServicer
from server.api.grpc.management import ManagementServicer
from server.api.grpc.oip import OpenInferenceServicer, handlers
from server.api.grpc.proto import inference_pb2_grpc, management_pb2_grpc
from server.api.grpc.status import abort
from server.auth import TokenAuthority
from server.config import Address, Settings
from server.errors import ServeError
from server.telemetry.logs import ACCESS_LOG, emit_line

log = logging.getLogger(__name__)
STOP_GRACE_S = 5.0


def _remote(peer: str) -> str:
    """``ipv4:127.0.0.1:53514`` / ``ipv6:[::1]:53514`` -> TorchServe's ``/127.0.0.1:53514``."""
    _, _, address = peer.partition(":")
    return "/" + (address or peer)


def _code(context: grpc.aio.ServicerContext, error: BaseException | None) -> int:
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= 0
        return (grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED).value[0]
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.value[0]
    if isinstance(code, int):
        return code
    return grpc.StatusCode.UNKNOWN.value[0] if error is not None else grpc.StatusCode.OK.value[0]


class FrontDoor(grpc.aio.ServerInterceptor):
    """Wraps every rpc's behaviour: the token check of ``role`` first, one access line when it ends."""

    def __init__(self, role: str, auth: TokenAuthority) -> None:
        self.role = role
        self.auth = auth

    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        if not self.auth.enabled:
            return
        metadata = context.invocation_metadata() or ()
        authorization = next((str(v) for k, v in metadata if k.lower() == "authorization"), None)
        try:
            self.auth.check(self.role, authorization)
        except ServeError as exc:
            await abort(context, exc)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method.lstrip("/")

        def line(context: grpc.aio.ServicerContext, started: float, error: BaseException | None) -> None:
            elapsed = int((time.monotonic() - started) * 1000)
            code = _code(context, error)
            emit_line(ACCESS_LOG, f'{_remote(context.peer())} "gRPC {method} HTTP/2.0" {code} {elapsed}')

        if handler.unary_unary is not None:
            behaviour = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started, error = time.monotonic(), None
                try:
                    await self._check(context)
                    return await behaviour(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    line(context, started, error)

            return handler._replace(unary_unary=unary)
        streaming = handler.unary_stream or handler.stream_stream
        if streaming is None:  # client streaming: none of our services has one
            return handler

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started, error = time.monotonic(), None
            try:
                await self._check(context)
                async for item in streaming(request, context):
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                line(context, started, error)

        if handler.unary_stream is not None:
            return handler._replace(unary_stream=stream)
        return handler._replace(stream_stream=stream)


class GrpcServers:
    """The inference and management gRPC servers of one model server."""

    def __init__(
        self,
        settings: Settings,
        auth: TokenAuthority,
        inference: InferenceServicer,
        management: ManagementServicer,
        oip: OpenInferenceServicer,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.inference, self.management, self.oip = inference, management, oip
        self.servers: list[grpc.aio.Server] = []

    def _server(self, role: str) -> grpc.aio.Server:
        options = [
            ("grpc.max_receive_message_length", self.settings.max_request_size),
            ("grpc.max_send_message_length", self.settings.max_response_size),
            ("grpc.so_reuseport", 0),
        ]
        return grpc.aio.server(interceptors=[FrontDoor(role, self.auth)], options=options)

    async def start(self) -> None:
        """Listen on both addresses; raises OSError naming the address that could not be opened."""
        inference = self._server("inference")
        inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server(self.inference, inference)
        inference.add_generic_rpc_handlers(handlers(self.oip))
        management = self._server("management")
        management_pb2_grpc.add_ManagementAPIsServiceServicer_to_server(self.management, management)
        for server, address, name in (
            (inference, self.settings.grpc_inference_address, "gRPC inference"),
            (management, self.settings.grpc_management_address, "gRPC management"),
        ):
            self._bind(server, address, name)
            await server.start()
            self.servers.append(server)
            log.info("%s API bind to: %s", name, address.target)

    @staticmethod
    def _bind(server: grpc.aio.Server, address: Address, name: str) -> None:
        try:
            port = server.add_insecure_port(address.target)
        except RuntimeError as exc:
            raise OSError(f"{name}: cannot listen on {address.target}: {exc}") from None
        if port == 0:
            raise OSError(f"{name}: cannot listen on {address.target} (in use, or not an address of this host)")

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        servers, self.servers = self.servers, []
        await asyncio.gather(*(server.stop(grace) for server in servers))
