"""A live log view: batched, bounded, sticky follow, level filter, search highlighting.

Producers call `LogView.push` (cheap: a deque append) from anywhere on the event loop; a timer flushes
the deque every ``flush_interval`` with one `Log.write_lines`, so a burst of thousands of lines costs
one repaint. ``max_lines`` bounds both what is shown and what is kept for re-filtering. Scrolling up
pauses the view (new lines are held and counted, "+N new lines"); `End`, `f` or scrolling back to the
bottom resumes it. Highlighting (levels, the search term) is applied only to the lines on screen.
"""

from __future__ import annotations

import heapq
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from rich.highlighter import Highlighter
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Log

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)} | {"WARNING": LEVELS.index("WARN")}
INFO = LEVEL_RANK["INFO"]
_LEVEL = re.compile(r"\[(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\s*\]")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}")
_SEPARATOR = " │ "


# ---- Textual-free line handling ---------------------------------------------------------------------------


@dataclass(slots=True)
class LogLine:
    source: str
    text: str  # the line as the server wrote it
    level: int  # index into LEVELS
    shown: str  # what the view shows (with the source tag when merging)


def line_level(text: str) -> int | None:
    """The log4j level of a line (``2024-… [WARN ] …``); INFO for other timestamped lines; None: a continuation."""
    match = _LEVEL.search(text, 0, 64)
    if match:
        return LEVEL_RANK[match.group(1)]
    return INFO if _TIMESTAMP.match(text) else None


def timestamp_key(text: str) -> str | None:
    """The sortable timestamp a line starts with (TorchServe's ``2024-05-30T21:46:03,625``), or None."""
    return text[:23] if _TIMESTAMP.match(text) else None


def merge_by_time(batch: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Interleave lines of several sources by timestamp, keeping each source's order and multi-line entries.

    A line without a timestamp (a traceback's) stays with the entry above it.
    """
    entries: dict[str, list[tuple[str, int, list[str]]]] = {}
    for source, text in batch:
        rows = entries.setdefault(source, [])
        key = timestamp_key(text)
        if key is None and rows:
            rows[-1][2].append(text)
        else:
            rows.append((key or (rows[-1][0] if rows else ""), len(rows), [text]))
    merged = heapq.merge(*[[(k, i, src, lines) for k, i, lines in rows] for src, rows in entries.items()])
    return [(src, text) for _, _, src, lines in merged for text in lines]


# The logger names TorchServe writes to its own files; ``ts_log`` repeats them (log4j2 additivity).
LOGGER_FILES = {"ACCESS_LOG": "access_log", "MODEL_LOG": "model_log", "TS_METRICS": "ts_metrics"}
LOGGER_FILES["MODEL_METRICS"] = "model_metrics"
_LOGGER = re.compile(r"^\S+ \[\w+\s*\] \S+ (\S+) - ")


class DuplicateFilter:
    """Drops the lines of ``ts_log`` that another followed file has too (``ACCESS_LOG``, ``MODEL_LOG``…).

    ``keep(line)`` is False for such a line and for the lines continuing it (a traceback's).
    """

    def __init__(self, followed: Iterable[str]) -> None:
        followed = set(followed)
        self.loggers = {logger for logger, name in LOGGER_FILES.items() if name in followed}
        self._skipping = False

    def keep(self, line: str) -> bool:
        if not self.loggers:
            return True
        if _TIMESTAMP.match(line):
            match = _LOGGER.match(line)
            self._skipping = bool(match and match.group(1) in self.loggers)
        return not self._skipping


class LogHighlighter(Highlighter):
    """Styles the level token, the source tag and every match of the search term (case-insensitive)."""

    def __init__(self) -> None:
        self.search = ""
        self.styles: dict[str, Style] = {}

    def highlight(self, text: Text) -> None:
        plain = text.plain
        styles = self.styles
        tag_end = plain.find(_SEPARATOR, 0, 24)
        if tag_end > 0 and "source" in styles:
            text.stylize(styles["source"], 0, tag_end + len(_SEPARATOR))
        match = _LEVEL.search(plain, 0, 96)
        if match:
            style = styles.get(match.group(1).lower().replace("warning", "warn"))
            if style:
                text.stylize(style, match.start(), match.end())
        if self.search and "match" in styles:
            lower, term = plain.lower(), self.search.lower()
            start = lower.find(term)
            while start >= 0:
                text.stylize(styles["match"], start, start + len(term))
                start = lower.find(term, start + len(term))


# ---- the widget -------------------------------------------------------------------------------------------


class LogView(Log):
    """``LogView(max_lines=10_000)``; feed it with ``push(source, line)``."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "log-view--match",
        "log-view--error",
        "log-view--warn",
        "log-view--debug",
        "log-view--source",
    }
    DEFAULT_CSS = """
    LogView {
        border: round $panel-lighten-2;
        border-subtitle-color: $text-muted;
        &:focus {
            border: round $primary;
        }
        &.-paused {
            border-subtitle-color: $warning;
        }
        & > .log-view--match {
            background: $warning 60%;
            color: $text;
            text-style: bold;
        }
        & > .log-view--error {
            color: $error;
            text-style: bold;
        }
        & > .log-view--warn {
            color: $warning;
        }
        & > .log-view--debug {
            color: $text-muted;
        }
        & > .log-view--source {
            color: $text-muted;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "follow", "Follow", id="log_view.follow", tooltip="Follow new lines (scroll to the end)"),
    ]

    class FollowChanged(Message):
        """The view started or stopped following; ``unseen``: lines held while paused."""

        def __init__(self, log_view: LogView, following: bool, unseen: int) -> None:
            super().__init__()
            self.log_view = log_view
            self.following = following
            self.unseen = unseen

        @property
        def control(self) -> LogView:
            return self.log_view

    def __init__(
        self,
        *,
        max_lines: int = 10_000,
        flush_interval: float = 0.1,
        merge_window: float = 0.3,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(highlight=True, max_lines=max_lines, auto_scroll=True, id=id, classes=classes)
        self.log_highlighter = LogHighlighter()
        self.highlighter = self.log_highlighter
        self.flush_interval = flush_interval
        self.merge_window = merge_window
        self.records: deque[LogLine] = deque(maxlen=max_lines)
        self._incoming: deque[tuple[str, str]] = deque(maxlen=max_lines)
        self._held: deque[str] = deque(maxlen=max_lines)
        self._last_level: dict[str, int] = {}
        self.following = True
        self.unseen = 0
        self.min_level = 0
        self.tag_sources = False
        self.tag_width = 6
        self.received = 0  # every line pushed since the last reset
        self._merge_until = 0.0

    def on_mount(self) -> None:
        self.set_interval(self.flush_interval, self.flush, name="log-view-flush")
        self._update_styles()
        self._show_state()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted:
            self._update_styles()

    def _update_styles(self) -> None:
        names = {"match": "log-view--match", "error": "log-view--error", "fatal": "log-view--error"}
        names |= {"warn": "log-view--warn", "debug": "log-view--debug", "trace": "log-view--debug"}
        names["source"] = "log-view--source"
        self.log_highlighter.styles = {key: self.get_component_rich_style(cls) for key, cls in names.items()}

    # ---- input ----------------------------------------------------------------------------------------

    def push(self, source: str, line: str) -> None:
        """Queue one line (shown at the next flush)."""
        self._incoming.append((source, line))
        self.received += 1

    def push_lines(self, source: str, lines: Iterable[str]) -> None:
        for line in lines:
            self.push(source, line)

    def reset(self, *, tag_sources: bool = False, tag_width: int = 6, merge: bool = False) -> None:
        """Forget every line (a new source): ``tag_sources`` prefixes each line with its source's name;
        ``merge`` sorts what arrives in the next ``merge_window`` seconds (the backlogs) by timestamp."""
        self._incoming.clear()
        self._held.clear()
        self.records.clear()
        self._last_level.clear()
        self.tag_sources = tag_sources
        self.tag_width = tag_width
        self.received = 0
        self._merge_until = self._now() + self.merge_window if merge else 0.0
        self.clear()
        self.following = True
        self.unseen = 0
        self._show_state()

    def _now(self) -> float:
        return time.monotonic()

    # ---- the flush --------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Move queued lines into the view (or into the held lines while paused)."""
        if not self._incoming:
            return
        if self._merge_until and self._now() < self._merge_until:
            return  # let the backlogs of every source arrive, then sort them together
        batch = list(self._incoming)
        self._incoming.clear()
        if self._merge_until:
            self._merge_until = 0.0
            batch = merge_by_time(batch)
        visible: list[str] = []
        min_level = self.min_level
        for source, text in batch:
            record = self._record(source, text)
            self.records.append(record)
            if record.level >= min_level:
                visible.append(record.shown)
        if not visible:
            return
        if self.following:
            self.write_lines(visible, scroll_end=True)
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        else:
            self._held.extend(visible)
            self.unseen += len(visible)
            self._show_state()

    def _record(self, source: str, text: str) -> LogLine:
        level = line_level(text)
        if level is None:
            level = self._last_level.get(source, INFO)
        else:
            self._last_level[source] = level
        shown = f"{source:<{self.tag_width}}{_SEPARATOR}{text}" if self.tag_sources else text
        return LogLine(source, text, level, shown)

    # ---- following -----------------------------------------------------------------------------------

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value < old_value and new_value < self.max_scroll_y:
            self._set_following(False)  # the user scrolled up: hold new lines
        elif self.max_scroll_y and new_value >= self.max_scroll_y and not self.following:
            self._set_following(True)  # back at the bottom

    def _set_following(self, following: bool) -> None:
        if following == self.following:
            return
        self.following = following
        if following and self._held:
            held = list(self._held)
            self._held.clear()
            self.write_lines(held, scroll_end=True)
        if following:
            self.unseen = 0
        self._show_state()
        self.post_message(self.FollowChanged(self, following, self.unseen))

    def action_follow(self) -> None:
        """Resume following: show the held lines and stay at the end."""
        self._set_following(True)
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    def action_scroll_end(self) -> None:
        self.action_follow()

    def _show_state(self) -> None:
        if self.following:
            self.border_subtitle = "following"
            self.remove_class("-paused")
        else:
            new = f"+{self.unseen} new line{'s' if self.unseen != 1 else ''} · " if self.unseen else ""
            self.border_subtitle = f"paused · {new}End/f to follow"
            self.add_class("-paused")

    # ---- filtering and search ------------------------------------------------------------------------

    def set_min_level(self, level: int) -> None:
        """Show lines of ``level`` and above (an index into LEVELS); rebuilds the view from the kept lines."""
        self.min_level = level
        self._rebuild()

    def _rebuild(self) -> None:
        lines = [r.shown for r in self.records if r.level >= self.min_level]
        self._held.clear()
        self.clear()
        self.following = True
        self.unseen = 0
        self.write_lines(lines, scroll_end=True)
        self._show_state()

    @property
    def search(self) -> str:
        return self.log_highlighter.search

    def set_search(self, term: str) -> None:
        """Highlight ``term`` (case-insensitive) wherever it is on the lines shown."""
        self.log_highlighter.search = term
        self._render_line_cache.clear()
        self.refresh()

    def count_matches(self) -> int:
        """How many shown lines contain the search term (a scan of at most ``max_lines`` lines)."""
        term = self.search.lower()
        return sum(term in line.lower() for line in self.lines) if term else 0

    def find(self, forward: bool = True) -> int | None:
        """Scroll to the next (or previous) shown line containing the search term; its index, or None."""
        term = self.search.lower()
        if not term:
            return None
        lines = self.lines
        count = len(lines)
        if not count:
            return None
        start = int(self.scroll_y) + (1 if forward else -1)
        order = range(start, start + count) if forward else range(start, start - count, -1)
        for i in order:
            y = i % count
            if term in lines[y].lower():
                self.scroll_to(y=y, animate=False, immediate=True)
                return y
        return None
