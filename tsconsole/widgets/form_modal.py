"""What every dialog with a form shares: a Cancel button and ``escape`` close it with no result."""

from __future__ import annotations

from typing import TypeVar

from textual import on
from textual.screen import ModalScreen
from textual.widgets import Button

Result = TypeVar("Result")


class FormModal(ModalScreen[Result | None]):
    """Subclasses bind ``escape`` to ``cancel`` (with their own binding id) and compose a ``#cancel`` button."""

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)
