"""The metrics listener over real HTTP (aiohttp's test server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from server.api.metrics import metrics_app
from server.config import load_settings
from server.telemetry.metrics import ServerMetrics


def make_metrics(tmp_path: Path, mode: str) -> ServerMetrics:
    (tmp_path / "config.properties").write_text(f"metrics_mode={mode}\ndisable_system_metrics=true\n")
    return ServerMetrics(load_settings(env={"CUDA_VISIBLE_DEVICES": ""}, cwd=tmp_path), hostname="h")


@pytest_asyncio.fixture
async def client_for(tmp_path: Path) -> AsyncIterator[Callable]:
    clients: list[TestClient] = []

    async def make(mode: str = "prometheus") -> tuple[TestClient, ServerMetrics]:
        metrics = make_metrics(tmp_path, mode)
        client = TestClient(TestServer(metrics_app(metrics, 6553500)))
        await client.start_server()
        clients.append(client)
        return client, metrics

    yield make
    for client in clients:
        await client.close()


@pytest.mark.asyncio
async def test_metrics_in_prometheus_text(client_for) -> None:
    client, metrics = await client_for()
    metrics.http_response(200)
    metrics.inference_request("m", "default")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["x-request-id"]
    text = await response.text()
    assert 'Requests2XX{Level="Host",Hostname="h",} 1.0\n' in text
    assert 'ts_inference_requests_total{model_name="m",model_version="default",hostname="h",} 1.0\n' in text
    assert len(list(text_string_to_metric_families(text))) == 21


@pytest.mark.asyncio
async def test_any_method_and_any_path_below_metrics(client_for) -> None:
    client, _ = await client_for()
    for method, path in (("POST", "/metrics"), ("PUT", "/metrics/anything/else"), ("DELETE", "/metrics/")):
        response = await client.request(method, path)
        assert response.status == 200, (method, path)
        assert "# TYPE Requests2XX counter" in await response.text()


@pytest.mark.asyncio
async def test_repeated_name_parameters_filter_families(client_for) -> None:
    client, metrics = await client_for()
    metrics.queue_time(4)
    response = await client.get("/metrics?name[]=QueueTime&name[]=Requests4XX&name[]=nope")
    text = await response.text()
    assert [f.name for f in text_string_to_metric_families(text)] == ["Requests4XX", "QueueTime"]
    assert 'QueueTime{Level="Host",Hostname="h",} 4.0\n' in text
    response = await client.get("/metrics", params=[("name[]", "ts_queue_latency_microseconds")])
    assert (await response.text()).startswith("# HELP ts_queue_latency_microseconds ")


@pytest.mark.asyncio
@pytest.mark.parametrize(("mode", "expected"), [("log", []), ("legacy", ["ts_inference_requests"])])
async def test_what_the_other_modes_expose(client_for, mode: str, expected: list[str]) -> None:
    client, metrics = await client_for(mode)
    metrics.http_response(200)
    metrics.inference_request("m", "default")
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    names = [f.name for f in text_string_to_metric_families(text)]
    assert names[: len(expected)] == expected
    if mode == "log":
        assert text == ""
    else:
        assert "Requests2XX" not in text and len(names) == 3


@pytest.mark.asyncio
async def test_api_description_and_errors(client_for) -> None:
    client, _ = await client_for()
    for method, path in (("OPTIONS", "/"), ("GET", "/api-description")):
        response = await client.request(method, path)
        assert response.status == 200
        doc = await response.json()
        assert doc["openapi"] == "3.0.1"
        assert list(doc["paths"]) == ["/metrics"]
        operation = doc["paths"]["/metrics"]["get"]
        assert operation["operationId"] == "metrics"
        assert operation["parameters"][0]["name"] == "name[]"
        assert "text/plain; version=0.0.4; charset=utf-8" in operation["responses"]["200"]["content"]

    response = await client.get("/")
    assert response.status == 405
    assert (await response.json())["type"] == "MethodNotAllowedException"
    for path in ("/predictions/m", "/metricsx", "/ping"):
        response = await client.get(path)
        assert response.status == 404, path
        assert await response.json() == {
            "code": 404,
            "type": "ResourceNotFoundException",
            "message": "Requested resource is not found, please refer to API document.",
        }
        assert response.headers["Connection"] == "close"
