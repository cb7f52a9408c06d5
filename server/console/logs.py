"""Reading the server's log files for the console: the last lines of a file (read backwards, never the
whole file) and a follower that yields every new line across rotation and truncation; both block, so the
console API calls them (and renders what they return) off the event loop."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

KiB = 1024
MiB = 1024 * KiB

DEFAULT_TAIL_LINES = 200
MAX_TAIL_LINES = 10_000
TAIL_MAX_BYTES = 32 * MiB  # never read more than this from the end of a file for one tail
FOLLOW_CHUNK = 1 * MiB  # read at most this much per poll; a full chunk is followed at once by the next read
MAX_PARTIAL_LINE = 1 * MiB  # a "line" without a newline longer than this is sent as it is

# name -> (file name, "log" or "metrics" location), in the order the console lists them
LOG_FILES = {
    "ts_log": ("ts_log.log", "log"),
    "model_log": ("model_log.log", "log"),
    "access_log": ("access_log.log", "log"),
    "ts_metrics": ("ts_metrics.log", "metrics"),
    "model_metrics": ("model_metrics.log", "metrics"),
}

# Characters Python's str.splitlines() (and so httpx's aiter_lines) takes for line breaks: inside one log
# line they would split a server-sent event, so a follow stream sends them as spaces.
_SSE_BREAKS = str.maketrans(dict.fromkeys("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", " "))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removesuffix("\r")


def read_last_lines(
    f: IO[bytes], n: int, end: int, *, block: int = 64 * KiB, max_bytes: int = TAIL_MAX_BYTES
) -> list[str]:
    """The last ``n`` lines of ``f[0:end]``, reading backwards block by block (never the whole file).

    A final line without a newline counts as a line. At most ``max_bytes`` are read: a tail of huge lines
    comes back shorter rather than exhausting memory.
    """
    if n <= 0 or end <= 0:
        return []
    pos, read, newlines = end, 0, 0
    chunks: list[bytes] = []
    while pos > 0 and newlines <= n and read < max_bytes:
        size = min(block, pos, max_bytes - read)
        pos -= size
        f.seek(pos)
        chunk = f.read(size)  # shorter if the file shrank underneath: then that is all there is
        chunks.append(chunk)
        read += size
        newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    data = data.removesuffix(b"\n")
    lines = data.split(b"\n")
    if pos > 0:
        lines = lines[1:]  # the first piece starts mid-line
    return [_decode(line) for line in lines[-n:]]


def tail_file(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of the file at ``path`` (blocking: call it off the event loop)."""
    with open(path, "rb") as f:
        return read_last_lines(f, n, os.fstat(f.fileno()).st_size)


class LogFollower:
    """The lines appended to a log file, across rotation (rename + new file) and truncation.

    Blocking: call `start` and `poll` off the event loop. Only complete lines are returned; a partial last
    line waits for its newline (or for a rotation, which ends it).
    """

    def __init__(self, path: Path, *, chunk: int = FOLLOW_CHUNK) -> None:
        self.path = path
        self.chunk = chunk
        self._file: IO[bytes] | None = None
        self._partial = b""

    def start(self, history: int) -> list[str]:
        """Open the file; the last ``history`` complete lines; following starts right after them."""
        self._file = open(self.path, "rb")  # noqa: SIM115 - held open while following, closed in close()
        size = os.fstat(self._file.fileno()).st_size
        end = self._last_newline_end(size)
        self._file.seek(end)
        return read_last_lines(self._file, history, end) if history > 0 else []

    def _last_newline_end(self, size: int) -> int:
        """The offset just after the file's last newline (0 when none within TAIL_MAX_BYTES of the end)."""
        assert self._file is not None
        pos = size
        while pos > 0 and size - pos < TAIL_MAX_BYTES:
            step = min(64 * KiB, pos)
            pos -= step
            self._file.seek(pos)
            at = self._file.read(step).rfind(b"\n")
            if at >= 0:
                return pos + at + 1
        return 0 if pos == 0 else size

    def poll(self) -> tuple[list[str], bool]:
        """New complete lines, and whether more are waiting right now (a full chunk was read)."""
        if self._file is None and not self._reopen():
            return [], False
        assert self._file is not None
        data = self._file.read(self.chunk)
        if data:
            return self._lines(data), len(data) >= self.chunk
        lines: list[str] = []
        try:
            on_disk = os.stat(self.path)
        except OSError:  # rotating right now (renamed, not yet recreated): keep the old file
            return [], False
        mine = os.fstat(self._file.fileno())
        if (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev):
            # Rotated: whatever was written to the old file before the rename first, then the new file.
            while rest := self._file.read(self.chunk):
                lines += self._lines(rest)
            lines += self._flush_partial()
            self._file.close()
            self._file = None
            if self._reopen():
                assert self._file is not None
                data = self._file.read(self.chunk)
                lines += self._lines(data)
                return lines, len(data) >= self.chunk
            return lines, False
        if mine.st_size < self._file.tell():  # truncated in place: start again from its beginning
            self._partial = b""
            self._file.seek(0)
            data = self._file.read(self.chunk)
            return self._lines(data), len(data) >= self.chunk
        return lines, False

    def _reopen(self) -> bool:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - see start()
        except OSError:
            return False
        return True

    def _lines(self, data: bytes) -> list[str]:
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        if len(self._partial) > MAX_PARTIAL_LINE:
            pieces.append(self._partial)
            self._partial = b""
        return [_decode(p) for p in pieces]

    def _flush_partial(self) -> list[str]:
        rest, self._partial = self._partial, b""
        return [_decode(rest)] if rest else []

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def sse_lines(lines: Iterable[str]) -> bytes:
    """``data: <line>\\n\\n`` for each line, in one buffer."""
    return "".join(f"data: {line.translate(_SSE_BREAKS)}\n\n" for line in lines).encode("utf-8")
