"""The console's I/O helpers without Textual: rates from counters, the polling loop, addresses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tsconsole.client import ApiError, Endpoints
from tsconsole.connection import is_auth_error, is_local, local_config, with_token
from tsconsole.pollers import ModelVersion, Poller, RateTracker, SystemSnapshot, model_version


def version(name: str = "m", v: str = "1.0", default: bool = True) -> ModelVersion:
    entry = {"modelName": name, "modelVersion": v, "minWorkers": 1, "maxWorkers": 1, "batchSize": 1, "workers": []}
    return model_version(entry, v if default else None)


def test_rates_come_from_counter_deltas_and_default_labels() -> None:
    now = [100.0]
    tracker = RateTracker(clock=lambda: now[0])
    models = [version("m", "1.0"), version("m", "2.0", default=False)]

    def samples(count: float, latency_us: float, explicit: float) -> dict:
        labels = {"model_name": "m", "model_version": "default"}
        return {
            "ts_inference_requests": [(labels, count), ({"model_name": "m", "model_version": "2.0"}, explicit)],
            "ts_inference_latency_microseconds": [(labels, latency_us)],
        }

    first = tracker.apply(models, samples(10, 50_000, 0))
    assert first[0].requests_per_s is None  # one sample: no rate yet
    now[0] += 2
    second = tracker.apply(models, samples(14, 90_000, 6))
    assert second[0].requests_per_s == pytest.approx(2.0)  # "default" counts for the default version
    assert second[0].latency_ms == pytest.approx(10.0)  # 40 ms over 4 requests
    assert second[1].requests_per_s == pytest.approx(3.0)
    assert second[1].latency_ms is None  # no latency sample: nothing invented
    now[0] += 2
    idle = tracker.apply(models, samples(14, 90_000, 6))
    assert idle[0].requests_per_s == 0.0 and idle[0].latency_ms is None
    assert tracker.apply(models, None)[0].requests_per_s is None  # not in prometheus mode


def test_status_of_a_model_version() -> None:
    entry = {"modelName": "m", "modelVersion": "1", "minWorkers": 1, "workers": [{"status": "READY"}]}
    assert model_version(entry, "1").status == "READY"
    assert model_version(entry | {"minWorkers": 2}, "1").status == "SCALING"
    assert model_version(entry | {"workers": []}, "1").status == "LOADING"
    assert model_version(entry | {"minWorkers": 0, "workers": []}, "1").status == "NO WORKERS"
    assert model_version(entry | {"workers": [{"status": "READY"}, {"status": "UNLOADING"}]}, "1").status == "DEGRADED"


def test_system_snapshot_parses_and_tolerates_missing_fields() -> None:
    snap = SystemSnapshot.parse({"host": {"cpuPercent": 3}, "gpuStatus": "NVML is not available", "workers": None})
    assert snap.supported and snap.gpus == () and snap.workers == () and snap.gpu_status == "NVML is not available"


@pytest.mark.asyncio
async def test_poller_never_overlaps_pauses_and_pokes() -> None:
    running = 0
    most = 0
    results: list[int] = []

    async def fetch() -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1
        return len(results)

    poller = Poller("t", 0.01, fetch, results.append, lambda exc: None)
    task = asyncio.create_task(poller.run())
    for _ in range(5):
        poller.poke()  # pokes while a fetch runs do not start a second one
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert most == 1 and len(results) >= 3
    poller.paused = True
    await asyncio.sleep(0.05)
    count = len(results)
    await asyncio.sleep(0.1)
    assert len(results) == count  # paused: no more fetches
    poller.poke()
    await asyncio.sleep(0.05)
    assert len(results) == count + 1  # refresh now, once
    task.cancel()


@pytest.mark.asyncio
async def test_poller_reports_errors_and_goes_on() -> None:
    errors: list[Exception] = []
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ApiError(500, "boom")
        return calls

    results: list[int] = []
    poller = Poller("t", 0.01, fetch, results.append, errors.append)
    task = asyncio.create_task(poller.run())
    await asyncio.sleep(0.1)
    task.cancel()
    assert isinstance(errors[0], ApiError) and results


def test_addresses_and_tokens(tmp_path: Path) -> None:
    assert is_local("http://127.0.0.1:8081") and is_local("http://localhost:1") and is_local("unix:/tmp/s")
    assert not is_local("http://10.1.2.3:8081")
    assert is_auth_error(ApiError(400, "Token Authorization failed", "InvalidKeyException"))
    assert is_auth_error(ApiError(401, "no"))
    assert not is_auth_error(ApiError(400, "bad", "BadRequestException"))
    key_file = tmp_path / "key_file.json"
    key_file.write_text('{"management": {"key": "M"}, "inference": {"key": "I"}}')
    local = with_token(Endpoints(), key_file)
    assert (local.token, local.inference_token) == ("M", "I")
    remote = with_token(Endpoints("http://10.0.0.1:1", "http://10.0.0.1:2", "http://10.0.0.1:3"), key_file)
    assert remote.token is None  # the key file describes a local server only


def test_a_started_server_listens_on_loopback_only(tmp_path: Path) -> None:
    base = tmp_path / "config.properties"
    base.write_text("inference_address=http://0.0.0.0:8080\nmetrics_mode=prometheus\n")
    text = local_config(Endpoints("http://localhost:9080", "http://localhost:9081", "http://localhost:9082"), base)
    assert "metrics_mode=prometheus" in text and "0.0.0.0" not in text
    assert "inference_address=http://127.0.0.1:9080" in text
    assert "management_address=http://127.0.0.1:9081" in text
    assert text.count("metrics_mode=") == 1  # the user's choice is kept


def test_a_started_server_has_prometheus_metrics_unless_configured(tmp_path: Path) -> None:
    base = tmp_path / "config.properties"
    base.write_text("metrics_mode=log\n")
    endpoints = Endpoints("http://localhost:9080", "http://localhost:9081", "http://localhost:9082")
    assert "metrics_mode=prometheus" in local_config(endpoints, None)
    assert "metrics_mode=prometheus" not in local_config(endpoints, base)


def test_the_io_layer_imports_nothing_from_textual() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tsconsole.client, tsconsole.connection, tsconsole.pollers, tsconsole.formatting, tsconsole.cli;"
        "sys.exit('textual' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
