"""The server's log files, in TorchServe's layout and line formats (spec §9).

``ts_log.log`` gets everything (as log4j2's additivity does in TorchServe), ``model_log.log`` the
workers' stdout/stderr (logger ``MODEL_LOG``), ``access_log.log`` one line per request (logger
``ACCESS_LOG``). Under the metrics location (default: the log location), ``ts_metrics.log`` gets the
frontend metric lines (logger ``TS_METRICS``) and ``model_metrics.log`` the backend ones (logger
``MODEL_METRICS``), both as ``<ts> - <line>``. Files rotate at 100 MB, five kept. Records are handed to a
background thread through a queue, so logging never blocks the event loop on disk I/O.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import time
from pathlib import Path

ACCESS_LOG = "ACCESS_LOG"
MODEL_LOG = "MODEL_LOG"
TS_METRICS = "TS_METRICS"
MODEL_METRICS = "MODEL_METRICS"
MAX_BYTES = 100 * 1024 * 1024
BACKUPS = 5
_LEVELS = {"WARNING": "WARN ", "CRITICAL": "FATAL", "INFO": "INFO ", "DEBUG": "DEBUG", "ERROR": "ERROR"}


class Log4jFormatter(logging.Formatter):
    """``2024-05-30T21:46:03,625 [INFO ] <thread> <logger> - <message>``."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        return f"{stamp},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        thread = getattr(record, "ts_thread", None) or record.threadName
        level = _LEVELS.get(record.levelname, record.levelname[:5].ljust(5))
        line = f"{self.formatTime(record)} [{level}] {thread} {record.name} - {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class AccessFormatter(Log4jFormatter):
    """``2024-05-30T21:46:03,625 - /127.0.0.1:53514 "POST /predictions/m HTTP/1.1" 200 118``."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{self.formatTime(record)} - {record.getMessage()}"


class MetricsFormatter(AccessFormatter):
    """``2024-05-30T21:46:03,626 - Requests2XX.Count:1.0|#Level:Host|#hostname:h,timestamp:1717105563``."""


class _OnlyLogger(logging.Filter):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.logger_name = name

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == self.logger_name


def _rotating(
    path: Path, formatter: logging.Formatter, only: str | None = None, max_bytes: int = MAX_BYTES
) -> logging.Handler:
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(formatter)
    if only:
        handler.addFilter(_OnlyLogger(only))
    return handler


_listener: logging.handlers.QueueListener | None = None


def setup_logging(
    log_location: Path,
    *,
    console: bool = True,
    level: int = logging.INFO,
    metrics_location: Path | None = None,
    max_bytes: int = MAX_BYTES,
) -> Path:
    """Route every log record to the files under ``log_location`` (and stdout when ``console``).

    The two metrics files go to ``metrics_location`` (default: ``log_location``).
    """
    global _listener
    stop_logging()
    log_location.mkdir(parents=True, exist_ok=True)
    metrics_dir = metrics_location if metrics_location is not None else log_location
    metrics_dir.mkdir(parents=True, exist_ok=True)
    log4j = Log4jFormatter()
    handlers: list[logging.Handler] = [
        _rotating(log_location / "ts_log.log", log4j, max_bytes=max_bytes),
        _rotating(log_location / "model_log.log", log4j, only=MODEL_LOG, max_bytes=max_bytes),
        _rotating(log_location / "access_log.log", AccessFormatter(), only=ACCESS_LOG, max_bytes=max_bytes),
        _rotating(metrics_dir / "ts_metrics.log", MetricsFormatter(), only=TS_METRICS, max_bytes=max_bytes),
        _rotating(metrics_dir / "model_metrics.log", MetricsFormatter(), only=MODEL_METRICS, max_bytes=max_bytes),
    ]
    if console:
        out = logging.StreamHandler(sys.stdout)
        out.setFormatter(log4j)
        handlers.append(out)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(logging.handlers.QueueHandler(records))
    root.setLevel(level)
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for metrics_logger in (TS_METRICS, MODEL_METRICS):  # level "all" in TorchServe's log4j2.xml
        logging.getLogger(metrics_logger).setLevel(logging.DEBUG)
    _listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    _listener.start()
    atexit.register(stop_logging)
    return log_location


def stop_logging() -> None:
    """Flush and close the log files (idempotent)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        for handler in _listener.handlers:
            handler.close()
        _listener = None
