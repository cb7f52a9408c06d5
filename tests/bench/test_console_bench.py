"""The console benchmark's log feeder writes log4j-shaped, consecutively numbered lines until stopped."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from bench.console import feed


def test_the_feeder_appends_numbered_log_lines_until_stopped(tmp_path: Path) -> None:
    log = tmp_path / "ts_log.log"
    log.write_text("an existing line\n")
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(log, 1000, stop))
    feeder.start()
    time.sleep(0.2)
    stop.set()
    feeder.join(5)
    first, *lines = log.read_text().splitlines()
    assert first == "an existing line" and lines
    for n, line in enumerate(lines):
        assert re.fullmatch(rf"\S+,000 \[INFO \] feeder bench.console - line {n} of the flood", line), line
