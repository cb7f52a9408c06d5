"""The register dialog: a model archive from the model store or a URL, with TorchServe's options."""

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
class RegisterRequest:
    url: str
    name: str | None = None
    initial_workers: int | None = None
    batch_size: int | None = None
    max_batch_delay: int | None = None
    synchronous: bool = True

    def params(self) -> dict[str, object]:
        """The query parameters of ``POST /models``, as TorchServe names them."""
        return {
            "model_name": self.name,
            "initial_workers": self.initial_workers,
            "batch_size": self.batch_size,
            "max_batch_delay": self.max_batch_delay,
            "synchronous": self.synchronous,
        }


class RegisterModal(FormModal[RegisterRequest]):
    DEFAULT_CSS = """
    RegisterModal {
        align: center middle;
    }
    RegisterModal > Vertical {
        width: 80;
        height: auto;
        padding: 1 2;
        border: thick $primary;
        background: $surface;
    }
    RegisterModal Grid {
        grid-size: 2;
        grid-columns: 22 1fr;
        grid-rows: 3;
        height: auto;
    }
    RegisterModal Grid > Label {
        padding: 1 0;
    }
    RegisterModal #error {
        color: $error;
        height: auto;
    }
    RegisterModal Horizontal {
        height: auto;
        align-horizontal: right;
    }
    RegisterModal Button {
        margin-left: 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="register.cancel", tooltip="Close without registering")
    ]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Register a model", classes="title")
            with Grid():
                yield Label("Archive or URL")
                yield Input(placeholder="name.mar in the model store, or a URL", id="url")
                yield Label("Model name")
                yield Input(placeholder="from the archive", id="name")
                yield Label("Initial workers")
                yield Input(placeholder="server default", id="initial_workers", validators=[Integer(minimum=0)])
                yield Label("Batch size")
                yield Input(placeholder="1", id="batch_size", validators=[Integer(minimum=1)])
                yield Label("Max batch delay (ms)")
                yield Input(placeholder="100", id="max_batch_delay", validators=[Integer(minimum=0)])
                yield Label("")
                yield Checkbox("Wait until the workers are up (synchronous)", value=True, id="synchronous")
            yield Label("", id="error")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Register", id="register", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#url", Input).focus()

    @on(Button.Pressed, "#register")
    @on(Input.Submitted)
    def _submit(self, event: Button.Pressed | Input.Submitted) -> None:
        event.stop()
        request = self._request()
        if request is not None:
            self.dismiss(request)

    def _integer(self, field: str) -> int | None:
        text = self.query_one(f"#{field}", Input).value.strip()
        return int(text) if text else None

    def _request(self) -> RegisterRequest | None:
        error = self.query_one("#error", Label)
        url = self.query_one("#url", Input).value.strip()
        if not url:
            error.update("An archive name or URL is needed.")
            return None
        for field in ("initial_workers", "batch_size", "max_batch_delay"):
            widget = self.query_one(f"#{field}", Input)
            if widget.value.strip() and not widget.validate(widget.value.strip()).is_valid:
                error.update(f"{field.replace('_', ' ').capitalize()} must be a whole number.")
                widget.focus()
                return None
        return RegisterRequest(
            url=url,
            name=self.query_one("#name", Input).value.strip() or None,
            initial_workers=self._integer("initial_workers"),
            batch_size=self._integer("batch_size"),
            max_batch_delay=self._integer("max_batch_delay"),
            synchronous=self.query_one("#synchronous", Checkbox).value,
        )
