"""The pool with the real handler library (``server.handlers.service:HandlerService``, the default service).

One worker process that imports torch: a TorchServe-style function handler that imports ``ts.*`` through
the compatibility package, and streams with ``send_intermediate_predict_response``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from server.runtime.pool import ModelSpec, WorkerPool

from .conftest import make_request

HANDLER = """
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.torch_handler.base_handler import BaseHandler  # noqa: F401  (resolves through server.handlers.compat)


def handle(data, context):
    if data is None:
        return None
    texts = [bytes(row.get("body") or b"").decode() for row in data]
    if texts[0] == "stream":
        partial = ["partial"] * len(data)
        send_intermediate_predict_response(partial, context.request_ids, "Intermediate", 200, context)
    if texts[0] == "boom":
        raise ValueError("boom")
    return [f"hello {text}" for text in texts]
"""


@pytest.mark.asyncio
async def test_the_default_service_runs_a_torchserve_handler(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    pool = WorkerPool(ModelSpec("real", "1.0", str(tmp_path), "handler", response_timeout_s=60))
    try:
        await pool.scale(1)
        response = await pool.predict(make_request("r1", "world"))
        assert (response.request_id, response.status, response.body) == ("r1", 200, b"hello world")
        bodies = [r.body async for r in pool.predict_stream(make_request("r2", "stream"))]
        assert bodies == [b"partial", b"hello stream"]
        from server.errors import WorkerError

        with pytest.raises(WorkerError) as info:
            await pool.predict(make_request("r3", "boom"))
        assert (info.value.status, info.value.message) == (503, "Prediction failed")
    finally:
        await pool.close()
