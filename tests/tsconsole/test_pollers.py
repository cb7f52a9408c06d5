"""The console's I/O helpers without Textual: rates from counters, the polling loop, addresses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tsconsole.client import ApiError, Endpoints, Listeners
from tsconsole.connection import is_auth_error, is_local, local_config, with_token
from tsconsole.pollers import (
    LATENCY_BUCKET,
    ModelVersion,
    Poller,
    RateTracker,
    SystemSnapshot,
    bucket_increase,
    histogram_quantile,
    model_version,
)


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


INF = float("inf")


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = {0.01: 0, 0.025: 50, 0.05: 90, 0.1: 100, INF: 100}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.025)  # rank 50: the top of (0.01, 0.025]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.095)  # rank 99: 9 of the 10 in (0.05, 0.1]
    assert histogram_quantile(0.3, buckets) == pytest.approx(0.019)  # rank 30: 30 of the 50 in (0.01, 0.025]
    assert histogram_quantile(0.5, {0.1: 4, INF: 4}) == pytest.approx(0.05)  # the lowest bucket starts at 0
    assert histogram_quantile(0.5, {0.005: 10, 0.01: 30, INF: 40}) == pytest.approx(0.0075)


def test_histogram_quantile_in_the_inf_bucket_gives_the_highest_finite_bound() -> None:
    buckets = {0.005: 10, 0.01: 30, INF: 40}  # 10 observations above 10 ms
    assert histogram_quantile(0.99, buckets) == 0.01
    assert histogram_quantile(0.5, {1.0: 0, 60.0: 0, INF: 3}) == 60.0  # all of them above the last bound


def test_histogram_quantile_without_observations_is_none() -> None:
    assert histogram_quantile(0.5, {0.01: 0, 0.1: 0, INF: 0}) is None  # no request in the interval
    assert histogram_quantile(0.5, {}) is None
    assert histogram_quantile(0.5, {INF: 5}) is None  # one bucket: nothing to interpolate
    assert histogram_quantile(0.5, {0.01: 3, 0.1: 5}) is None  # no +Inf bucket: not a histogram
    assert histogram_quantile(0.5, {0.1: 5, 0.2: 3, INF: 5}) == pytest.approx(0.05)  # made monotonic
    with pytest.raises(ValueError):
        histogram_quantile(1.5, {0.1: 1, INF: 1})


def test_bucket_increase_handles_new_buckets_and_resets() -> None:
    assert bucket_increase({0.1: 5, INF: 7}, {0.1: 2, INF: 3}) == {0.1: 3, INF: 4}
    assert bucket_increase({0.1: 5, INF: 7}, None) == {0.1: 5, INF: 7}
    assert bucket_increase({0.1: 1, INF: 2}, {0.1: 2, INF: 9}) == {0.1: 1, INF: 2}  # the server restarted


def histogram(labels: dict[str, str], cumulative: dict[float, float]) -> list[tuple[dict[str, str], float]]:
    """``_bucket`` samples as the client gets them (``le`` as the server writes it)."""
    return [(labels | {"le": "+Inf" if le == INF else repr(le)}, count) for le, count in cumulative.items()]


def test_percentiles_come_from_the_bucket_increase_between_two_polls() -> None:
    now = [100.0]
    tracker = RateTracker(clock=lambda: now[0])
    models = [version("m", "1.0"), version("m", "2.0", default=False)]
    by_default = {"model_name": "m", "model_version": "default", "hostname": "h"}
    explicit = {"model_name": "m", "model_version": "1.0", "hostname": "h"}
    other = {"model_name": "m", "model_version": "2.0", "hostname": "h"}

    def page(default: dict, named: dict, second: dict) -> dict:
        return {
            "ts_inference_requests": [(by_default, max(default.values())), (other, max(second.values()))],
            LATENCY_BUCKET: histogram(by_default, default) + histogram(explicit, named) + histogram(other, second),
        }

    first = tracker.apply(models, page({0.01: 5, 0.1: 8, INF: 10}, {0.01: 0, 0.1: 0, INF: 0}, {0.01: 1, INF: 1}))
    assert tracker.latency_histogram
    assert first[0].p50_ms is None and first[0].p99_ms is None  # one sample: no interval yet
    now[0] += 2
    # in the interval: 100 answers of 1.0 (half by "default", half by "1.0"), none of 2.0
    second = tracker.apply(models, page({0.01: 45, 0.1: 58, INF: 60}, {0.01: 40, 0.1: 50, INF: 50}, {0.01: 1, INF: 1}))
    # increase: 80 in (0, 10 ms], 20 in (10, 100 ms], none above
    assert second[0].p50_ms == pytest.approx(6.25)  # rank 50 of the 80 in the first bucket
    assert second[0].p99_ms == pytest.approx(10 + 90 * 19 / 20)  # rank 99: 19 of the 20 in the second
    assert second[1].p50_ms is None and second[1].p99_ms is None  # no new request: "–"
    now[0] += 2
    third = tracker.apply(models, page({0.01: 45, 0.1: 58, INF: 62}, {0.01: 40, 0.1: 50, INF: 50}, {0.01: 1, INF: 1}))
    assert third[0].p50_ms == third[0].p99_ms == 100.0  # both slow answers above the last finite bound


def test_without_the_histogram_the_average_stays_and_no_percentile_is_invented() -> None:
    now = [0.0]
    tracker = RateTracker(clock=lambda: now[0])
    models = [version()]
    labels = {"model_name": "m", "model_version": "1.0"}
    for count, latency in ((1, 1000.0), (3, 5000.0)):  # a real TorchServe: sums only
        now[0] += 1
        out = tracker.apply(
            models,
            {"ts_inference_requests": [(labels, count)], "ts_inference_latency_microseconds": [(labels, latency)]},
        )
    assert not tracker.latency_histogram
    assert out[0].latency_ms == pytest.approx(2.0) and out[0].p50_ms is None and out[0].p99_ms is None
    # once a tsconsole server showed its histogram, an idle page (no family yet after a restart) keeps it
    tracker.apply(models, {LATENCY_BUCKET: histogram(labels, {0.1: 1, INF: 1})})
    tracker.apply(models, {"ts_inference_requests": [(labels, 0)]})
    assert tracker.latency_histogram
    tracker.apply(models, None)  # log mode / metrics API gone
    assert not tracker.latency_histogram


def test_percentiles_from_a_real_metrics_page() -> None:
    """ServerMetrics renders, prometheus-client parses as `Client.metrics` does, RateTracker computes."""
    import tempfile

    from prometheus_client.parser import text_string_to_metric_families

    from server.config import load_settings
    from server.telemetry.metrics import ServerMetrics

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.properties").write_text("metrics_mode=prometheus\ndisable_system_metrics=true\n")
        server = ServerMetrics(load_settings(env={"CUDA_VISIBLE_DEVICES": ""}, cwd=Path(tmp)), hostname="h")

    def page() -> dict:
        out: dict = {}
        for family in text_string_to_metric_families(server.render().decode()):
            for sample in family.samples:
                name = sample.name.removesuffix("_total") if family.type == "counter" else sample.name
                out.setdefault(name, []).append((dict(sample.labels), sample.value))
        return out

    now = [0.0]
    tracker = RateTracker(clock=lambda: now[0])
    models = [version("m", "1.0")]
    server.inference("m", "default", 1_000.0, 0.0)
    tracker.apply(models, page())
    for latency_ms in [3] * 60 + [7] * 39 + [40]:  # 60 in (2.5, 5], 39 in (5, 10], 1 in (25, 50]
        server.inference_request("m", "default")
        server.inference("m", "default", latency_ms * 1000.0, 0.0)
    now[0] += 1
    [row] = tracker.apply(models, page())
    assert row.requests_per_s == pytest.approx(100.0)
    assert row.p50_ms == pytest.approx(2.5 + 2.5 * 50 / 60)
    assert row.p99_ms == pytest.approx(5 + 5 * 39 / 39)
    assert row.latency_ms == pytest.approx((180 + 273 + 40) / 100)


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
    assert snap.listeners is None  # a tsconsole server from before the listeners


def test_listeners_are_parsed_and_tolerated_when_absent_or_odd() -> None:
    listeners = {
        "inference": "http://127.0.0.1:8080",
        "management": "unix:/tmp/management.sock",
        "metrics": None,  # enable_metrics_api=false
        "grpc_inference": "127.0.0.1:7070",
        "grpc_management": "[::1]:7071",
        "kserve": "http://127.0.0.1:8085",  # a later server's listener: ignored
    }
    parsed = SystemSnapshot.parse({"listeners": listeners}).listeners
    assert parsed == Listeners("http://127.0.0.1:8080", "unix:/tmp/management.sock", "", "127.0.0.1:7070", "[::1]:7071")
    assert parsed is not None and parsed.grpc
    assert Listeners.parse(None) is None and Listeners.parse(["127.0.0.1:7070"]) is None
    only_rest = Listeners.parse({"inference": "http://127.0.0.1:8080", "grpc_inference": 7070})
    assert only_rest == Listeners(inference="http://127.0.0.1:8080") and not only_rest.grpc


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
