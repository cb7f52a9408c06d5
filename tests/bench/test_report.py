"""The pure pieces of `make bench`: wrk's summary line, medians and ratios, the markdown report."""

from __future__ import annotations

import json

import pytest

from bench.assets import NOOP_BODY_BYTES, noop_body
from bench.load import parse_summary
from bench.report import cells, median_spread, ratio, render
from bench.workloads import Config, select

WRK_OUT = """Running 5s test @ http://127.0.0.1:19300/predictions/noop
  1 threads and 16 connections
WRK_SUMMARY {"requests":1000,"duration_us":5000000,"errors":2,"non2xx":1,"p50_us":1500,"p90_us":4000,"p99_us":9000,"max_us":12000}
"""  # noqa: E501


def window(c: int, rps: float, p99: float, requests: int = 100) -> dict:
    return {
        "concurrency": c, "rps": rps, "requests": requests, "errors": 0, "p50_ms": p99 / 2, "p99_ms": p99,
        "frontend_cpu_s": 0.1, "tree_cpu_s": 0.2, "peak_rss_mb": 500.0, "loadavg_before": 1.0, "foreign_cores": 0.1,
    }  # fmt: skip


def results() -> dict:
    records = [
        {"workload": "noop", "config": "w1 b1", "kind": kind, "rep": rep, "timings": {"start_to_ping_s": 1.5},
         "windows": [window(1, rps, p99)]}
        for kind, rep, rps, p99 in [("tsconsole", 1, 100, 10), ("torchserve", 1, 50, 20), ("tsconsole", 2, 120, 14),
                                    ("torchserve", 2, 60, 20), ("tsconsole", 3, 300, 12), ("torchserve", 3, 55, 40)]
    ]  # fmt: skip
    records.append({"workload": "noop", "config": "w2 b1", "kind": "torchserve", "rep": 1, "timings": {},
                    "windows": [], "error": "register noop: HTTP 500\nline two"})  # fmt: skip
    facts = {"date": "today", "cores": "2 logical, 2 physical", "cpu": "Test CPU"}
    return {"command": "python -m bench --reps 3", "facts": facts, "kinds": ["tsconsole", "torchserve"],
            "workloads": ["noop"], "reps": 3, "warmup": 5, "durations": {"noop": 10}, "records": records}  # fmt: skip


def test_parse_summary_line() -> None:
    got = parse_summary(WRK_OUT)
    assert got["requests"] == 1000 and got["rps"] == 200.0 and got["duration_s"] == 5.0
    assert (got["p50_ms"], got["p90_ms"], got["p99_ms"]) == (1.5, 4.0, 9.0)
    assert got["errors"] == 3  # socket errors and non-2xx answers


def test_parse_summary_without_requests_has_no_latency() -> None:
    line = 'WRK_SUMMARY {"requests":0,"duration_us":5000000,"errors":0,"non2xx":0,"p50_us":0,"p90_us":0,'
    got = parse_summary(line + '"p99_us":0,"max_us":0}')
    assert got["rps"] == 0.0 and got["p50_ms"] is None and got["p99_ms"] is None


def test_parse_summary_missing_line() -> None:
    with pytest.raises(ValueError, match="WRK_SUMMARY"):
        parse_summary("wrk: connection refused\n")


def test_median_spread_and_ratio() -> None:
    assert median_spread([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    assert median_spread([1.0, 4.0]) == (2.5, 1.0, 4.0)
    assert median_spread([]) is None
    assert ratio(120.0, 60.0) == "2.00x"
    assert ratio(1.0, 0.0) == "-" and ratio(None, 5.0) == "-"


def test_cells_take_medians_over_repetitions() -> None:
    cell = cells(results()["records"])["noop", "w1 b1", 1, "tsconsole"]
    assert cell["n"] == 3 and cell["rps"] == (120, 100, 300) and cell["p99"] == 12
    assert cell["frontend_ms"] == pytest.approx(1.0) and cell["tree_ms"] == pytest.approx(2.0)


def test_render_markdown() -> None:
    md = render(results())
    row = next(line for line in md.splitlines() if line.startswith("| w1 b1 | 1 | tsconsole |"))
    assert "120.0 (100.0-300.0)" in row
    assert "| 2.18x | 0.60x |" in row  # 120 / 55 req/s; p99 12 / 20 ms
    assert "| Test CPU |" in md and "`python -m bench --reps 3`" in md
    assert "register noop: HTTP 500 / line two" in md  # failures on one line
    assert "| noop | w1 b1 | torchserve | 3 | 1.50 (1.50-1.50) | - | - |" in md


def test_workloads_and_assets() -> None:
    assert [w.name for w in select("noop, resnet18")] == ["noop", "resnet18"]
    with pytest.raises(SystemExit):
        select("nope")
    assert Config(1, 4, 20).label == "w1 b4 d20" and Config(2).label == "w2 b1"
    body = noop_body()
    assert len(body) == NOOP_BODY_BYTES and isinstance(json.loads(body), dict)
