"""What every console screen shares: header, connection banner, footer with key hints, read-only checks."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from tsconsole.widgets.banner import Banner
from tsconsole.widgets.keyed_table import KeyedTable


class ConsoleScreen(Screen[None]):
    """Subclasses write `compose_body` and name their mutating actions in ``MUTATING``."""

    MUTATING: ClassVar[frozenset[str]] = frozenset()
    """Actions hidden in --read-only mode (``check_action`` returns False: no key, no footer, no palette)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner()
        yield from self.compose_body()
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def read_only(self) -> bool:
        return bool(getattr(self.app, "read_only", False))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in self.MUTATING and self.read_only)

    @property
    def client(self) -> Any:
        return self.app.client  # type: ignore[attr-defined]


class FilteredTableScreen(ConsoleScreen):
    """A screen whose ``#models`` table a ``#filter`` input narrows down (``/`` to type, ``escape`` to clear).

    Subclasses compose both widgets and redraw in `refilter`.
    """

    def refilter(self) -> None:
        raise NotImplementedError

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        if field.value:
            field.value = ""
        field.display = False
        self.query_one("#models", KeyedTable).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self.refilter()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#models", KeyedTable).focus()
