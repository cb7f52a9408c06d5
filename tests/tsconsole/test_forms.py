"""The form dialogs close with no result on Cancel and on escape, and hand back what was typed."""

from __future__ import annotations

import pytest
from textual.app import App

from tsconsole.widgets.register_form import RegisterModal
from tsconsole.widgets.scale_form import ScaleModal

pytestmark = pytest.mark.asyncio


class Harness(App[None]):
    def __init__(self, make) -> None:
        super().__init__()
        self.make = make
        self.results: list[object] = []

    def open(self) -> None:
        self.push_screen(self.make(), self.results.append)


@pytest.mark.parametrize("make", [lambda: RegisterModal(), lambda: ScaleModal("echo 1.0", 1, 1)])
async def test_cancel_and_escape_close_without_a_result(make) -> None:
    app = Harness(make)
    async with app.run_test(size=(100, 40)) as pilot:
        app.open()
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        app.open()
        await pilot.pause()
        await pilot.click("#cancel")
        await pilot.pause()
        assert app.results == [None, None]
        assert not isinstance(app.screen, (RegisterModal, ScaleModal))
