"""ServerMetrics: TorchServe's metric names, labels, modes, line formats, metrics.yaml and auto-detection."""

from __future__ import annotations

import logging
import re
import socket
import textwrap
from pathlib import Path

import pytest

from server.handlers.metrics import MetricRecord, MetricTypes
from server.telemetry.logs import MODEL_METRICS, TS_METRICS
from server.telemetry.metrics import (
    CONTENT_TYPE_004,
    LATENCY_BUCKETS,
    LATENCY_HISTOGRAM,
    MetricMode,
    MetricsConfig,
    java_double,
    parse_metric_line,
)

from .conftest import HOST, families, value

DEFAULT_FAMILIES = [
    "Requests2XX", "Requests4XX", "Requests5XX", "ts_inference_requests_total",
    "ts_inference_latency_microseconds", "ts_queue_latency_microseconds", "QueueTime", "WorkerThreadTime",
    "WorkerLoadTime", "CPUUtilization", "MemoryUsed", "MemoryAvailable", "MemoryUtilization", "DiskUsage",
    "DiskUtilization", "DiskAvailable", "GPUMemoryUtilization", "GPUMemoryUsed", "GPUUtilization",
    "HandlerTime", "PredictionTime",
]  # fmt: skip
HANDLER_TIME_LINE = (
    "[METRICS]HandlerTime.Milliseconds:82.93|#ModelName:resnet-18,Level:Model|#type:GAUGE"
    "|#hostname:worker-host,1717105563,6d1726a7-172c-4010-b671-01d71bacc451"
)
TS_LINE = re.compile(r"^(?P<head>.*),timestamp:(?P<ts>\d+)$")


def lines_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    """The logged lines of ``logger`` with the epoch timestamp replaced by ``<ts>``."""
    out = []
    for record in caplog.records:
        if record.name == logger:
            match = TS_LINE.match(record.getMessage())
            assert match, record.getMessage()
            out.append(match.group("head") + ",timestamp:<ts>")
    return out


# -- Prometheus mode ---------------------------------------------------------------------------------


def test_the_default_set_is_exposed_with_torchserve_names_types_and_help(make_metrics) -> None:
    metrics = make_metrics(metrics_mode="prometheus")
    assert metrics.mode is MetricMode.PROMETHEUS
    assert metrics.prometheus_names == DEFAULT_FAMILIES
    text = metrics.render().decode()
    # Registered but never updated: HELP and TYPE only, exactly TorchServe's names (no _total, no _created).
    assert text.startswith(
        "# HELP Requests2XX Torchserve prometheus counter metric with unit: Count\n"
        "# TYPE Requests2XX counter\n"
        "# HELP Requests4XX Torchserve prometheus counter metric with unit: Count\n"
    )
    assert "# HELP QueueTime Torchserve prometheus gauge metric with unit: Milliseconds\n" in text
    assert "# HELP HandlerTime Torchserve prometheus gauge metric with unit: ms\n" in text
    assert "_created" not in text and "Requests2XX_total" not in text
    parsed = families(metrics)
    assert parsed["Requests2XX"].type == "counter"
    assert parsed["ts_inference_requests"].type == "counter"  # the parser's name for ..._total
    assert parsed["WorkerLoadTime"].type == "gauge"
    assert CONTENT_TYPE_004 == "text/plain; version=0.0.4; charset=utf-8"


def test_frontend_counters_and_gauges_move(make_metrics) -> None:
    metrics = make_metrics(metrics_mode="prometheus")
    for status in (200, 201, 299, 404, 400, 500, 302, 503):
        metrics.http_response(status)
    metrics.inference_request("resnet", "default")
    metrics.inference_request("resnet", "default")
    metrics.inference_request("resnet", "2.0")
    metrics.inference("resnet", "default", 1500.5, 250.0)
    metrics.inference("resnet", "default", 12_000_000.0, 750.0)
    metrics.queue_time(7)
    metrics.queue_time(3)
    metrics.worker_thread_time(1)
    metrics.worker_loaded("W-9000-resnet_1.0", 1234)

    text = metrics.render().decode()
    assert 'Requests2XX{Level="Host",Hostname="test-host",} 3.0\n' in text
    assert 'Requests4XX{Level="Host",Hostname="test-host",} 2.0\n' in text
    assert 'Requests5XX{Level="Host",Hostname="test-host",} 3.0\n' in text  # 3xx counts as 5XX, as in TorchServe
    assert (
        'ts_inference_requests_total{model_name="resnet",model_version="default",hostname="test-host",} 2.0\n'
    ) in text
    assert 'ts_inference_requests_total{model_name="resnet",model_version="2.0",hostname="test-host",} 1.0\n' in text
    assert (
        'ts_inference_latency_microseconds{model_name="resnet",model_version="default",hostname="test-host",}'
        " 1.20015005E7\n"
    ) in text
    assert 'QueueTime{Level="Host",Hostname="test-host",} 3.0\n' in text  # a gauge: the last value
    assert 'WorkerLoadTime{WorkerName="W-9000-resnet_1.0",Level="Host",Hostname="test-host",} 1234.0\n' in text

    labels = {"model_name": "resnet", "model_version": "default", "hostname": HOST}
    assert value(metrics, "ts_inference_requests_total", **labels) == 2
    assert value(metrics, "ts_queue_latency_microseconds_total", **labels) == 1000
    assert value(metrics, "Requests2XX_total", Level="Host", Hostname=HOST) == 3
    assert value(metrics, "WorkerThreadTime", Level="Host", Hostname=HOST) == 1


def test_name_filter_selects_families(make_metrics) -> None:
    metrics = make_metrics(metrics_mode="prometheus")
    metrics.http_response(200)
    metrics.queue_time(5)
    assert list(families(metrics, ["Requests2XX", "QueueTime"])) == ["Requests2XX", "QueueTime"]
    assert list(families(metrics, ["ts_inference_requests_total"])) == ["ts_inference_requests"]
    assert metrics.render(["NoSuchMetric"]) == b""
    assert len(families(metrics, [])) == len(DEFAULT_FAMILIES)  # an empty filter is no filter


def test_histograms_have_the_java_client_buckets(tmp_path: Path, make_metrics) -> None:
    config = tmp_path / "metrics.yaml"
    config.write_text(
        textwrap.dedent("""\
        model_metrics:
          histogram:
            - name: LatencyHist
              unit: ms
              dimensions: [ModelName]
        """)
    )
    metrics = make_metrics(metrics_mode="prometheus", metrics_config=config)
    for observed in (0.3, 4.0, 20.0):
        metrics.backend_line(f"[METRICS]LatencyHist.ms:{observed}|#ModelName:m|#type:HISTOGRAM|#hostname:w,1,r")
    text = metrics.render().decode()
    assert "# TYPE LatencyHist histogram\n" in text
    assert 'LatencyHist_bucket{ModelName="m",Hostname="w",le="0.5",} 1.0\n' in text
    assert 'LatencyHist_bucket{ModelName="m",Hostname="w",le="5.0",} 2.0\n' in text
    assert 'LatencyHist_bucket{ModelName="m",Hostname="w",le="+Inf",} 3.0\n' in text
    assert 'LatencyHist_count{ModelName="m",Hostname="w",} 3.0\n' in text
    assert 'LatencyHist_sum{ModelName="m",Hostname="w",} 24.3\n' in text
    assert list(families(metrics, ["LatencyHist_bucket"])) == ["LatencyHist"]
    hist = families(metrics)["LatencyHist"]
    assert hist.type == "histogram" and len(hist.samples) == 17


# -- tsconsole's latency histogram ---------------------------------------------------------------------

LATENCY_LES = ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0",
               "10.0", "30.0", "60.0", "+Inf"]  # fmt: skip


def test_tsconsoles_latency_histogram_in_prometheus_mode(make_metrics) -> None:
    metrics = make_metrics(metrics_mode="prometheus")
    assert LATENCY_HISTOGRAM == "tsconsole_inference_latency_seconds" and len(LATENCY_BUCKETS) == 15
    assert LATENCY_HISTOGRAM not in metrics.render().decode()  # no answer yet: TorchServe's page exactly
    metrics.inference_request("resnet", "default")
    metrics.inference("resnet", "default", 4_000.0, 10.0)  # 4 ms
    metrics.inference("resnet", "default", 30_000.0, 10.0)  # 30 ms
    metrics.inference("resnet", "default", 5_000.0, 10.0)  # 5 ms: a bound is inclusive (le)
    metrics.inference("resnet", "default", 90_000_000.0, 10.0)  # 90 s: above the last bound, +Inf only
    metrics.inference("resnet", "2.0", 250.0, 10.0)
    assert metrics.prometheus_names == DEFAULT_FAMILIES  # TorchServe's families are unchanged

    text = metrics.render().decode()
    labels = 'model_name="resnet",model_version="default",hostname="test-host",'
    head = (
        f"# HELP {LATENCY_HISTOGRAM} tsconsole addition, not a TorchServe metric: latency of each answered"
        f" inference request in seconds\n# TYPE {LATENCY_HISTOGRAM} histogram\n"
        f'{LATENCY_HISTOGRAM}_bucket{{{labels}le="0.001",}} 0.0\n'
        f'{LATENCY_HISTOGRAM}_bucket{{{labels}le="0.0025",}} 0.0\n'
        f'{LATENCY_HISTOGRAM}_bucket{{{labels}le="0.005",}} 2.0\n'
        f'{LATENCY_HISTOGRAM}_bucket{{{labels}le="0.01",}} 2.0\n'
        f'{LATENCY_HISTOGRAM}_bucket{{{labels}le="0.025",}} 2.0\n'
        f'{LATENCY_HISTOGRAM}_bucket{{{labels}le="0.05",}} 3.0\n'
    )
    assert head in text
    assert text.index(head) > text.index("# TYPE PredictionTime gauge")  # after TorchServe's families
    assert f'{LATENCY_HISTOGRAM}_bucket{{{labels}le="60.0",}} 3.0\n' in text
    assert f'{LATENCY_HISTOGRAM}_bucket{{{labels}le="+Inf",}} 4.0\n' in text
    assert f"{LATENCY_HISTOGRAM}_count{{{labels}}} 4.0\n" in text
    assert f"{LATENCY_HISTOGRAM}_sum{{{labels}}} 90.039\n" in text
    # the TorchServe families are as before
    assert f"ts_inference_latency_microseconds{{{labels}}} 9.0039E7\n" in text
    assert f"ts_inference_requests_total{{{labels}}} 1.0\n" in text

    # the round trip through prometheus-client's parser: one histogram family, every bucket, count and sum
    family = families(metrics)[LATENCY_HISTOGRAM]
    assert family.type == "histogram" and len(family.samples) == 2 * (len(LATENCY_LES) + 2)
    default = [s for s in family.samples if s.labels["model_version"] == "default"]
    assert [s.labels.get("le") for s in default if s.name.endswith("_bucket")] == LATENCY_LES
    assert {s.name for s in default} == {f"{LATENCY_HISTOGRAM}_{part}" for part in ("bucket", "count", "sum")}
    assert value(metrics, f"{LATENCY_HISTOGRAM}_bucket", model_name="resnet", model_version="2.0",
                 hostname=HOST, le="0.001") == 1  # fmt: skip
    assert value(metrics, f"{LATENCY_HISTOGRAM}_sum", model_name="resnet", model_version="default",
                 hostname=HOST) == pytest.approx(90.039)  # fmt: skip

    # name[]= selects it by any of its names, and only it
    for name in (LATENCY_HISTOGRAM, *(f"{LATENCY_HISTOGRAM}_{part}" for part in ("bucket", "count", "sum"))):
        assert list(families(metrics, [name])) == [LATENCY_HISTOGRAM]
    assert list(families(metrics, ["ts_inference_requests_total", LATENCY_HISTOGRAM])) == [
        "ts_inference_requests",
        LATENCY_HISTOGRAM,
    ]
    assert LATENCY_HISTOGRAM not in metrics.render(["ts_inference_latency_microseconds"]).decode()


@pytest.mark.parametrize("mode", ["log", "legacy"])
def test_no_latency_histogram_outside_prometheus_mode(make_metrics, caplog, mode: str) -> None:
    caplog.set_level(logging.INFO)
    metrics = make_metrics(metrics_mode=mode)
    metrics.inference("m", "1.0", 100.0, 20.0)
    assert LATENCY_HISTOGRAM not in metrics.render().decode()
    assert LATENCY_HISTOGRAM not in caplog.text
    if mode == "log":
        assert metrics.render() == b""
        assert lines_of(caplog, TS_METRICS) == [
            "ts_inference_latency_microseconds.Microseconds:100.0|#model_name:m,model_version:1.0"
            "|#hostname:test-host,timestamp:<ts>",
            "ts_queue_latency_microseconds.Microseconds:20.0|#model_name:m,model_version:1.0"
            "|#hostname:test-host,timestamp:<ts>",
        ]


def test_a_declared_metric_of_the_histograms_name_wins(tmp_path: Path, make_metrics, caplog) -> None:
    config = tmp_path / "metrics.yaml"
    config.write_text(f"ts_metrics:\n  counter:\n    - name: {LATENCY_HISTOGRAM}\n      unit: Count\n")
    metrics = make_metrics(metrics_mode="prometheus", metrics_config=config)
    metrics.inference("m", "1.0", 100.0, 20.0)
    assert "tsconsole's own family is not added" in caplog.text
    assert metrics.render().decode() == (
        f"# HELP {LATENCY_HISTOGRAM} Torchserve prometheus counter metric with unit: Count\n"
        f"# TYPE {LATENCY_HISTOGRAM} counter\n"
    )
    # a worker's metric of that name cannot take it either (auto-detection)
    metrics = make_metrics(metrics_mode="prometheus", model_metrics_auto_detect="true")
    metrics.backend_line(f"[METRICS]{LATENCY_HISTOGRAM}.s:1|#Level:Model|#type:GAUGE|#hostname:w,1,r")
    assert f"Cannot register the Prometheus metric {LATENCY_HISTOGRAM}" in caplog.text
    metrics.inference("m", "1.0", 100.0, 20.0)
    assert list(families(metrics, [LATENCY_HISTOGRAM])) == [LATENCY_HISTOGRAM]
    assert families(metrics, [LATENCY_HISTOGRAM])[LATENCY_HISTOGRAM].type == "histogram"


# -- modes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "mode"),
    [(None, MetricMode.LOG), ("log", MetricMode.LOG), (" Prometheus ", MetricMode.PROMETHEUS),
     ("LEGACY", MetricMode.LEGACY), ("statsd", MetricMode.LOG)],
)  # fmt: skip
def test_mode_parsing(configured: str | None, mode: MetricMode) -> None:
    assert MetricMode.parse(configured) is mode


def test_log_mode_writes_torchserve_lines_and_exposes_nothing(make_metrics, caplog) -> None:
    caplog.set_level(logging.INFO)
    metrics = make_metrics()  # metrics_mode defaults to log
    assert metrics.mode is MetricMode.LOG
    metrics.http_response(200)
    metrics.inference_request("m", "default")
    metrics.inference("m", "default", 1234.5, 10.0)
    metrics.queue_time(0)
    metrics.worker_loaded("W-9000-m_1.0", 1500)
    metrics.backend_line(HANDLER_TIME_LINE)
    metrics.backend_line("[METRICS]PredictionTime.Milliseconds:80.1|#ModelName:m,Level:Model|#type:GAUGE|#hostname:w,1")

    assert metrics.render() == b""
    assert lines_of(caplog, TS_METRICS) == [
        "Requests2XX.Count:1.0|#Level:Host|#hostname:test-host,timestamp:<ts>",
        "ts_inference_requests_total.Count:1.0|#model_name:m,model_version:default|#hostname:test-host,timestamp:<ts>",
        "ts_inference_latency_microseconds.Microseconds:1234.5|#model_name:m,model_version:default"
        "|#hostname:test-host,timestamp:<ts>",
        "ts_queue_latency_microseconds.Microseconds:10.0|#model_name:m,model_version:default"
        "|#hostname:test-host,timestamp:<ts>",
        "QueueTime.Milliseconds:0.0|#Level:Host|#hostname:test-host,timestamp:<ts>",
        "WorkerLoadTime.Milliseconds:1500.0|#WorkerName:W-9000-m_1.0,Level:Host|#hostname:test-host,timestamp:<ts>",
    ]
    # The unit is the declared one ("ms"), the host the worker's, then the request id(s) before the timestamp.
    assert lines_of(caplog, MODEL_METRICS) == [
        "HandlerTime.ms:82.93|#ModelName:resnet-18,Level:Model|#hostname:worker-host,"
        "requestID:6d1726a7-172c-4010-b671-01d71bacc451,timestamp:<ts>",
        "PredictionTime.ms:80.1|#ModelName:m,Level:Model|#hostname:w,requestID:null,timestamp:<ts>",
    ]
    stamp = int(TS_LINE.match(caplog.records[0].getMessage()).group("ts"))
    assert abs(stamp - int(caplog.records[0].created)) <= 1


def test_legacy_mode_keeps_only_the_three_counters_in_prometheus(make_metrics, caplog) -> None:
    caplog.set_level(logging.INFO)
    metrics = make_metrics(metrics_mode="legacy")
    metrics.http_response(200)
    metrics.inference_request("m", "1.0")
    metrics.inference("m", "1.0", 100.0, 20.0)
    metrics.queue_time(2)
    metrics.backend_line(HANDLER_TIME_LINE)
    assert list(families(metrics)) == [
        "ts_inference_requests",
        "ts_inference_latency_microseconds",
        "ts_queue_latency_microseconds",
    ]
    assert 'ts_inference_requests_total{model_name="m",model_version="1.0",hostname="test-host",} 1.0\n' in (
        metrics.render().decode()
    )
    assert lines_of(caplog, TS_METRICS) == [
        "Requests2XX.Count:1.0|#Level:Host|#hostname:test-host,timestamp:<ts>",
        "QueueTime.Milliseconds:2.0|#Level:Host|#hostname:test-host,timestamp:<ts>",
    ]
    assert len(lines_of(caplog, MODEL_METRICS)) == 1


# -- backend lines -------------------------------------------------------------------------------------


def test_a_worker_line_from_the_handler_library_becomes_handler_time(make_metrics) -> None:
    record = MetricRecord(
        name="HandlerTime",
        unit="Milliseconds",
        value=12.34,
        dimensions=(("ModelName", "m"), ("Level", "Model")),
        metric_type=MetricTypes.GAUGE,
        request_id="req-1",
        timestamp=1717105563,
    )
    line = record.log_line("worker-host")  # exactly what the worker prints
    parsed = parse_metric_line(line)
    assert parsed is not None
    assert (parsed.name, parsed.unit, parsed.value, parsed.kind) == ("HandlerTime", "Milliseconds", "12.34", "gauge")
    assert parsed.dimensions == (("ModelName", "m"), ("Level", "Model"))
    assert (parsed.hostname, parsed.timestamp, parsed.request_id) == ("worker-host", "1717105563", "req-1")

    metrics = make_metrics(metrics_mode="prometheus")
    assert metrics.backend_line(line)
    assert 'HandlerTime{ModelName="m",Level="Model",Hostname="worker-host",} 12.34\n' in metrics.render().decode()
    assert value(metrics, "HandlerTime", ModelName="m", Level="Model", Hostname="worker-host") == 12.34


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # ts.metrics.metric.Metric.__str__: no #type, no request id
        ("[METRICS]PredictionTime.Milliseconds:5|#ModelName:m,Level:Model|#hostname:h,1717105563",
         ("PredictionTime", None, None, (("ModelName", "m"), ("Level", "Model")))),
        # the C++ backend's prefix, request ids of a whole batch
        ("INFO > [METRICS]HandlerTime.ms:1.5|#ModelName:m,Level:Model|#type:GAUGE|#hostname:h,1,r1,r2",
         ("HandlerTime", "gauge", "r1,r2", (("ModelName", "m"), ("Level", "Model")))),
        # no prefix at all, no dimensions, a dimension that is not name:value is dropped
        ("MyCount.Count:1|#|#type:COUNTER|#hostname:h,1", ("MyCount", "counter", None, ())),
        ("[METRICS]X.ms:1e-05|#a:b,c:d:e|#type:HISTOGRAM|#hostname:h,1,r", ("X", "histogram", "r", (("a", "b"),))),
    ],
)  # fmt: skip
def test_backend_line_variants(line: str, expected: tuple) -> None:
    parsed = parse_metric_line(line)
    assert parsed is not None
    assert (parsed.name, parsed.kind, parsed.request_id, parsed.dimensions) == expected


def test_unparsable_and_mismatched_lines_are_logged_not_raised(make_metrics, caplog) -> None:
    metrics = make_metrics(metrics_mode="prometheus")
    assert not metrics.backend_line("[METRICS]Failed to update metric with name:X")
    assert "Failed to parse metrics line" in caplog.text
    # HandlerTime is declared with ModelName, Level (+ Hostname): a line with one dimension cannot update it.
    assert metrics.backend_line("[METRICS]HandlerTime.ms:1|#ModelName:m|#type:GAUGE|#hostname:h,1,r")
    assert "Failed to update backend metric HandlerTime" in caplog.text
    assert "HandlerTime{" not in metrics.render().decode()


# -- metrics.yaml and auto-detection --------------------------------------------------------------------


def test_the_builtin_set_is_torchserves_metrics_yaml() -> None:
    config = MetricsConfig.default()
    specs = {spec.name: spec for spec in config.ts_metrics + config.model_metrics}
    assert [s.name for s in config.ts_metrics] == DEFAULT_FAMILIES[:-2]
    assert specs["Requests2XX"].dimensions == ("Level", "Hostname")
    assert specs["ts_inference_latency_microseconds"].dimensions == ("model_name", "model_version", "hostname")
    assert specs["WorkerLoadTime"].dimensions == ("WorkerName", "Level", "Hostname")
    assert specs["GPUUtilization"].dimensions == ("Level", "DeviceId", "Hostname")
    assert specs["HandlerTime"].dimensions == ("ModelName", "Level", "Hostname")  # Hostname appended
    assert (specs["HandlerTime"].unit, specs["HandlerTime"].kind) == ("ms", "gauge")
    assert (specs["ts_queue_latency_microseconds"].unit, specs["Requests5XX"].kind) == ("Microseconds", "counter")


def test_a_metrics_yaml_replaces_the_default_set(tmp_path: Path, make_metrics) -> None:
    config = tmp_path / "metrics.yaml"
    config.write_text(
        textwrap.dedent("""\
        dimensions:
          - &level "Level"
        ts_metrics:
          counter:
            - name: Requests2XX
              unit: Count
              dimensions: [*level, "Hostname"]
          gauge:
            - name: QueueTime
              unit: Milliseconds
              dimensions: [*level, "Hostname"]
        model_metrics:
          counter:
            - name: InferenceCount
              unit: Count
              dimensions: ["ModelName"]
        """)
    )
    metrics = make_metrics(metrics_mode="prometheus", metrics_config=config)
    assert metrics.prometheus_names == ["Requests2XX", "QueueTime", "InferenceCount"]
    metrics.http_response(200)
    metrics.http_response(404)  # Requests4XX is not declared: not recorded, no error
    metrics.worker_thread_time(3)
    for _ in range(2):
        metrics.backend_line("[METRICS]InferenceCount.Count:1|#ModelName:m|#type:COUNTER|#hostname:w,1,r")
    metrics.backend_line(HANDLER_TIME_LINE)  # not declared, no auto-detection: ignored
    text = metrics.render().decode()
    assert 'InferenceCount{ModelName="m",Hostname="w",} 2.0\n' in text
    assert "HandlerTime" not in text and "Requests4XX" not in text
    assert list(families(metrics)) == ["Requests2XX", "QueueTime", "InferenceCount"]


def test_an_unusable_metrics_yaml_declares_nothing(tmp_path: Path, make_metrics, caplog) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ts_metrics:\n  counter:\n    - name: X\n")  # no unit
    metrics = make_metrics(metrics_mode="prometheus", metrics_config=bad)
    assert metrics.prometheus_names == []
    assert "Metric unit cannot be empty" in caplog.text
    metrics = make_metrics(metrics_mode="prometheus", metrics_config=tmp_path / "missing.yaml")
    assert metrics.prometheus_names == [] and metrics.render() == b""


def test_auto_detect_registers_undeclared_backend_metrics(make_metrics, caplog) -> None:
    caplog.set_level(logging.INFO)
    metrics = make_metrics(metrics_mode="prometheus", model_metrics_auto_detect="true")
    metrics.backend_line("[METRICS]CustomCount.Count:2|#ModelName:m,Level:Model|#type:COUNTER|#hostname:w,1,r")
    metrics.backend_line("[METRICS]CustomCount.Count:3|#ModelName:m,Level:Model|#type:COUNTER|#hostname:w,1,r")
    metrics.backend_line("[METRICS]Untyped.ms:4.5|#Level:Model|#hostname:w,1")
    text = metrics.render().decode()
    assert "# HELP CustomCount Torchserve prometheus counter metric with unit: Count\n" in text
    assert 'CustomCount{ModelName="m",Level="Model",Hostname="w",} 5.0\n' in text
    assert "# TYPE Untyped gauge\n" in text and 'Untyped{Level="Model",Hostname="w",} 4.5\n' in text
    assert "Registering auto detected backend metric: CustomCount" in caplog.text

    plain = make_metrics(metrics_mode="prometheus")
    plain.backend_line("[METRICS]CustomCount.Count:2|#ModelName:m|#type:COUNTER|#hostname:w,1,r")
    assert "CustomCount" not in plain.render().decode()


def test_auto_detected_names_prometheus_cannot_take_are_rejected_once(make_metrics, caplog) -> None:
    metrics = make_metrics(metrics_mode="prometheus", model_metrics_auto_detect="true")
    for _ in range(3):
        assert metrics.backend_line("[METRICS]Bad Name.ms:1|#Level:Model|#type:GAUGE|#hostname:w,1,r")
        assert metrics.backend_line("[METRICS]QueueTime.ms:1|#Level:Model|#type:GAUGE|#hostname:w,1,r")
    assert caplog.text.count("Cannot register the Prometheus metric Bad Name") == 1
    assert caplog.text.count("Cannot register the Prometheus metric QueueTime") == 1  # a frontend family
    assert "Bad Name" not in metrics.render().decode()


def test_auto_detected_metrics_in_log_mode(make_metrics, caplog) -> None:
    caplog.set_level(logging.INFO)
    metrics = make_metrics(model_metrics_auto_detect="true")
    metrics.backend_line(
        "[METRICS]ts_handler_preprocess.Milliseconds:1.25|#ModelName:m,Level:Model|#type:GAUGE|#hostname:w,1,r9"
    )
    assert lines_of(caplog, MODEL_METRICS) == [
        "ts_handler_preprocess.Milliseconds:1.25|#ModelName:m,Level:Model|#hostname:w,requestID:r9,timestamp:<ts>"
    ]


# -- formatting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "text"),
    [(1, "1.0"), (82.93, "82.93"), (0.0, "0.0"), (100.0, "100.0"), (0.001, "0.001"), (1e-4, "1.0E-4"),
     (9999999.0, "9999999.0"), (1e7, "1.0E7"), (12345678.9, "1.23456789E7"), (-2.5, "-2.5"), (1e21, "1.0E21"),
     (float("nan"), "NaN"), (float("inf"), "Infinity")],
)  # fmt: skip
def test_java_double(number: float, text: str) -> None:
    assert java_double(number) == text


def test_label_values_are_escaped(make_metrics) -> None:
    metrics = make_metrics(metrics_mode="prometheus")
    metrics.worker_loaded('W-1-a"b\\c_1.0', 1)
    text = metrics.render().decode()
    assert 'WorkerName="W-1-a\\"b\\\\c_1.0"' in text
    assert value(metrics, "WorkerLoadTime", WorkerName='W-1-a"b\\c_1.0', Level="Host", Hostname=HOST) == 1


def test_the_host_name_defaults_to_this_machine(tmp_path: Path) -> None:
    from server.telemetry.metrics import ServerMetrics

    from .conftest import make_settings

    metrics = ServerMetrics(make_settings(tmp_path, disable_system_metrics="true"))
    assert metrics.hostname == socket.gethostname()
