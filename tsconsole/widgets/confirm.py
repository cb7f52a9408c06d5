"""The one confirmation dialog for every destructive action: it names the exact target and change.

Cancel is focused; ``y`` confirms, ``n`` and ``escape`` cancel. It is dismissed with True or False.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmModal(ModalScreen[bool]):
    """``ConfirmModal('Unregister model "digits" version 1.0?', confirm="Unregister")``."""

    DEFAULT_CSS = """
    ConfirmModal {
        align: center middle;
    }
    ConfirmModal > Vertical {
        width: auto;
        min-width: 50;
        max-width: 90%;
        height: auto;
        padding: 1 2;
        border: thick $error;
        background: $surface;
    }
    ConfirmModal #question {
        width: auto;
        text-style: bold;
        margin-bottom: 1;
    }
    ConfirmModal #detail {
        width: auto;
        color: $text-muted;
        margin-bottom: 1;
    }
    ConfirmModal Horizontal {
        width: 100%;
        height: auto;
        align-horizontal: right;
    }
    ConfirmModal Button {
        margin-left: 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="Confirm the change"),
        Binding("n", "answer(False)", "No", id="confirm.no", tooltip="Keep things as they are"),
        Binding("escape", "answer(False)", "Cancel", id="confirm.cancel", tooltip="Keep things as they are"),
    ]

    def __init__(self, question: str, *, detail: str = "", confirm: str = "Confirm") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.confirm_label = confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, id="question", markup=False)
            if self.detail:
                yield Label(self.detail, id="detail", markup=False)
            with Horizontal():
                yield Button("Cancel", id="cancel", variant="default")
                yield Button(self.confirm_label, id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")
