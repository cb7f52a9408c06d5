"""Live tail of the server's logs: pick a source (or ``all``, merged and tagged), filter by level, search.

``app.push_screen(LogsScreen())`` (or ``LogsScreen(source="access_log")``). Each followed file has its
own named worker reading `Client.follow_log` (server-sent events) into a `LogView`, which batches,
bounds and follows. Works inside any App with ``client: tsconsole.client.Client`` and ``read_only: bool``.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Select, Static

from tsconsole.client import ApiError, Unreachable
from tsconsole.messages import ServerError
from tsconsole.screens.base import ConsoleScreen
from tsconsole.widgets.log_view import LEVEL_RANK, DuplicateFilter, LogView

ALL = "all"
BACKLOG_LINES = 200
RETRY_S = (1.0, 2.0, 5.0)
YIELD_EVERY = 500
STATUS_EVERY_S = 0.5
LEVEL_CHOICES = (("all levels", "TRACE"), ("INFO and up", "INFO"), ("WARN and up", "WARN"), ("ERROR only", "ERROR"))


def tag(name: str) -> str:
    """``access_log`` -> ``access``: the tag shown before each line when sources are merged."""
    return name.removesuffix("_log")


class LogsScreen(ConsoleScreen):
    """The server's log files, live."""

    DEFAULT_CSS = """
    LogsScreen #logs-bar {
        height: auto;
        padding: 0 1;
    }
    LogsScreen LogView {
        height: 1fr;
    }
    LogsScreen #logs-bar Select {
        width: 24;
        margin: 0 1 0 0;
    }
    LogsScreen #logs-bar #level {
        width: 20;
    }
    LogsScreen #search {
        width: 1fr;
    }
    LogsScreen #logs-status {
        height: 1;
        padding: 0 1;
        color: $text-muted;
        background: $panel;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "cycle_source", "Source", id="logs.source", tooltip="Next log source (or pick it in the list)"),
        Binding("l", "cycle_level", "Level", id="logs.level", tooltip="Next level filter"),
        Binding("slash", "search", "Search", id="logs.search", tooltip="Search and highlight"),
        Binding("n", "find(True)", "Next match", id="logs.next", tooltip="Scroll to the next match"),
        Binding("N,shift+n", "find(False)", "Previous match", id="logs.previous", show=False),
        Binding("f", "follow", "Follow", id="logs.follow", tooltip="Follow new lines (also End)"),
        Binding("escape", "back", "Back", id="logs.back", tooltip="Leave the search, or the screen"),
    ] + [
        Binding(str(i), f"source_index({i - 1})", f"Source {i}", show=False, id=f"logs.source_{i}")
        for i in range(1, 10)
    ]

    class SourcesLoaded(Message):
        def __init__(self, names: list[str]) -> None:
            super().__init__()
            self.names = names

    class FollowFailed(Message):
        def __init__(self, name: str, message: str, error: Exception) -> None:
            super().__init__()
            self.name = name
            self.message = message
            self.error = error

    def __init__(
        self,
        source: str = ALL,
        *,
        lines: int = BACKLOG_LINES,
        max_lines: int = 10_000,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id)
        self.source = source
        self.backlog = lines
        self.max_lines = max_lines
        self.names: list[str] = []
        self._failed: set[str] = set()

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="logs-bar"):
            yield Select([(ALL, ALL)], value=ALL, allow_blank=False, id="source", compact=True)
            yield Select(LEVEL_CHOICES, value="TRACE", allow_blank=False, id="level", compact=True)
            yield Input(placeholder="/ search (highlights; Enter: next match)", id="search", compact=True)
        yield LogView(max_lines=self.max_lines, id="log")
        yield Static("Loading the server's logs…", id="logs-status", markup=False)

    def on_mount(self) -> None:
        self.log_view.focus()
        self._load_sources()
        self.set_interval(STATUS_EVERY_S, self._update_status, name="logs-status")

    # ---- sources ------------------------------------------------------------------------------------

    @work(exclusive=True, group="logs-sources", name="logs-sources")
    async def _load_sources(self) -> None:
        try:
            files = await self.client.log_files()
        except (ApiError, Unreachable) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            if isinstance(exc, ApiError) and exc.status == 404:
                message = "This server has no log API (a plain TorchServe?): read its log files directly."
            self.post_message(self.FollowFailed("", message, exc))
            return
        self.post_message(self.SourcesLoaded([str(f["name"]) for f in files]))

    def on_logs_screen_sources_loaded(self, message: SourcesLoaded) -> None:
        self.names = message.names
        select = self.query_one("#source", Select)
        select.set_options([(ALL, ALL)] + [(n, n) for n in self.names])
        if self.source not in self.names:
            self.source = ALL
        select.value = self.source
        self.start(self.source)

    @property
    def merged(self) -> list[str]:
        """What ``all`` follows: every log but the metrics ones."""
        return [n for n in self.names if "metrics" not in n]

    def start(self, source: str) -> None:
        """Follow ``source`` (a log name, or ``all``) from its last ``lines`` lines on."""
        self.source = source
        self.workers.cancel_group(self, "logs-follow")
        names = self.merged if source == ALL else [source]
        view = self.log_view
        view.reset(
            tag_sources=len(names) > 1,
            tag_width=max((len(tag(n)) for n in names), default=6),
            merge=len(names) > 1,
        )
        self._failed.clear()
        for log_name in names:
            self.run_worker(
                self._follow(log_name), group="logs-follow", name=f"logs-follow-{log_name}", exit_on_error=False
            )
        self._update_status()

    async def _follow(self, name: str) -> None:
        """Read one file's stream into the view; reconnect (without the backlog) when it breaks."""
        view = self.log_view
        source = tag(name)
        lines = self.backlog
        merged = self.merged if self.source == ALL else [name]
        duplicates = DuplicateFilter(n for n in merged if n != name)
        keep = duplicates.keep
        count = 0
        attempt = 0
        while True:
            try:
                async for line in self.client.follow_log(name, lines=lines):
                    if keep(line):
                        view.push(source, line)
                    if attempt:
                        attempt = 0
                        self._failed.discard(name)  # working again: a later failure toasts again
                    count += 1
                    if count % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # buffered lines never suspend the loop: let others run
                lines = 0  # the server ended the stream (stopping?): reconnect for the new lines only
            except (ApiError, Unreachable) as exc:
                message = exc.message if isinstance(exc, ApiError) else str(exc)
                self.post_message(self.FollowFailed(name, message, exc))
                lines = 0
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            attempt += 1

    def on_logs_screen_follow_failed(self, message: FollowFailed) -> None:
        if message.name in self._failed:
            return  # one toast per source until it works again
        self._failed.add(message.name)
        what = f"Log {message.name}" if message.name else "Logs"
        doing = f"follow the log {message.name}" if message.name else "list the server's logs"
        self.post_message(ServerError(message.error, doing))  # the app's error hub: banner or toast
        self.query_one("#logs-status", Static).update(f"{what}: {message.message}")

    @on(Select.Changed, "#source")
    def _source_picked(self, event: Select.Changed) -> None:
        value = event.select.value  # now, not when the message was sent (set_options sends one too)
        if self.names and isinstance(value, str) and value != self.source:
            self.start(value)

    def action_cycle_source(self) -> None:
        choices = [ALL, *self.names]
        self.action_source_index((choices.index(self.source) + 1) % len(choices) if self.source in choices else 0)

    def action_source_index(self, index: int) -> None:
        choices = [ALL, *self.names]
        if 0 <= index < len(choices):
            self.query_one("#source", Select).value = choices[index]  # Select.Changed starts it

    # ---- level and search -----------------------------------------------------------------------------

    @on(Select.Changed, "#level")
    def _level_picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.log_view.set_min_level(LEVEL_RANK[event.value])
            self._update_status()

    def action_cycle_level(self) -> None:
        select = self.query_one("#level", Select)
        values = [value for _, value in LEVEL_CHOICES]
        current = values.index(select.value) if select.value in values else 0
        select.value = values[(current + 1) % len(values)]

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.log_view.set_search(event.value.strip())
        self._update_status()

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.action_find(True)

    def action_find(self, forward: bool) -> None:
        if self.log_view.find(forward) is None and self.log_view.search:
            self.notify(f"No line contains {self.log_view.search!r}.", severity="warning", timeout=2, markup=False)

    def action_follow(self) -> None:
        self.log_view.action_follow()
        self.log_view.focus()

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_focus:
            self.log_view.focus()
        elif len(self.app.screen_stack) > 1:
            self.dismiss(None)

    def on_log_view_follow_changed(self) -> None:
        self._update_status()

    def _update_status(self) -> None:
        view = self.log_view
        level = self.query_one("#level", Select).value
        keys = f"1-{len(self.names) + 1} " if self.names else ""
        parts = [f"source: {self.source}", f"level: {level}", f"{view.line_count} lines", f"keys: {keys}s l / n f"]
        if view.search:
            count = view.count_matches()
            parts.insert(3, f"{count} match{'es' if count != 1 else ''} {view.search!r}")
        self.query_one("#logs-status", Static).update("  ·  ".join(parts))
