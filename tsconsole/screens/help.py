"""``?``: every key binding of the console, where it works and what it does."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

ALWAYS = [
    ("ctrl+p", "Command palette", "Everywhere", "Search every action by name"),
    ("tab / shift+tab", "Next / previous panel", "Everywhere", "Move the focus; the mouse works too"),
    ("↑ ↓ pgup pgdn home end", "Move", "Tables", "Choose a row (the choice survives refreshes)"),
    ("enter", "Open", "Tables", "Open the chosen model version"),
]


def binding_rows(
    where: str, owner: type[Any], app: Any, read_only: bool, mutating_actions: frozenset[str] = frozenset()
) -> list[tuple[str, str, str, str]]:
    """One row per action of ``owner.BINDINGS`` (keys of the same action joined)."""
    mutating = set(getattr(owner, "MUTATING", ())) | mutating_actions
    rows: dict[str, list[Any]] = {}
    for binding in Binding.make_bindings(getattr(owner, "BINDINGS", [])):
        if binding.system:
            continue
        key = app.get_key_display(binding) if app is not None else binding.key
        row = rows.get(binding.action)
        if row is None:
            text = binding.description or binding.action
            if binding.action in mutating:
                text += " (off: read-only)" if read_only else " (changes the server)"
            rows[binding.action] = [key, text, where, binding.tooltip]
        else:
            row[0] = f"{row[0]} / {key}"
    return [tuple(row) for row in rows.values()]  # type: ignore[misc]


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > Vertical {
        width: 95%;
        height: 90%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen .title {
        text-style: bold;
        padding: 0 0 1 0;
    }
    HelpScreen DataTable {
        height: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close", tooltip="Back to the console"),
    ]

    def __init__(
        self,
        sections: list[tuple[str, type[Any]]],
        *,
        read_only: bool = False,
        mutating_actions: frozenset[str] = frozenset(),
    ) -> None:
        """``sections``: (where, class with BINDINGS); ``mutating_actions``: app actions that change the server."""
        super().__init__()
        self.sections = sections
        self.read_only = read_only
        self.mutating_actions = mutating_actions

    def compose(self) -> ComposeResult:
        with Vertical():
            note = "  (read-only mode: actions that change the server are off)" if self.read_only else ""
            yield Label(f"Key bindings{note}", classes="title", markup=False)
            yield DataTable(id="bindings", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Key", "Action", "Where", "What it does")
        for where, owner in self.sections:
            for row in binding_rows(where, owner, self.app, self.read_only, self.mutating_actions):
                table.add_row(*row)
        for row in ALWAYS:
            table.add_row(*row)
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
