"""The archive wizard, driven like a person: files dropped on the terminal (bracketed paste), against a real
server. The full journey: drop the digits model's folder, build (upload), register, try it, see "3"."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual import events
from textual.app import App
from textual.screen import Screen
from textual.widgets import Button, Input, ProgressBar, Static

from tests.e2e.conftest import DIGITS, ForegroundServer
from tests.tsconsole.conftest import client_for
from tests.tsconsole.conftest import wait_for as until
from tsconsole.client import ApiError, Client, Endpoints
from tsconsole.messages import ServerAnswered, ServerError
from tsconsole.screens.tryit import TryItScreen
from tsconsole.screens.wizard import ArchiveWizard, wizard_for_paste
from tsconsole.widgets.path_input import PathInput

SIZE = (120, 40)
pytestmark = pytest.mark.asyncio


class ScreenApp(App[None]):
    """The smallest app the console's screens need: ``client`` and ``read_only``."""

    def __init__(self, client: Client, screen: Screen, *, read_only: bool = False) -> None:
        super().__init__()
        self.client = client
        self.read_only = read_only
        self.first_screen = screen
        self.hub: list[ServerError | ServerAnswered] = []  # what reached the app's error hub

    def on_mount(self) -> None:
        self.push_screen(self.first_screen)

    def on_server_error(self, message: ServerError) -> None:
        self.hub.append(message)

    def on_server_answered(self, message: ServerAnswered) -> None:
        self.hub.append(message)


def text(widget: Static) -> str:
    return str(widget.content)


def digits_folder(parent: Path) -> Path:
    folder = parent / "my digits"  # a space: the drop must come escaped or quoted
    folder.mkdir()
    for name in ("model.py", "digits_cnn.pth", "digits_handler.py", "index_to_name.json"):
        shutil.copy(DIGITS / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForegroundServer]:
    cwd = tmp_path_factory.mktemp("wizard-server")
    (cwd / "store").mkdir()
    srv = ForegroundServer(cwd, ["--model-store", "store", "--ncs", "--enable-model-api"])
    yield srv
    srv.stop()


async def test_drop_build_upload_register_and_predict(server: ForegroundServer, tmp_path: Path) -> None:
    folder = digits_folder(tmp_path)
    async with client_for(server) as client:
        app = ScreenApp(client, ArchiveWizard())
        async with app.run_test(size=SIZE) as pilot:
            wizard = app.screen
            assert isinstance(wizard, ArchiveWizard) and isinstance(app.focused, PathInput)
            # The terminal delivers a drop as a bracketed paste, here backslash-escaped (iTerm2, kitty...).
            app.post_message(events.Paste(str(folder).replace(" ", "\\ ")))
            model_name = wizard.query_one("#model_name", Input)
            await until(pilot, lambda: model_name.value == "digits_cnn", what="the guess")
            assert wizard.query_one("#serialized_file", Input).value == str(folder / "digits_cnn.pth")
            assert wizard.query_one("#model_file", Input).value == str(folder / "model.py")
            assert wizard.query_one("#handler_file", Input).value == str(folder / "digits_handler.py")
            assert wizard.query_one("#extra_files", Input).value == str(folder / "index_to_name.json")
            assert "digits_handler.py" in text(wizard.query_one("#notes", Static))
            assert not wizard.builds_locally  # no store_dir given: the files are uploaded

            await pilot.press("ctrl+b")
            await until(pilot, lambda: wizard.built_url is not None, what="the upload")
            assert wizard.built_url == "digits_cnn.mar"
            assert (server.cwd / "store" / "digits_cnn.mar").is_file()
            assert "Register it now" in text(wizard.query_one("#status", Static))

            wizard.query_one("#initial_workers", Input).value = "1"
            await pilot.press("ctrl+r")
            await until(pilot, lambda: wizard.registered_model == "digits_cnn", timeout=60, what="registration")
            assert "registered" in text(wizard.query_one("#status", Static)).lower()
            await until(pilot, lambda: app.hub, what="the app's error hub")
            assert [type(m) for m in app.hub] == [ServerAnswered]  # the app toasts it and polls at once

            # Building it again without "Overwrite": the server's archiver says why, in the wizard.
            await pilot.press("ctrl+b")
            status = wizard.query_one("#status", Static)
            await until(pilot, lambda: "already exists" in text(status), what="the refusal")
            assert "Traceback" not in text(status) and status.has_class("-error")
            await until(pilot, lambda: len(app.hub) == 2, what="the error at the app's hub")
            error = app.hub[-1]
            assert isinstance(error, ServerError) and isinstance(error.error, ApiError) and error.error.status == 400

            # Try it: the registered model, a sample image dropped as a file:// URI.
            await pilot.press("ctrl+t")
            await until(pilot, lambda: isinstance(app.screen, TryItScreen), what="the try-it screen")
            tryit = app.screen
            assert isinstance(tryit, TryItScreen) and tryit.model == "digits_cnn"
            sample = DIGITS / "samples" / "digit_3_30.png"
            app.post_message(events.Paste(sample.as_uri() + "\r\n"))
            file_input = tryit.query_one("#file", PathInput)
            await until(pilot, lambda: file_input.value == str(sample), what="the dropped sample")
            await pilot.press("ctrl+r")
            await until(pilot, lambda: tryit.last_prediction is not None, timeout=60, what="the prediction")
            prediction = tryit.last_prediction
            assert prediction is not None and prediction.status == 200, prediction.text
            assert next(iter(prediction.json())) == "3"
            meta = text(tryit.query_one("#meta", Static))
            assert meta.startswith("200 ") and " ms" in meta


async def test_local_build_with_progress_then_refusal(tmp_path: Path) -> None:
    folder = digits_folder(tmp_path)
    (folder / "digits_handler.py").rename(folder / "digits_handler[v2].py")  # not markup, never
    store = tmp_path / "store"
    store.mkdir()
    # A local address and a known store: built here, no server needed for that.
    async with Client(Endpoints(management="http://127.0.0.1:9")) as client:
        app = ScreenApp(client, ArchiveWizard(store_dir=store))
        async with app.run_test(size=SIZE) as pilot:
            wizard = app.screen
            assert isinstance(wizard, ArchiveWizard) and wizard.builds_locally
            # A drop that no input takes (a button has the focus) reaches the screen's on_paste.
            wizard.query_one("#close", Button).focus()
            app.post_message(events.Paste(f"'{folder / 'digits_cnn.pth'}'"))
            model_name = wizard.query_one("#model_name", Input)
            await until(pilot, lambda: model_name.value == "digits_cnn", what="the guess")
            assert wizard.query_one("#model_file", Input).value == str(folder / "model.py")  # found beside it
            assert "digits_handler[v2].py" in text(wizard.query_one("#notes", Static))
            model_name.value = "digits"
            await pilot.press("ctrl+b")
            await until(pilot, lambda: wizard.built_url is not None, what="the local build")
            assert wizard.built_url == "digits.mar" and (store / "digits.mar").is_file()
            bar = wizard.query_one("#progress", ProgressBar)
            assert bar.total is not None and bar.progress == bar.total
            assert "the model store" in text(wizard.query_one("#status", Static))

            await pilot.press("ctrl+b")  # again, without "Overwrite"
            status = wizard.query_one("#status", Static)
            await until(pilot, lambda: status.has_class("-error"), what="the refusal")
            assert "already exists" in text(status) and "Overwrite" in text(status)


async def test_validation_messages_as_typed(tmp_path: Path) -> None:
    async with Client(Endpoints(management="http://127.0.0.1:9")) as client:
        app = ScreenApp(client, ArchiveWizard())
        async with app.run_test(size=SIZE) as pilot:
            wizard = app.screen
            wizard.query_one("#model_name", Input).focus()
            await pilot.press(*"bad name!")
            message = wizard.query_one("#model_name-message", Static)
            assert "Letters, digits" in text(message) and message.has_class("-error")
            await pilot.press(*["backspace"] * 9, *"good")
            assert not message.has_class("-error")

            wizard.query_one("#model_file", Input).focus()
            missing = "nope.py"
            await pilot.press(*missing)
            model_file_message = wizard.query_one("#model_file-message", Static)
            assert f"No such file: {missing}" in text(model_file_message)

            wizard.query_one("#initial_workers", Input).value = "0"
            await pilot.pause()
            assert text(wizard.query_one("#initial_workers-message", Static)) == "At least 1."

            await pilot.press("ctrl+b")  # refused before anything is sent
            status = wizard.query_one("#status", Static)
            await until(pilot, lambda: status.has_class("-error"), what="the refusal")
            assert "Fix the fields" in text(status)
            assert wizard.built_url is None


async def test_read_only_console_cannot_build() -> None:
    async with Client(Endpoints(management="http://127.0.0.1:9")) as client:
        app = ScreenApp(client, ArchiveWizard(), read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            wizard = app.screen
            assert wizard.query_one("#build", Button).disabled
            await pilot.press("ctrl+b")
            await asyncio.sleep(0.1)
            assert wizard.built_url is None and "Read-only" in text(wizard.query_one("#status", Static))


async def test_wizard_for_paste_only_for_paths(tmp_path: Path) -> None:
    assert wizard_for_paste("hello there") is None
    wizard = wizard_for_paste(f"file://{tmp_path}/x.pth", store_dir=tmp_path)
    assert isinstance(wizard, ArchiveWizard)
    assert wizard.initial_paths == [tmp_path / "x.pth"] and wizard.store_dir == tmp_path


class DashboardApp(App[None]):
    """How the console app wires drops: a paste no screen took opens the wizard with those paths."""

    def __init__(self, client: Client, store: Path) -> None:
        super().__init__()
        self.client = client
        self.read_only = False
        self.store = store

    def on_paste(self, event: events.Paste) -> None:
        if isinstance(self.screen, ArchiveWizard):
            return  # the wizard takes its own drops
        if wizard := wizard_for_paste(event.text, store_dir=self.store):
            self.push_screen(wizard)


async def test_a_drop_on_the_app_opens_the_wizard(tmp_path: Path) -> None:
    folder = digits_folder(tmp_path)
    async with Client(Endpoints(management="http://127.0.0.1:9")) as client:
        app = DashboardApp(client, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            app.post_message(events.Paste("some words"))  # not paths: nothing happens
            await pilot.pause()
            assert not isinstance(app.screen, ArchiveWizard)
            app.post_message(events.Paste(f"file://{folder}/digits_cnn.pth".replace(" ", "%20")))
            await until(pilot, lambda: isinstance(app.screen, ArchiveWizard), what="the wizard")
            wizard = app.screen
            assert isinstance(wizard, ArchiveWizard) and wizard.builds_locally
            await until(pilot, lambda: wizard.query_one("#model_name", Input).value == "digits_cnn", what="the guess")
