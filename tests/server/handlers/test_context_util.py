"""Context, the metrics cache and the ts.utils.util helpers, on their own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from server.handlers.context import Context, RequestProcessor
from server.handlers.metrics import Dimension, MetricsCache, MetricsCacheKeyError, MetricTypes
from server.handlers.util import (
    PredictionException,
    get_yaml_config,
    list_classes_from_module,
    load_label_mapping,
    map_class_to_label,
)


def make_context() -> Context:
    ctx = Context("mnist", "/models/x", {"model": {"modelName": "mnist"}}, 8, None, "0.12.0", True)
    ctx.request_ids = {0: "id-0", 1: "id-1"}
    ctx.request_processor = [
        RequestProcessor({"X-A": "1", "body": {"content-type": "application/json"}, "ts_request_sequence_id": "s1"}),
        RequestProcessor({}),
    ]
    return ctx


def test_context_properties() -> None:
    ctx = make_context()
    assert ctx.model_name == "mnist" and ctx.manifest == {"model": {"modelName": "mnist"}}
    assert ctx.system_properties == {
        "model_dir": "/models/x",
        "gpu_id": None,
        "batch_size": 8,
        "server_name": "MMS",
        "server_version": "0.12.0",
        "limit_max_image_pixels": True,
    }
    assert ctx.model_yaml_config == {}
    assert isinstance(ctx.metrics, MetricsCache)


def test_context_requests_and_responses() -> None:
    ctx = make_context()
    assert ctx.get_request_id() == "id-0" and ctx.get_request_id(1) == "id-1" and ctx.get_request_id(5) is None
    assert ctx.get_request_header(0, "X-A") == "1"
    assert ctx.get_request_header(0, "body") == {"content-type": "application/json"}
    assert ctx.get_request_header(1, "X-A") is None
    assert ctx.get_all_request_header(1) == {}
    assert ctx.get_sequence_id(0) == "s1"

    assert ctx.get_response_status(0) == (200, None)
    ctx.set_response_status(404, "Nope", 1)
    assert ctx.get_response_status(1) == (404, "Nope")
    ctx.set_all_response_status(202, "Later")
    assert [ctx.get_response_status(i) for i in (0, 1)] == [(202, "Later")] * 2
    ctx.set_response_content_type(0, "text/csv")
    ctx.set_response_header(0, "X-B", "2")
    assert ctx.get_response_content_type(0) == "text/csv" and ctx.get_response_content_type(1) is None
    assert ctx.get_response_headers(0) == {"content-type": "text/csv", "X-B": "2"}


def test_context_without_a_batch() -> None:
    ctx = Context("m", "/d", None, 1, 0)
    assert ctx.get_request_id() is None
    ctx.set_response_status(500, "x", 0)  # ignored, as in TorchServe
    ctx.set_all_response_status(500)
    with pytest.raises(IndexError):
        ctx.get_request_header(0, "a")


def test_metrics_cache_api() -> None:
    cache = MetricsCache("m")
    cache.set_request_ids({0: "a", 1: "b"})
    cache.add_time("Latency", 12.5, idx=1, unit="s", dimensions=[Dimension("Stage", "pre")])
    with pytest.raises(ValueError):
        cache.add_time("Bad", 1, unit="hours")
    with pytest.raises(ValueError):
        cache.add_size("Bad", 1, unit="TB")
    cache.add_counter("Count", -1)  # counters cannot go down: logged and dropped
    cache.add_error("Oops", 1)
    metric = cache.add_metric_to_cache("Hist", "ms", ["Kind"], MetricTypes.HISTOGRAM)
    metric.add_or_update(3, ["x"], "req")
    metric.add_or_update(4, ["x", "extra"])  # wrong dimension count: dropped
    assert cache.get_metric("Hist", MetricTypes.HISTOGRAM) is metric
    with pytest.raises(MetricsCacheKeyError):
        cache.get_metric("Nope")
    records = cache.drain()
    assert [(r.name, r.value, r.unit, r.metric_type) for r in records] == [
        ("Latency", 12.5, "Seconds", MetricTypes.GAUGE),
        ("Oops", 1, "unit", MetricTypes.COUNTER),
        ("Hist", 3, "Milliseconds", MetricTypes.HISTOGRAM),
    ]
    assert records[0].dimensions == (("Stage", "pre"), ("ModelName", "m"), ("Level", "Model"))
    assert records[0].request_id == "b"
    assert records[1].dimensions == (("Level", "Error"),) and records[1].request_id is None
    assert "gauge:Latency" in cache.cache_keys()


def test_metrics_records_are_bounded() -> None:
    cache = MetricsCache("m", max_records=3)
    for i in range(5):
        cache.add_counter("C", i)
    assert [r.value for r in cache.drain()] == [2, 3, 4]


def test_prediction_exception() -> None:
    e = PredictionException("bad", 413)
    assert (e.message, e.error_code, str(e)) == ("bad", 413, "bad : 413")
    assert PredictionException("x").error_code == 500


def test_load_label_mapping(tmp_path: Path) -> None:
    assert load_label_mapping(tmp_path / "missing.json") is None
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"0": ["n01440764", "tench"], "1": "goldfish"}))
    assert load_label_mapping(p) == {"0": "tench", "1": "goldfish"}
    p.write_text(json.dumps({"object_type_names": ["bg", "person"]}))
    assert load_label_mapping(p) == {"0": "bg", "1": "person"}
    p.write_text(json.dumps(["not", "a", "dict"]))
    with pytest.raises(ValueError):
        load_label_mapping(p)
    p.write_text(json.dumps({"0": 5}))
    with pytest.raises(ValueError):
        load_label_mapping(p)


def test_map_class_to_label() -> None:
    assert map_class_to_label([[0.1, 0.9]]) == [{"0": 0.1, "1": 0.9}]
    assert map_class_to_label([[0.9, 0.1]], {"3": "cat"}, [[3, 4]]) == [{"cat": 0.9, "4": 0.1}]
    with pytest.raises(TypeError):
        map_class_to_label((0.1,))  # type: ignore[arg-type]


def test_list_classes_from_module_only_counts_defined_classes(tmp_path: Path) -> None:
    (tmp_path / "defs_mod.py").write_text(
        "from collections import OrderedDict\n\n\nclass A:\n    pass\n\n\nclass B(A):\n    pass\n"
    )
    sys.path.insert(0, str(tmp_path))
    import defs_mod  # type: ignore[import-not-found]

    assert [c.__name__ for c in list_classes_from_module(defs_mod)] == ["A", "B"]
    assert [c.__name__ for c in list_classes_from_module(defs_mod, defs_mod.B)] == ["B"]


def test_get_yaml_config(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("minWorkers: 1\npt2:\n  compile:\n    enable: false\n")
    assert get_yaml_config(p) == {"minWorkers": 1, "pt2": {"compile": {"enable": False}}}
    p.write_text("")
    assert get_yaml_config(p) == {}
