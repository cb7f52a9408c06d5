"""The metrics API and metric logs against a real server: TorchServe's names, counters that match."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ForegroundServer, make_echo_store


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples: dict, name: str, **labels: str) -> float:
    # prometheus-client's parser names counter samples <family>_total; TorchServe's text has no suffix.
    names = {name, f"{name}_total"}
    matches = [v for (n, ls), v in all_samples.items() if n in names and set(labels.items()) <= set(ls)]
    assert matches, f"no sample {name} {labels}"
    return sum(matches)


def test_prometheus_metrics_count_what_was_served(tmp_path: Path, client: httpx.Client) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_echo_store(store)
    server = ForegroundServer(
        tmp_path,
        ["--model-store", "store", "--models", "echo.mar", "--ncs"],
        config={"metrics_mode": "prometheus", "model_metrics_auto_detect": "true"},
    )
    try:
        metrics_url = f"{server.urls['metrics']}/metrics"
        for i in range(5):
            assert client.post(f"{server.inference}/predictions/echo", content=f"{i}".encode()).status_code == 200
        for _ in range(2):
            assert client.post(f"{server.inference}/predictions/missing", content=b"x").status_code == 404
        assert client.post(f"{server.inference}/predictions/echo/1.0", content=b"v").status_code == 200

        r = client.get(metrics_url)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        got = samples(r.text)
        assert value(got, "ts_inference_requests_total", model_name="echo", model_version="default") == 5
        assert value(got, "ts_inference_requests_total", model_name="echo", model_version="1.0") == 1
        assert value(got, "Requests4XX", Level="Host") == 2
        assert value(got, "Requests2XX", Level="Host") >= 6
        assert value(got, "ts_inference_latency_microseconds", model_name="echo", model_version="default") > 0
        assert value(got, "PredictionTime", ModelName="echo", Level="Model") >= 0
        assert 'Requests2XX{Level="Host",Hostname="' in r.text  # TorchServe's label order
        # A metric the handler emits through context.metrics (auto-detected, as it is not declared).
        assert value(got, "EchoRequests", ModelName="echo") == 6

        only = client.get(metrics_url, params={"name[]": "ts_inference_requests_total"})
        assert only.text.startswith("# HELP ts_inference_requests_total ")
        assert {f.name for f in text_string_to_metric_families(only.text)} == {"ts_inference_requests"}
    finally:
        assert server.stop() == 0


def test_log_mode_writes_metric_logs(tmp_path: Path, client: httpx.Client) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_echo_store(store)
    server = ForegroundServer(tmp_path, ["--model-store", "store", "--models", "echo.mar", "--ncs"])
    try:
        assert client.post(f"{server.inference}/predictions/echo", content=b"x").status_code == 200
        r = client.get(f"{server.urls['metrics']}/metrics")
        assert (r.status_code, r.text) == (200, "")
    finally:
        assert server.stop() == 0
    logs = tmp_path / "logs"
    deadline = time.monotonic() + 10
    while "Requests2XX.Count:1.0|#Level:Host|#hostname:" not in (logs / "ts_metrics.log").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    model_metrics = (logs / "model_metrics.log").read_text()
    assert "PredictionTime.Milliseconds:" in model_metrics or "PredictionTime.ms:" in model_metrics
    assert "|#ModelName:echo,Level:Model|#hostname:" in model_metrics
    assert "[METRICS]" not in (logs / "model_log.log").read_text()
