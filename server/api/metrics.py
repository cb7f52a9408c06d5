"""The metrics API (default 127.0.0.1:8082), spec §3.1: ``/metrics`` in the Prometheus text format 0.0.4.

``/metrics`` answers any method, and so does any path below it (``/metrics/...``), as in TorchServe;
repeated ``name[]=<family>`` query parameters select families. ``OPTIONS /`` and ``GET /api-description``
give this listener's OpenAPI document; any other method on ``/`` is 405, any other path 404 (the JSON error
body of every listener). What /metrics shows depends on ``metrics_mode`` (empty in the default ``log``
mode): see `server.telemetry.metrics`.
"""

from __future__ import annotations

from aiohttp import web

from server import __version__
from server.api.http import json_response, new_app, segments
from server.errors import MethodNotAllowed, ResourceNotFound
from server.telemetry.metrics import CONTENT_TYPE_004, ServerMetrics


def api_description() -> dict:
    """OpenAPI 3.0.1 description of the metrics listener (TorchServe lists only ``/metrics`` here)."""

    def string(description: str) -> dict:
        return {"type": "string", "description": description}

    metrics_schema = {
        "type": "object",
        "required": ["# HELP", "# TYPE", "metric"],
        "properties": {
            "# HELP": string("Help text for TorchServe metric."),
            "# TYPE": string("Type of TorchServe metric."),
            "metric": string("TorchServe application metric."),
        },
    }
    error_schema = {
        "type": "object",
        "required": ["code", "type", "message"],
        "properties": {
            "code": {"type": "integer", "description": "Error code."},
            "type": string("Error type."),
            "message": string("Error message."),
        },
    }
    return {
        "openapi": "3.0.1",
        "info": {
            "title": "TorchServe APIs",
            "description": "TorchServe is a flexible and easy to use tool for serving deep learning models",
            "version": __version__,
        },
        "paths": {
            "/metrics": {
                "get": {
                    "description": "Get TorchServe application metrics in prometheus format.",
                    "operationId": "metrics",
                    "parameters": [
                        {
                            "in": "query",
                            "name": "name[]",
                            "description": "Names of metrics to filter",
                            "required": False,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "TorchServe application metrics",
                            "content": {CONTENT_TYPE_004: {"schema": metrics_schema}},
                        },
                        "500": {
                            "description": "Internal Server Error",
                            "content": {"application/json": {"schema": error_schema}},
                        },
                    },
                }
            }
        },
    }


class MetricsAPI:
    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def app(self, max_request_size: int) -> web.Application:
        return new_app(self.dispatch, max_request_size)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        segs = segments(request)
        if not segs:
            if request.method != "OPTIONS":
                raise MethodNotAllowed()
            return json_response(api_description())
        if segs == ["api-description"]:
            return json_response(api_description())
        if segs[0] == "metrics":
            return self.scrape(request)
        raise ResourceNotFound()

    def scrape(self, request: web.Request) -> web.Response:
        body = self.metrics.render(request.query.getall("name[]", []))
        response = web.Response(status=200, body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_004
        return response


def metrics_app(metrics: ServerMetrics, max_request_size: int) -> web.Application:
    """The metrics listener's aiohttp application."""
    return MetricsAPI(metrics).app(max_request_size)
