"""The two metrics log files written by setup_logging, next to the existing ones."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.telemetry.logs import MODEL_LOG, setup_logging, stop_logging

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3}"


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    stop_logging()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_metrics_lines_go_to_their_own_files(tmp_path: Path, make_metrics, restore_root_logger) -> None:
    logs, metrics_dir = tmp_path / "logs", tmp_path / "metrics"
    setup_logging(logs, console=False, metrics_location=metrics_dir)
    metrics = make_metrics()  # log mode
    metrics.http_response(200)
    metrics.backend_line(
        "[METRICS]HandlerTime.Milliseconds:82.93|#ModelName:m,Level:Model|#type:GAUGE|#hostname:w,1,req-1"
    )
    logging.getLogger(MODEL_LOG).info("a model line")
    stop_logging()

    ts_metrics = (metrics_dir / "ts_metrics.log").read_text().splitlines()
    assert len(ts_metrics) == 1
    assert re.fullmatch(
        STAMP + r" - Requests2XX\.Count:1\.0\|#Level:Host\|#hostname:test-host,timestamp:\d+", ts_metrics[0]
    )
    model_metrics = (metrics_dir / "model_metrics.log").read_text().splitlines()
    assert len(model_metrics) == 1
    assert re.fullmatch(
        STAMP + r" - HandlerTime\.ms:82\.93\|#ModelName:m,Level:Model\|#hostname:w,requestID:req-1,timestamp:\d+",
        model_metrics[0],
    )
    model_log = (logs / "model_log.log").read_text()
    assert "a model line" in model_log and "HandlerTime" not in model_log and "Requests2XX" not in model_log
    assert not (logs / "ts_metrics.log").exists()
    assert "Requests2XX.Count:1.0" in (logs / "ts_log.log").read_text()  # additivity, as log4j2's root


def test_metrics_files_default_to_the_log_location(tmp_path: Path, restore_root_logger) -> None:
    setup_logging(tmp_path, console=False)
    logging.getLogger("TS_METRICS").info("X.Count:1.0|#Level:Host|#hostname:h,timestamp:1")
    stop_logging()
    assert (tmp_path / "ts_metrics.log").read_text().endswith(" - X.Count:1.0|#Level:Host|#hostname:h,timestamp:1\n")
    assert (tmp_path / "model_metrics.log").read_text() == ""


def test_log_files_rotate_by_size(tmp_path: Path) -> None:
    import logging

    from server.telemetry.logs import BACKUPS, setup_logging, stop_logging

    setup_logging(tmp_path, console=False, max_bytes=2000)
    try:
        for i in range(200):
            logging.getLogger("MODEL_LOG").info("worker line %d %s", i, "x" * 40, extra={"ts_thread": "W-9000-m_1.0"})
    finally:
        stop_logging()
    rotated = sorted(p.name for p in tmp_path.glob("model_log.log.*"))
    assert rotated == [f"model_log.log.{i}" for i in range(1, BACKUPS + 1)]  # five kept, the oldest dropped
    assert (tmp_path / "model_log.log").stat().st_size <= 2000
    assert "W-9000-m_1.0 MODEL_LOG - worker line 199" in (tmp_path / "model_log.log").read_text()
