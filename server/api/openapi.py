"""OpenAPI 3.0.1 documents for ``OPTIONS /`` and ``/api-description`` on every listener (spec §1.7)."""

from __future__ import annotations

from typing import Any

from server import __version__

TITLE = "TorchServe APIs"
DESCRIPTION = "TorchServe is a flexible and easy to use tool for serving deep learning models"


def param(name: str, where: str = "path", kind: str = "string", *, required: bool | None = None, doc: str = "") -> dict:
    return {
        "in": where,
        "name": name,
        "required": where == "path" if required is None else required,
        "description": doc or name.replace("_", " "),
        "schema": {"type": kind},
    }


def operation(op_id: str, summary: str, *params: dict, responses: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "description": summary,
        "parameters": list(params),
        "responses": {code: {"description": text} for code, text in (responses or {"200": "OK"}).items()},
    }


METRICS_PATH = {"/metrics": {"get": operation("metrics", "Get TorchServe application metrics in prometheus format.")}}


def document(paths: dict[str, Any], *, title: str = TITLE, version: str = __version__) -> dict[str, Any]:
    """A whole document; ``/metrics`` is always listed, as TorchServe lists it on every listener."""
    info: dict[str, Any] = {"title": title, "version": version}
    if title == TITLE:
        info = {"title": title, "description": DESCRIPTION, "version": version}
    return {"openapi": "3.0.1", "info": info, "paths": {**paths, **METRICS_PATH}}
