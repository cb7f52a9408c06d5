"""A small terminal progress bar for long archive operations.

Drawn on a TTY only, and only for work above a threshold, so scripts and logs stay clean.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just processed."""

SHOW_ABOVE_BYTES = 4 * 1024 * 1024


def human_size(n: float) -> str:
    """``512 B``, ``1.5 KB``, ``108.3 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


class TerminalProgress:
    """``label [#######.......]  48%  52.1 MB / 108.3 MB  41.0 MB/s`` redrawn in place on stderr."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self._start = time.monotonic()
        self._last_draw = 0.0

    def __call__(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if now - self._last_draw >= 0.1 or self.done >= self.total:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        filled = int(frac * self.width)
        rate = self.done / max(now - self._start, 1e-6)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {frac * 100:3.0f}%  "
            f"{human_size(self.done)} / {human_size(self.total)}  {human_size(rate)}/s\x1b[K"
        )
        self.stream.flush()

    def close(self) -> None:
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()


def terminal_progress(total: int, label: str, stream: TextIO | None = None) -> TerminalProgress | None:
    """A progress bar when the work is big enough and stderr is a terminal, else None."""
    stream = stream if stream is not None else sys.stderr
    if total < SHOW_ABOVE_BYTES or not stream.isatty():
        return None
    return TerminalProgress(total, label, stream)
