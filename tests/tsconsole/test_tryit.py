"""The try-it screen against a real server: typed JSON, a dropped file, and TorchServe's error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual import events
from textual.app import App
from textual.screen import Screen
from textual.widgets import Select, Static, TextArea

from tests.e2e.conftest import ForegroundServer
from tests.tsconsole.conftest import client_for
from tests.tsconsole.conftest import wait_for as until
from tsconsole.client import Client, Prediction
from tsconsole.screens.tryit import TryItScreen, describe_body, error_text, request_body
from tsconsole.widgets.path_input import PathInput

SIZE = (120, 40)


class ScreenApp(App[None]):
    def __init__(self, client: Client, screen: Screen) -> None:
        super().__init__()
        self.client = client
        self.read_only = True  # predictions are not mutations: a read-only console may send them
        self.first_screen = screen

    def on_mount(self) -> None:
        self.push_screen(self.first_screen)


@pytest.fixture(scope="module")
def server(echo_server: ForegroundServer) -> ForegroundServer:
    return echo_server


def meta(screen: TryItScreen) -> str:
    return str(screen.query_one("#meta", Static).content)


@pytest.mark.asyncio
async def test_text_then_dropped_file(server: ForegroundServer, tmp_path: Path) -> None:
    async with client_for(server) as client:
        app = ScreenApp(client, TryItScreen())
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            assert isinstance(screen, TryItScreen)
            select = screen.query_one("#model", Select)
            await until(pilot, lambda: select.value == "echo", what="the only model picked")

            screen.query_one("#text", TextArea).text = '{"greeting": "hi"}'
            await pilot.press("ctrl+r")
            await until(pilot, lambda: screen.last_prediction is not None, what="the answer")
            prediction = screen.last_prediction
            assert prediction is not None and prediction.status == 200
            assert prediction.json()["inputs"]["body"][1] == {"greeting": "hi"}  # sent as application/json
            assert meta(screen).startswith("200 · ") and " ms · " in meta(screen)
            assert screen.query_one("#meta", Static).has_class("-success")

            # A dropped file wins over the text; quoted, as GNOME Terminal pastes it.
            sample = tmp_path / "a note.txt"
            sample.write_text("from a file")
            screen.query_one("#file", PathInput).focus()
            app.post_message(events.Paste(f"'{sample}'"))
            await until(pilot, lambda: screen.query_one("#file", PathInput).value == str(sample), what="the drop")
            screen.last_prediction = None
            await pilot.press("enter")  # Enter in the file field sends too
            await until(pilot, lambda: screen.last_prediction is not None, what="the second answer")
            assert screen.last_prediction is not None
            assert screen.last_prediction.json()["inputs"]["body"][1] == "from a file"


@pytest.mark.asyncio
async def test_errors_show_torchserve_messages(server: ForegroundServer) -> None:
    async with client_for(server) as client:
        app = ScreenApp(client, TryItScreen(model="nope"))
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            assert isinstance(screen, TryItScreen)
            await until(pilot, lambda: screen.query_one("#model", Select).value == "nope", what="the model")
            await pilot.press("ctrl+r")  # nothing to send yet
            assert "Give a file" in meta(screen)
            screen.query_one("#text", TextArea).text = "x"
            await pilot.press("ctrl+r")
            await until(pilot, lambda: screen.last_prediction is not None, what="the answer")
            assert screen.last_prediction is not None and screen.last_prediction.status == 404
            assert meta(screen).startswith("404 · ") and "ModelNotFoundException" in meta(screen)
            assert "nope" in meta(screen) and screen.query_one("#meta", Static).has_class("-error")

            screen.query_one("#file", PathInput).value = "/no/such/file.png"
            await pilot.press("ctrl+r")
            await until(pilot, lambda: "Cannot read" in meta(screen), what="the read error")


def test_bodies_and_errors(tmp_path: Path) -> None:
    assert request_body("", '{"a": 1}') == (b'{"a": 1}', "application/json")
    assert request_body("", "hello") == (b"hello", "text/plain")
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG")
    assert request_body(str(image), "ignored") == (b"\x89PNG", "image/png")

    def answer(status: int, body: bytes, kind: str = "application/json") -> Prediction:
        return Prediction(status=status, body=body, content_type=kind, elapsed_ms=1.0)

    error = {"code": 503, "type": "ServiceUnavailableException", "message": 'Model "m" has no worker to serve'}
    assert error_text(answer(503, json.dumps(error).encode())) == f"{error['type']}: {error['message']}"
    assert error_text(answer(500, b"plain failure", "text/plain")) == "plain failure"
    assert "binary" in str(describe_body(answer(200, b"\xff\xfe\x00", "application/octet-stream")))
    assert '"3"' in str(describe_body(answer(200, b'{"3": 0.99}')).text)
