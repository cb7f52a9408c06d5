"""The pool's metrics: what it reports, and worker ``[METRICS]`` lines diverted from MODEL_LOG to the metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from server.config import load_settings
from server.errors import ServiceUnavailable
from server.runtime.pool import ModelSpec, WorkerPool
from server.telemetry.metrics import ServerMetrics

from .conftest import make_request

METRIC_LINE = "[METRICS]Custom.Count:1|#ModelName:m,Level:Model|#type:COUNTER|#hostname:w,1717105563,r1"


class SpyMetrics:
    """Stands in for ServerMetrics: records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args in self.calls if called == name]


async def eventually(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def model_log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "MODEL_LOG"]


@pytest.mark.asyncio
async def test_the_pool_reports_its_metrics_and_diverts_metric_lines(make_pool, caplog) -> None:
    caplog.set_level(logging.INFO)
    spy = SpyMetrics()
    pool: WorkerPool = make_pool(pool_kwargs={"metrics": spy}, batch_size=4, max_batch_delay_ms=50)
    await pool.scale(1)
    [worker] = pool.workers()
    [(name, load_ms)] = spy.of("worker_loaded")
    assert name == f"W-{worker.id}-m_1.0" and load_ms >= 0

    await asyncio.gather(
        pool.predict(make_request("a", f"print:{METRIC_LINE}")),
        pool.predict(make_request("b", "x"), url_version="1.0"),
    )
    # print: writes the line to stdout and stderr; TorchServe reads metric lines on both streams.
    await eventually(lambda: len(spy.of("backend_line")) == 2)
    assert spy.of("backend_line") == [(METRIC_LINE,), (METRIC_LINE,)]
    assert not any("[METRICS]" in line for line in model_log_lines(caplog))
    assert "Torch worker started." in model_log_lines(caplog)

    assert spy.of("inference_request") == [("m", "default"), ("m", "1.0")]
    inferences = spy.of("inference")
    assert sorted(args[:2] for args in inferences) == [("m", "1.0"), ("m", "default")]
    for _, _, latency_us, queue_us in inferences:
        assert 0 <= queue_us <= latency_us < 10_000_000
    assert len(spy.of("queue_time")) == 2
    assert 1 <= len(spy.of("worker_thread_time")) <= 2  # one per batch
    assert all(ms >= 0 for (ms,) in spy.of("queue_time") + spy.of("worker_thread_time"))


@pytest.mark.asyncio
async def test_failed_and_rejected_requests_are_counted_but_not_timed(make_pool) -> None:
    spy = SpyMetrics()
    pool: WorkerPool = make_pool(pool_kwargs={"metrics": spy})
    with pytest.raises(ServiceUnavailable):  # no worker yet: counted, as TorchServe counts before queueing
        await pool.predict(make_request("r0", "x"))
    await pool.scale(1)
    from server.errors import WorkerError

    with pytest.raises(WorkerError):
        await pool.predict(make_request("r1", "fail:507:no memory"))
    assert spy.of("inference_request") == [("m", "default"), ("m", "default")]
    assert spy.of("inference") == [] and spy.of("queue_time") == []


@pytest.mark.asyncio
async def test_without_metrics_the_lines_stay_in_model_log(make_pool, caplog) -> None:
    caplog.set_level(logging.INFO)
    pool: WorkerPool = make_pool()
    await pool.scale(1)
    await pool.predict(make_request("a", f"print:{METRIC_LINE}"))
    await eventually(lambda: model_log_lines(caplog).count(METRIC_LINE) == 2)


HANDLER = """
from ts.torch_handler.base_handler import BaseHandler


class Tiny(BaseHandler):
    def initialize(self, context):
        self.initialized = True
        context.metrics.add_counter("LoadCount", 1, None)

    def preprocess(self, data):
        return [bytes(row.get("body") or b"").decode() for row in data]

    def inference(self, data, *args, **kwargs):
        self.context.metrics.add_counter("ItemsSeen", len(data), None)
        return [text.upper() for text in data]

    def postprocess(self, data):
        return data
"""


@pytest.mark.asyncio
async def test_handler_metrics_reach_prometheus_through_a_real_worker(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "tiny.py").write_text(HANDLER)
    (tmp_path / "config.properties").write_text(
        "metrics_mode=prometheus\nmodel_metrics_auto_detect=true\ndisable_system_metrics=true\n"
    )
    metrics = ServerMetrics(load_settings(env={"CUDA_VISIBLE_DEVICES": ""}, cwd=tmp_path), hostname="front")
    seen: list[str] = []
    batches: list[float] = []
    record_line, record_batch = metrics.backend_line, metrics.worker_thread_time
    metrics.backend_line = lambda line: seen.append(line) or record_line(line)  # type: ignore[method-assign]
    metrics.worker_thread_time = lambda ms: batches.append(ms) or record_batch(ms)  # type: ignore[method-assign]
    spec = ModelSpec("tiny", "2.0", str(model_dir), "tiny", batch_size=2, max_batch_delay_ms=20)
    pool = WorkerPool(spec, metrics=metrics)
    try:
        await pool.scale(1)
        [worker] = pool.workers()
        responses = await asyncio.gather(*(pool.predict(make_request(f"r{i}", f"x{i}")) for i in range(4)))
        assert [r.body for r in responses] == [b"X0", b"X1", b"X2", b"X3"]
        await pool.predict(make_request("r9", "y"), url_version="2.0")

        def text() -> str:
            return metrics.render().decode()

        await eventually(lambda: 'ItemsSeen{ModelName="tiny",Level="Model"' in text() and "PredictionTime{" in text())
        body = text()
        assert 'HandlerTime{ModelName="tiny",Level="Model",Hostname="' in body
        assert 'PredictionTime{ModelName="tiny",Level="Model",Hostname="' in body
        assert 'LoadCount{ModelName="tiny",Level="Model",Hostname="' in body
        await eventually(lambda: re.search(r'^ItemsSeen\{ModelName="tiny",[^}]*\} 5\.0$', text(), re.M) is not None)
        assert 'ts_inference_requests_total{model_name="tiny",model_version="default",hostname="front",} 4.0' in body
        assert 'ts_inference_requests_total{model_name="tiny",model_version="2.0",hostname="front",} 1.0' in body
        assert 'ts_queue_latency_microseconds{model_name="tiny",model_version="default",hostname="front",}' in body
        assert f'WorkerLoadTime{{WorkerName="W-{worker.id}-tiny_2.0",Level="Host",Hostname="front",}}' in body
        assert 'WorkerThreadTime{Level="Host",Hostname="front",}' in body
        assert 'QueueTime{Level="Host",Hostname="front",}' in body
        assert not any("[METRICS]" in line for line in model_log_lines(caplog))

        def count(name: str) -> int:
            return sum(1 for line in seen if line.startswith(f"[METRICS]{name}.Milliseconds:"))

        await eventually(lambda: count("PredictionTime") == len(batches))
        assert count("HandlerTime") == len(batches) >= 3  # both come out for every batch
    finally:
        await pool.close()
