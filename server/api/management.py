"""The management API (default 127.0.0.1:8081), spec §2: register, scale, describe, list, unregister,
set-default, KServe readiness and the API description; plus tsconsole's ``/console/...`` endpoints
(`server.api.console`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from server.api.console import ConsoleAPI, console_paths
from server.api.http import json_response, new_app, read_body, refuse_cross_origin_writes, segments
from server.api.openapi import document, operation, param
from server.auth import TokenAuthority
from server.errors import BadRequest, MethodNotAllowed, ResourceNotFound
from server.models.control import ModelControl, Outcome
from server.models.registry import RegisterOptions

MODEL = param("model_name")
VERSION = param("model_version")


class Params:
    """Query (or JSON body) parameters, parsed the way TorchServe parses them."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    @classmethod
    async def of(cls, request: web.Request, *, json_body: bool = False) -> Params:
        if json_body and request.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/json":
            try:
                body = json.loads(await read_body(request) or b"{}")
            except ValueError:
                raise BadRequest("Invalid JSON in the request body.") from None
            except RecursionError:
                raise BadRequest("The JSON of the request body is nested too deeply.") from None
            if not isinstance(body, dict):
                raise BadRequest("The request body must be a JSON object.")
            return cls(body)
        return cls({key: request.query.getone(key) for key in request.query})  # the first value wins

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        return None if value is None else str(value)

    def integer(self, key: str, default: int | None = None) -> int | None:
        """An int, or ``default`` when absent or not an integer (TorchServe ignores such values silently)."""
        value = self.values.get(key)
        if isinstance(value, bool):
            return default
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except (TypeError, ValueError):
            return default

    def boolean(self, key: str, default: bool) -> bool:
        """Java's parseBoolean: exactly "true" (any case) is true, anything else false."""
        value = self.values.get(key)
        if value is None:
            return default
        return value is True or str(value).strip().lower() == "true"


def api_description() -> dict[str, Any]:
    describe_api = operation("apiDescription", "Get openapi description.")
    register = operation(
        "registerModel",
        "Register a new model.",
        *(
            param(name, "query", kind, required=name == "url")
            for name, kind in (
                ("url", "string"),
                ("model_name", "string"),
                ("handler", "string"),
                ("runtime", "string"),
                ("batch_size", "integer"),
                ("max_batch_delay", "integer"),
                ("initial_workers", "integer"),
                ("synchronous", "boolean"),
                ("response_timeout", "integer"),
                ("startup_timeout", "integer"),
            )
        ),
        responses={
            "200": "Model registered",
            "202": "Accepted",
            "400": "Bad request",
            "404": "Not found",
            "409": "Version already registered",
            "500": "Internal server error",
        },
    )
    scale = operation(
        "setAutoScale",
        "Configure number of workers for a model.",
        MODEL,
        param("min_worker", "query", "integer"),
        param("max_worker", "query", "integer"),
        param("synchronous", "query", "boolean"),
        responses={"200": "Scaled", "202": "Accepted", "400": "Bad request", "404": "Not found"},
    )
    return document(
        {
            "/": {"options": describe_api},
            "/models": {
                "get": operation(
                    "listModels",
                    "List registered models.",
                    param("limit", "query", "integer"),
                    param("next_page_token", "query", "string"),
                ),
                "post": register,
            },
            "/models/{model_name}": {
                "get": operation("describeModel", "Provides detailed information about the default version.", MODEL),
                "put": scale,
                "delete": operation("unregisterModel", "Unregister the default version of a model.", MODEL),
            },
            "/models/{model_name}/{model_version}": {
                "get": operation("version_describeModel", "Describe a version of a model.", MODEL, VERSION),
                "put": {**scale, "operationId": "version_setAutoScale"},
                "delete": operation("version_unregisterModel", "Unregister a version of a model.", MODEL, VERSION),
            },
            "/models/{model_name}/{model_version}/set-default": {
                "put": operation("setDefault", "Set the default version of a model.", MODEL, VERSION)
            },
            "/api-description": {"get": describe_api},
            **console_paths(),
        }
    )


class ManagementAPI:
    """Parses management requests and renders `ModelControl`'s answers; every rule lives there."""

    def __init__(self, control: ModelControl, auth: TokenAuthority, console: ConsoleAPI | None = None) -> None:
        self.control = control
        self.auth = auth
        self.console = console if console is not None else ConsoleAPI(control.registry, control.settings)

    def app(self, max_request_size: int) -> web.Application:
        return new_app(self.dispatch, max_request_size)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        segs = segments(request)
        method = request.method.upper()
        if not segs:
            if method != "OPTIONS":
                raise MethodNotAllowed()
            return json_response(api_description())
        if segs == ["api-description"]:
            return json_response(api_description())
        if segs == ["token"] and self.auth.enabled:  # exactly /token: a model named "token" is just a model
            await self.auth.rotate(request.query.get("type"), request.headers.get("Authorization"))
            return web.Response(text="\n", content_type="application/json")
        self.auth.check("management", request.headers.get("Authorization"))  # every route below (spec §0.5)
        if not self.auth.enabled:
            refuse_cross_origin_writes(request, self.control.settings.get("cors_allowed_origin"))
        if segs[0] == "models":
            return await self.models(request, method, segs[1:])
        if segs[0] == "console":
            return await self.console.dispatch(request, method, segs[1:])
        if segs[0] == "v1" and len(segs) == 3 and segs[1] == "models":
            if method != "GET":
                raise MethodNotAllowed()
            return json_response(self.control.kserve_ready(segs[2]))
        raise ResourceNotFound()

    async def models(self, request: web.Request, method: str, rest: list[str]) -> web.StreamResponse:
        control = self.control
        if not rest:
            if method == "GET":
                params = Params({key: request.query.getone(key) for key in request.query})
                return json_response(control.list_models(params.integer("limit"), params.integer("next_page_token")))
            if method == "POST":
                return await self.register(request)
            raise MethodNotAllowed()
        name = rest[0]
        if len(rest) == 3 and rest[2] == "set-default":
            if method != "PUT":
                raise MethodNotAllowed()
            return outcome(await control.set_default(name, rest[1]))
        if len(rest) > 2:
            raise ResourceNotFound()
        version = rest[1] if len(rest) == 2 else None
        if method == "GET":
            customized = request.query.get("customized", "").lower() == "true"
            return json_response(await control.describe(name, version, customized=customized))
        if method == "PUT":
            params = await Params.of(request)
            version = version or params.text("model_version")
            synchronous = params.boolean("synchronous", False)
            scaled = await control.scale(
                name, version, params.integer("min_worker"), params.integer("max_worker"), synchronous=synchronous
            )
            return outcome(scaled)
        if method == "DELETE":
            return outcome(await control.unregister(name, version))
        if method == "OPTIONS":
            control.registry.get(name, None if version == "all" else version)
            return json_response(
                document(api_description()["paths"], title=f"RESTful Management API for: {name}", version="1.0.0")
            )
        raise MethodNotAllowed()

    async def register(self, request: web.Request) -> web.Response:
        self.control.require_model_api()  # before reading a body
        params = await Params.of(request, json_body=True)
        initial = params.integer("initial_workers")
        options = RegisterOptions(
            name=params.text("model_name") or None,
            handler=params.text("handler") or None,
            runtime=params.text("runtime"),
            workers=max(initial, 0) if initial is not None else None,
            batch_size=params.integer("batch_size"),
            max_batch_delay=params.integer("max_batch_delay"),
            response_timeout=params.integer("response_timeout"),
            startup_timeout=params.integer("startup_timeout"),
            synchronous=params.boolean("synchronous", True),
        )
        return outcome(await self.control.register(params.text("url"), options))


def outcome(result: Outcome) -> web.Response:
    return json_response({"status": result.status}, status=result.http_status)
