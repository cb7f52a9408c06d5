"""Try it: send one request to a model (a file, dropped or typed, or some text) and show the answer.

``app.push_screen(TryItScreen())`` or ``TryItScreen(model="digits")``. Shows the status code, the latency
and the body (pretty JSON when it is JSON); an error shows TorchServe's own message. Works inside any
App with ``client: tsconsole.client.Client`` and ``read_only: bool`` (predictions are not mutations:
read-only consoles may send them).
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from pathlib import Path
from typing import Any, ClassVar

from rich.json import JSON
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from tsconsole.client import ApiError, Prediction, Unreachable
from tsconsole.messages import ServerError
from tsconsole.paths import paths_from_drop
from tsconsole.screens.base import ConsoleScreen
from tsconsole.widgets.path_input import PathInput

MAX_SHOWN_BYTES = 256 * 1024


def request_body(file: str, text: str) -> tuple[bytes, str | None]:
    """(body, content type) from a file path (read from disk: call it in a thread) or typed text."""
    if file:
        path = Path(file).expanduser()
        return path.read_bytes(), mimetypes.guess_type(path.name)[0]
    try:
        json.loads(text)
    except ValueError:
        return text.encode(), "text/plain"
    return text.encode(), "application/json"


def error_text(prediction: Prediction) -> str:
    """TorchServe's ``{"code", "type", "message"}`` as one line, else the body as text."""
    try:
        body: Any = prediction.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        kind = f"{body['type']}: " if body.get("type") else ""
        return f"{kind}{body['message']}"
    return prediction.text.strip() or "(empty body)"


def describe_body(prediction: Prediction) -> JSON | Text:
    """Pretty JSON when the body is JSON, the text when it is text, a size when it is binary."""
    body = prediction.body
    if len(body) > MAX_SHOWN_BYTES:
        return Text(f"{len(body)} bytes ({prediction.content_type or 'unknown type'}); showing none of it.")
    try:
        return JSON(json.dumps(prediction.json(), ensure_ascii=False), indent=2)
    except ValueError:
        pass
    try:
        return Text(body.decode("utf-8"))
    except UnicodeDecodeError:
        return Text(f"{len(body)} bytes of binary data ({prediction.content_type or 'unknown type'}).")


class TryItScreen(ConsoleScreen):
    """One request at a time to a model of the server."""

    DEFAULT_CSS = """
    TryItScreen {
        padding: 0 1;
    }
    TryItScreen #tryit-title {
        height: 1;
        text-style: bold;
        margin: 0 0 1 0;
    }
    TryItScreen .row {
        height: auto;
        margin: 0 0 1 0;
    }
    TryItScreen .row Label {
        width: 10;
        color: $text-muted;
    }
    TryItScreen #model {
        width: 40;
    }
    TryItScreen #version {
        width: 24;
        margin: 0 0 0 1;
    }
    TryItScreen #file {
        width: 1fr;
    }
    TryItScreen #text {
        height: 5;
        width: 1fr;
    }
    TryItScreen #send {
        margin: 0 1 0 0;
    }
    TryItScreen #meta {
        height: 1;
        margin: 1 0 0 0;
        text-style: bold;
    }
    TryItScreen #meta.-error {
        color: $error;
    }
    TryItScreen #meta.-success {
        color: $success;
    }
    TryItScreen #answer {
        border: round $panel-lighten-2;
        height: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "send", "Send", id="tryit.send", tooltip="Send the request"),
        Binding("escape", "close", "Back", id="tryit.back", tooltip="Close this screen"),
    ]

    class ModelsLoaded(Message):
        def __init__(self, names: list[str]) -> None:
            super().__init__()
            self.names = names

    class Answered(Message):
        def __init__(self, model: str, prediction: Prediction) -> None:
            super().__init__()
            self.model = model
            self.prediction = prediction

    class Failed(Message):
        def __init__(self, message: str, error: Exception | None = None, doing: str = "") -> None:
            super().__init__()
            self.message = message
            self.error = error  # the server's error, for the app's error hub
            self.doing = doing

    def __init__(self, model: str | None = None, *, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.model = model
        self.last_prediction: Prediction | None = None

    def compose_body(self) -> ComposeResult:
        yield Static("Try it: send one request to a model", id="tryit-title")
        with Horizontal(classes="row"):
            yield Label("Model")
            options = [(self.model, self.model)] if self.model else []
            yield Select(options, value=self.model or Select.NULL, prompt="Loading models…", id="model", compact=True)
            yield Input(placeholder="version (default)", id="version", compact=True)
        with Horizontal(classes="row"):
            yield Label("File")
            placeholder = "Drop or paste a file to send (an image, a JSON file…)"
            yield PathInput(placeholder=placeholder, id="file", compact=True)
        with Horizontal(classes="row"):
            yield Label("or text")
            yield TextArea(id="text", soft_wrap=True, show_line_numbers=False)
        with Horizontal(classes="row"):
            yield Button("Send", id="send", variant="primary", tooltip="ctrl+r")
            yield Button("Back", id="back", tooltip="escape")
        yield Static("", id="meta", markup=False)
        with VerticalScroll(id="answer"):
            yield Static("", id="body", markup=False)

    def on_mount(self) -> None:
        self.query_one("#file", PathInput).focus()
        self._load_models()

    @work(exclusive=True, group="tryit-models", name="tryit-models")
    async def _load_models(self) -> None:
        try:
            models = await self.client.list_models()
        except (ApiError, Unreachable) as exc:
            self.post_message(self.Failed(f"Cannot list the models: {exc}", exc, "list the models"))
            return
        self.post_message(self.ModelsLoaded([str(m["modelName"]) for m in models]))

    def on_try_it_screen_models_loaded(self, message: ModelsLoaded) -> None:
        names = list(message.names)
        if self.model and self.model not in names:
            names.insert(0, self.model)
        select = self.query_one("#model", Select)
        select.set_options([(n, n) for n in names])
        select.prompt = "Pick a model" if names else "No models registered"
        if self.model:
            select.value = self.model
        elif len(names) == 1:
            select.value = names[0]

    @on(Select.Changed, "#model")
    def _model_picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.model = event.value

    @on(Input.Submitted, "#file")
    @on(Button.Pressed, "#send")
    def action_send(self) -> None:
        model = self.query_one("#model", Select).value
        if not isinstance(model, str):
            self._show_meta("Pick a model first.", "-error")
            return
        file = self.query_one("#file", PathInput).value.strip()
        text = self.query_one("#text", TextArea).text
        if not file and not text.strip():
            self._show_meta("Give a file (drop one on the File field) or type some text.", "-error")
            return
        version = self.query_one("#version", Input).value.strip() or None
        self._show_meta(f"Sending to {model}…", "")
        self._send(model, version, file, text)

    @work(exclusive=True, group="tryit-send", name="tryit-send")
    async def _send(self, model: str, version: str | None, file: str, text: str) -> None:
        try:
            body, content_type = await asyncio.to_thread(request_body, file, text)
        except OSError as exc:
            self.post_message(self.Failed(f"Cannot read {file}: {exc.strerror or exc}"))
            return
        try:
            prediction = await self.client.predict(model, body, version=version, content_type=content_type)
        except Unreachable as exc:
            self.post_message(self.Failed(str(exc), exc, f"send a request to {model}"))
            return
        self.post_message(self.Answered(model, prediction))

    def on_try_it_screen_answered(self, message: Answered) -> None:
        prediction = message.prediction
        self.last_prediction = prediction
        summary = f"{prediction.status} · {prediction.elapsed_ms:.0f} ms · {prediction.content_type or 'no type'}"
        body = self.query_one("#body", Static)
        if prediction.status >= 400:
            self._show_meta(f"{summary} · {error_text(prediction)}", "-error")
            body.update(Text(prediction.text))
        else:
            self._show_meta(summary, "-success")
            body.update(describe_body(prediction))

    def on_try_it_screen_failed(self, message: Failed) -> None:
        self._show_meta(message.message, "-error")
        if message.error is not None:
            self.post_message(ServerError(message.error, message.doing))  # the app's error hub
        else:
            self.notify(message.message, title="Try it", severity="error", markup=False)

    def _show_meta(self, text: str, kind: str) -> None:
        meta = self.query_one("#meta", Static)
        meta.update(text)
        meta.set_classes(kind)

    def on_paste(self, event: events.Paste) -> None:
        """A drop that no input took (a button had the focus): the file to send."""
        paths = paths_from_drop(event.text)
        if paths:
            event.stop()
            file_input = self.query_one("#file", PathInput)
            file_input.paste_text(event.text)
            file_input.focus()

    @on(Button.Pressed, "#back")
    def action_close(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.dismiss(None)
