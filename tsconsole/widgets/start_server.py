"""Offered when no server answers at a local address: start the bundled one in the background, or quit."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

DEFAULT_STORE = "model_store"


class StartServerModal(ModalScreen[Path | None]):
    """Dismissed with the model store folder to start with, or None (the app then quits)."""

    DEFAULT_CSS = """
    StartServerModal {
        align: center middle;
    }
    StartServerModal > Vertical {
        width: 84;
        height: auto;
        padding: 1 2;
        border: thick $warning;
        background: $surface;
    }
    StartServerModal .title {
        text-style: bold;
        margin-bottom: 1;
    }
    StartServerModal .hint {
        width: 100%;
        color: $text-muted;
        margin-bottom: 1;
    }
    StartServerModal Horizontal {
        height: auto;
        margin-top: 1;
        align-horizontal: right;
    }
    StartServerModal Button {
        margin-left: 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "not_now", "Not now", id="start.not_now", tooltip="Close and keep retrying"),
    ]

    def __init__(self, address: str, cwd: Path | None = None) -> None:
        super().__init__()
        self.address = address
        self.cwd = cwd or Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"No server answers at {self.address}.", classes="title", markup=False)
            yield Label(
                "Start the bundled model server in the background (on 127.0.0.1, model API enabled)?\n"
                "Model store folder (created if missing):",
                classes="hint",
                markup=False,
            )
            yield Input(f"./{DEFAULT_STORE}", id="store")
            with Horizontal():
                yield Button("Quit", id="quit")
                yield Button("Start server", id="start", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#start", Button).focus()

    def action_not_now(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#quit")
    def _quit(self, event: Button.Pressed) -> None:
        event.stop()
        self.app.exit()

    @on(Button.Pressed, "#start")
    @on(Input.Submitted)
    def _start(self, event: Button.Pressed | Input.Submitted) -> None:
        event.stop()
        text = self.query_one("#store", Input).value.strip() or DEFAULT_STORE
        path = Path(text).expanduser()
        self.dismiss(path if path.is_absolute() else self.cwd / path)
