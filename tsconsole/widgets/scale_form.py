"""The scale dialog: min (and max) workers of one model version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.validation import Integer
from textual.widgets import Button, Checkbox, Input, Label

from tsconsole.widgets.form_modal import FormModal


@dataclass(frozen=True)
class ScaleRequest:
    min_workers: int
    max_workers: int | None
    synchronous: bool = True


class ScaleModal(FormModal[ScaleRequest]):
    DEFAULT_CSS = """
    ScaleModal {
        align: center middle;
    }
    ScaleModal > Vertical {
        width: 64;
        height: auto;
        padding: 1 2;
        border: thick $primary;
        background: $surface;
    }
    ScaleModal Grid {
        grid-size: 2;
        grid-columns: 16 1fr;
        grid-rows: 3;
        height: auto;
    }
    ScaleModal Grid > Label {
        padding: 1 0;
    }
    ScaleModal #error {
        color: $error;
        height: auto;
    }
    ScaleModal Horizontal {
        height: auto;
        align-horizontal: right;
    }
    ScaleModal Button {
        margin-left: 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="scale.cancel", tooltip="Close without scaling")
    ]

    def __init__(self, target: str, min_workers: int, max_workers: int) -> None:
        super().__init__()
        self.target = target
        self.min_workers = min_workers
        self.max_workers = max_workers

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Scale workers of {self.target}", classes="title", markup=False)
            with Grid():
                yield Label("Min workers")
                yield Input(str(self.min_workers), id="min", validators=[Integer(minimum=0)])
                yield Label("Max workers")
                yield Input(str(self.max_workers), id="max", validators=[Integer(minimum=0)])
                yield Label("")
                yield Checkbox("Wait until done (synchronous)", value=True, id="synchronous")
            yield Label("", id="error")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Scale", id="scale", variant="primary")

    def on_mount(self) -> None:
        field = self.query_one("#min", Input)
        field.focus()
        field.select_all()

    @on(Button.Pressed, "#scale")
    @on(Input.Submitted)
    def _submit(self, event: Button.Pressed | Input.Submitted) -> None:
        event.stop()
        error = self.query_one("#error", Label)
        low, high = self.query_one("#min", Input).value.strip(), self.query_one("#max", Input).value.strip()
        if not low.isdigit() or (high and not high.isdigit()):
            error.update("Workers are whole numbers, 0 or more.")
            return
        minimum, maximum = int(low), int(high) if high else None
        if maximum is not None and maximum < minimum:
            error.update("Max workers cannot be less than min workers.")
            return
        self.dismiss(ScaleRequest(minimum, maximum, self.query_one("#synchronous", Checkbox).value))
