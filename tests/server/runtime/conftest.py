from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from server.runtime.messages import InputItem, Request
from server.runtime.pool import ModelSpec, WorkerPool

SERVICE = "tests.server.runtime.services:EchoService"


def make_request(request_id: str, data: str | bytes = b"") -> Request:
    value = data.encode() if isinstance(data, str) else data
    return Request(request_id, [("x-test", request_id)], [InputItem("body", "", value)])


@pytest_asyncio.fixture
async def make_pool(tmp_path: Path) -> AsyncIterator[Callable[..., WorkerPool]]:
    """``make_pool(pool_kwargs=..., **spec_fields)``: a WorkerPool running the echo service, closed after."""
    pools: list[WorkerPool] = []
    model_dir = tmp_path / "model"
    model_dir.mkdir()

    def make(pool_kwargs: dict[str, Any] | None = None, **fields: Any) -> WorkerPool:
        spec = ModelSpec(model_name="m", model_version="1.0", model_dir=str(model_dir), handler="echo")
        spec = dataclasses.replace(spec, **fields)
        pool = WorkerPool(spec, service=SERVICE, **(pool_kwargs or {}))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close(timeout=10)
