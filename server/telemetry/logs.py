"""The server's log files, in TorchServe's layout and line formats (spec §9).

``ts_log.log`` gets everything (as log4j2's additivity does in TorchServe), ``model_log.log`` the
workers' stdout/stderr (logger ``MODEL_LOG``), ``access_log.log`` one line per request (logger
``ACCESS_LOG``). Under the metrics location (default: the log location), ``ts_metrics.log`` gets the
frontend metric lines (logger ``TS_METRICS``) and ``model_metrics.log`` the backend ones (logger
``MODEL_METRICS``), both as ``<ts> - <line>``. Files rotate at 100 MB, five kept.

Cost: a request makes about eight lines (its access line, six frontend metrics, the handler's metrics), so
the path is built for volume. One writer thread owns every file: the event loop only puts records on a
queue (`emit_line` gathers the per-request lines of a loop iteration into one light `Lines` record instead
of a `logging.LogRecord` each); the thread wakes at most every `BATCH_S`, formats the whole batch
(timestamps cached per second) and writes each file once per batch.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

ACCESS_LOG = "ACCESS_LOG"
MODEL_LOG = "MODEL_LOG"
TS_METRICS = "TS_METRICS"
MODEL_METRICS = "MODEL_METRICS"
MAX_BYTES = 100 * 1024 * 1024
BACKUPS = 5
BATCH_S = 0.02  # the writer gathers this long after a quiet spell before it writes
_LEVELS = {"WARNING": "WARN ", "CRITICAL": "FATAL", "INFO": "INFO ", "DEBUG": "DEBUG", "ERROR": "ERROR"}


class Lines:
    """INFO lines of one thread, pre-rendered (what the per-request paths log instead of `logging.LogRecord`s):
    ``(logger, message, time.time())`` each, in the order they were logged."""

    __slots__ = ("items", "thread")

    def __init__(self, thread: str, items: list[tuple[str, str, float]]) -> None:
        self.thread = thread
        self.items = items


_second_stamp: tuple[int, str] = (-1, "")  # the last second formatted, and its text


def iso8601(created: float) -> str:
    """log4j2's ISO8601 ``2024-05-30T21:46:03,625`` of a `time.time` value; one strftime per second."""
    global _second_stamp
    second = int(created)
    cached = _second_stamp
    if cached[0] != second:
        cached = _second_stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second)))
    return f"{cached[1]},{int((created - second) * 1000):03d}"


class Log4jFormatter(logging.Formatter):
    """``2024-05-30T21:46:03,625 [INFO ] <thread> <logger> - <message>``."""

    def formatTime(self, record: Any, datefmt: str | None = None) -> str:
        return iso8601(record.created)

    def format_line(self, stamp: str, thread: str, logger: str, message: str) -> str:
        """An INFO line of `Lines` (``stamp``: its `iso8601` time)."""
        return f"{stamp} [INFO ] {thread} {logger} - {message}"

    def format(self, record: Any) -> str:
        thread = getattr(record, "ts_thread", None) or record.threadName
        level = _LEVELS.get(record.levelname, record.levelname[:5].ljust(5))
        line = f"{self.formatTime(record)} [{level}] {thread} {record.name} - {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:  # rendered where it was raised (see _Enqueue)
            line += "\n" + record.exc_text
        return line


class AccessFormatter(Log4jFormatter):
    """``2024-05-30T21:46:03,625 - /127.0.0.1:53514 "POST /predictions/m HTTP/1.1" 200 118``."""

    def format(self, record: Any) -> str:
        return f"{self.formatTime(record)} - {record.getMessage()}"

    def format_line(self, stamp: str, thread: str, logger: str, message: str) -> str:
        return f"{stamp} - {message}"


class MetricsFormatter(AccessFormatter):
    """``2024-05-30T21:46:03,626 - Requests2XX.Count:1.0|#Level:Host|#hostname:h,timestamp:1717105563``."""


class _LogFile:
    """One output: the records it takes (``only`` one logger, or all), its format, its file (rotated by size)
    or a stream. Written by the writer thread only."""

    def __init__(
        self, formatter: Log4jFormatter, *, path: Path | None = None, stream: TextIO | None = None,
        only: str | None = None, max_bytes: int = MAX_BYTES,
    ) -> None:  # fmt: skip
        self.formatter = formatter
        self.path = path
        self.only = only
        self.max_bytes = max_bytes
        self.pending: list[str] = []
        self._stream = stream
        self._file: TextIO | None = None
        self._size = 0
        if path is not None:
            self._open()

    def _open(self) -> None:
        assert self.path is not None
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open, closed in close()
        self._size = self._file.tell()

    def take(self, record: logging.LogRecord, rendered: dict[logging.Formatter, str]) -> None:
        """Queue ``record`` if it is this output's; ``rendered``: the record's text per formatter so far (the
        same line goes to ts_log.log and the console: formatted once)."""
        if self.takes(record.name):
            text = rendered.get(self.formatter)
            if text is None:
                text = rendered[self.formatter] = self.formatter.format(record)  # type: ignore[arg-type]
            self.pending.append(text)

    def takes(self, logger: str) -> bool:
        return self.only is None or logger == self.only

    def flush(self) -> None:
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        try:
            if self._stream is not None:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
                return
            assert self._file is not None
            chunk: list[str] = []
            size = 0
            for line in lines:  # rotate where the file would pass max_bytes, even inside one batch
                n = (len(line) if line.isascii() else len(line.encode("utf-8"))) + 1
                if self._size + size + n > self.max_bytes and self._size + size > 0:
                    self._write(chunk, size)
                    self._rotate()
                    chunk, size = [], 0
                chunk.append(line)
                size += n
            self._write(chunk, size)
            self._file.flush()
        except (OSError, ValueError) as exc:  # a full disk must not kill the writer: say so where we can
            print(f"tsconsole: cannot write the log {self.path or 'stream'}: {exc}", file=sys.stderr)

    def _write(self, lines: list[str], size: int) -> None:
        assert self._file is not None
        if lines:
            self._file.write("\n".join(lines) + "\n")
            self._size += size

    def _rotate(self) -> None:
        """``file`` -> ``file.1`` -> ... -> ``file.5`` (the oldest dropped), as logging's RotatingFileHandler."""
        assert self.path is not None and self._file is not None
        self._file.close()  # flushes what _write gave it
        for i in range(BACKUPS - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


_STOP = object()


class _Writer(threading.Thread):
    """Takes records off the queue in batches and writes each output once per batch."""

    def __init__(self, outputs: list[_LogFile]) -> None:
        super().__init__(name="log-writer", daemon=True)
        self.outputs = outputs
        self.records: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(self) -> None:
        stopping = False
        routes: dict[str, list[_LogFile]] = {}  # logger name -> the outputs that take its records
        while not stopping:
            batch = [self.records.get()]
            time.sleep(BATCH_S)  # let the burst gather: one write per file for all of it
            while True:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            for record in batch:
                if record is _STOP:
                    stopping = True
                    continue
                if type(record) is Lines:
                    self._lines(record, routes)
                    continue
                rendered: dict[logging.Formatter, str] = {}
                for output in self._route(record.name, routes):
                    try:
                        output.take(record, rendered)
                    except Exception as exc:  # a record that cannot be formatted is reported, not fatal
                        output.pending.append(f"(unformattable log record of {record.name}: {exc!r})")
            for output in self.outputs:
                output.flush()

    def _route(self, logger: str, routes: dict[str, list[_LogFile]]) -> list[_LogFile]:
        outputs = routes.get(logger)
        if outputs is None:
            outputs = routes[logger] = [o for o in self.outputs if o.takes(logger)]
        return outputs

    def _lines(self, lines: Lines, routes: dict[str, list[_LogFile]]) -> None:
        thread = lines.thread
        for logger, message, created in lines.items:
            stamp = iso8601(created)
            rendered: dict[Log4jFormatter, str] = {}  # one text per format (ts_log.log and the console share one)
            for output in self._route(logger, routes):
                text = rendered.get(output.formatter)
                if text is None:
                    text = rendered[output.formatter] = output.formatter.format_line(stamp, thread, logger, message)
                output.pending.append(text)

    def stop(self) -> None:
        self.records.put(_STOP)
        self.join(timeout=10)
        for output in self.outputs:
            output.close()


class _Enqueue(logging.Handler):
    """The root logger's only handler: the record goes to the writer thread, formatted there."""

    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self.put = writer.records.put

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(_pending, "lines", None):  # this thread's lines logged before it come first
            _flush_lines()
        if record.exc_info and not record.exc_text:  # the traceback's frames change after this call
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.put(record)


_writer: _Writer | None = None


_pending = threading.local()  # .lines: what emit_line gathered on this thread's event loop, not yet queued


def emit_line(logger: str, message: str) -> None:
    """Log ``message`` at INFO on ``logger`` (the per-request lines: access, metrics). With the server's
    logging set up, a line logged on an event loop joins the others of the same loop iteration, queued as
    one `Lines` when the iteration ends (a list append per line); elsewhere it is queued at once. Without
    (tests, tools) it is an ordinary logging call."""
    writer = _writer
    if writer is None:
        logging.getLogger(logger).info("%s", message)
        return
    loop = asyncio._get_running_loop()
    if loop is None:
        writer.records.put(Lines(threading.current_thread().name, [(logger, message, time.time())]))
        return
    lines = getattr(_pending, "lines", None)
    if lines is None:
        lines = _pending.lines = []
        loop.call_soon(_flush_lines)
    lines.append((logger, message, time.time()))


def _flush_lines() -> None:
    lines = getattr(_pending, "lines", None)
    _pending.lines = None
    writer = _writer
    if not lines:
        return
    if writer is not None:
        writer.records.put(Lines(threading.current_thread().name, lines))
    else:  # logging was stopped meanwhile
        for logger, message, _ in lines:
            logging.getLogger(logger).info("%s", message)


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
    global _writer
    stop_logging()
    log_location.mkdir(parents=True, exist_ok=True)
    metrics_dir = metrics_location if metrics_location is not None else log_location
    metrics_dir.mkdir(parents=True, exist_ok=True)
    log4j = Log4jFormatter()
    outputs = [
        _LogFile(log4j, path=log_location / "ts_log.log", max_bytes=max_bytes),
        _LogFile(log4j, path=log_location / "model_log.log", only=MODEL_LOG, max_bytes=max_bytes),
        _LogFile(AccessFormatter(), path=log_location / "access_log.log", only=ACCESS_LOG, max_bytes=max_bytes),
        _LogFile(MetricsFormatter(), path=metrics_dir / "ts_metrics.log", only=TS_METRICS, max_bytes=max_bytes),
        _LogFile(MetricsFormatter(), path=metrics_dir / "model_metrics.log", only=MODEL_METRICS, max_bytes=max_bytes),
    ]
    if console:
        outputs.append(_LogFile(log4j, stream=sys.stdout))
    writer = _Writer(outputs)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_Enqueue(writer))
    root.setLevel(level)
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for metrics_logger in (TS_METRICS, MODEL_METRICS):  # level "all" in TorchServe's log4j2.xml
        logging.getLogger(metrics_logger).setLevel(logging.DEBUG)
    writer.start()
    _writer = writer
    atexit.register(stop_logging)
    return log_location


def stop_logging() -> None:
    """Write what is queued, close the log files (idempotent)."""
    global _writer
    if getattr(_pending, "lines", None):
        _flush_lines()
    writer, _writer = _writer, None
    if writer is not None:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, _Enqueue):
                root.removeHandler(handler)
        writer.stop()
