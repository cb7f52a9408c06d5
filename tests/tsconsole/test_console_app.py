"""The console against a real server: Pilot drives the app as a person would, the API checks the result."""

from __future__ import annotations

import httpx
import pytest
from textual.widgets import Input, Static

from tests.e2e.conftest import ForegroundServer
from tests.tsconsole.conftest import wait_for, workers_of
from tsconsole.app import ActionsProvider, ConsoleApp
from tsconsole.client import Endpoints
from tsconsole.screens.help import HelpScreen
from tsconsole.screens.models import ModelsScreen
from tsconsole.widgets.banner import Banner
from tsconsole.widgets.confirm import ConfirmModal
from tsconsole.widgets.keyed_table import KeyedTable
from tsconsole.widgets.scale_form import ScaleModal

pytestmark = pytest.mark.asyncio

SIZE = (120, 40)


def console(server: ForegroundServer, **kwargs) -> ConsoleApp:
    urls = server.urls
    endpoints = Endpoints(urls["inference"], urls["management"], urls["metrics"])
    return ConsoleApp(endpoints, key_file=server.cwd / "key_file.json", cwd=server.cwd, **kwargs)


def table(app: ConsoleApp, selector: str = "#models") -> KeyedTable:
    return app.screen.query_one(selector, KeyedTable)


def cell(app: ConsoleApp, key: str, column: str, selector: str = "#models") -> str:
    return str(table(app, selector).get_cell(key, column))


def has_row(app: ConsoleApp, key: str, selector: str = "#models") -> bool:
    return key in table(app, selector).keys


def header_of(app: ConsoleApp, selector: str = "#models") -> list[str]:
    return [str(c.label) for c in table(app, selector).columns.values()]


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def test_dashboard_lists_models_with_rates_and_keeps_the_cursor(console_server: ForegroundServer) -> None:
    app = console(console_server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: has_row(app, "echo/1.0") and has_row(app, "scaleme/1.0"), what="model rows")
        assert cell(app, "echo/1.0", "default") == "*"
        await wait_for(pilot, lambda: cell(app, "echo/1.0", "workers") == "1/1", what="echo's worker")
        assert cell(app, "echo/1.0", "status") == "READY"
        assert cell(app, "echo/1.0", "batch") == "8"
        assert cell(app, "echo/1.0", "queue") == "0"
        assert "Req/s" in header_of(app)

        # traffic shows up as requests/s and latency percentiles on a later refresh
        async with httpx.AsyncClient(timeout=60) as client:
            for _ in range(3):
                r = await client.post(f"{console_server.inference}/predictions/echo", json={"x": 1})
                assert r.status_code == 200, r.text
        await wait_for(pilot, lambda: cell(app, "echo/1.0", "rps") not in ("–", "0.0"), what="a request rate")
        assert "p50 ms" in header_of(app)  # this server (prometheus mode) exports tsconsole's latency histogram

        # the cursor stays on the row the user chose across refreshes
        models = table(app)
        models.focus()
        assert models.select_key("scaleme/1.0")
        fetched = app.pollers["models"].fetches
        await pilot.press("space")  # refresh now
        await wait_for(pilot, lambda: app.pollers["models"].fetches > fetched, what="a refresh")
        assert models.selected_key == "scaleme/1.0"

        # / filters; escape shows every model again
        await pilot.press("slash")
        await pilot.press(*"scalem")
        await wait_for(pilot, lambda: table(app).keys == ["scaleme/1.0"], what="the filter")
        await pilot.press("escape")
        assert not app.screen.query_one("#filter", Input).value
        await wait_for(pilot, lambda: has_row(app, "echo/1.0"), what="the rows after clearing the filter")

        # p pauses the refreshing
        await pilot.press("p")
        assert app.pollers["models"].paused and "paused" in app.sub_title
        await pilot.press("p")
        assert not app.pollers["models"].paused


async def test_dashboard_shows_p50_p99_from_the_servers_latency_histogram(console_server: ForegroundServer) -> None:
    app = console(console_server)
    async with app.run_test(size=SIZE) as pilot:

        def p50() -> str:
            return cell(app, "echo/1.0", "p50") if "p50 ms" in header_of(app) else "–"

        await wait_for(pilot, lambda: has_row(app, "echo/1.0"), what="echo's row")
        await wait_for(pilot, lambda: cell(app, "echo/1.0", "workers") == "1/1", what="echo's worker")
        async with httpx.AsyncClient(timeout=60) as client:
            for i in range(8):
                r = await client.post(f"{console_server.inference}/predictions/echo", json={"x": i})
                assert r.status_code == 200, r.text
        await wait_for(pilot, lambda: is_number(p50()), what="a numeric p50")
        assert header_of(app)[-3:] == ["Req/s", "p50 ms", "p99 ms"]
        p99 = cell(app, "echo/1.0", "p99")
        assert is_number(p99) and 0 < float(p50()) <= float(p99) < 60_000, (p50(), p99)
        note = str(app.screen.query_one("#models-note", Static).content)
        assert "p50/p99" in note and "average" not in note

        # no request in the next interval: no percentile, not a stale one
        await wait_for(pilot, lambda: p50() == "–", what="no p50 for an idle interval")
        assert cell(app, "echo/1.0", "p99") == "–"
        assert "p50 ms" in header_of(app)  # the columns stay


async def test_the_latency_columns_follow_what_the_server_exports(unused_tcp_port: int) -> None:
    """No histogram (a real TorchServe, legacy mode): the average; with one: p50/p99, the cursor kept."""
    import dataclasses

    from tsconsole.pollers import ModelsSnapshot, model_version
    from tsconsole.screens.dashboard import LATENCY_NOTE, PERCENTILE_NOTE

    url = f"http://127.0.0.1:{unused_tcp_port}"
    app = ConsoleApp(Endpoints(url, url, url), offer_start=False)
    entries = [{"modelName": n, "modelVersion": "1.0", "minWorkers": 1, "workers": []} for n in ("a", "b", "c")]
    rows = tuple(
        dataclasses.replace(model_version(e, "1.0"), requests_per_s=4.0, latency_ms=3.25, p50_ms=2.5, p99_ms=9.75)
        for e in entries
    )
    async with app.run_test(size=SIZE) as pilot:
        app.workers.cancel_group(app, "pollers")
        await pilot.pause()
        note = app.screen.query_one("#models-note", Static)

        app.models = ModelsSnapshot(rows, metrics_available=True)
        await pilot.pause()
        assert header_of(app)[-2:] == ["Req/s", "Latency avg ms"]
        assert cell(app, "b/1.0", "latency") == "3.2" and LATENCY_NOTE in str(note.content)
        assert table(app).select_key("b/1.0")

        app.models = ModelsSnapshot(rows, metrics_available=True, latency_histogram=True)
        await pilot.pause()
        assert header_of(app)[-3:] == ["Req/s", "p50 ms", "p99 ms"]
        assert (cell(app, "b/1.0", "p50"), cell(app, "b/1.0", "p99")) == ("2.5", "9.8")
        assert table(app).keys == ["a/1.0", "b/1.0", "c/1.0"] and table(app).selected_key == "b/1.0"
        assert PERCENTILE_NOTE in str(note.content)

        idle = tuple(dataclasses.replace(m, p50_ms=None, p99_ms=None) for m in rows)
        app.models = ModelsSnapshot(idle, metrics_available=True, latency_histogram=True)
        await pilot.pause()
        assert cell(app, "a/1.0", "p50") == "–" and cell(app, "a/1.0", "p99") == "–"

        app.models = ModelsSnapshot(rows, metrics_available=True)
        await pilot.pause()
        assert "p50 ms" not in header_of(app) and cell(app, "c/1.0", "latency") == "3.2"
        assert table(app).selected_key == "b/1.0"


async def test_system_panel_without_gpu_says_why(console_server: ForegroundServer) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"{console_server.urls['management']}/console/system")
    assert r.status_code == 200, r.text
    system = r.json()
    if system["gpuStatus"] == "ok" and system["gpus"]:
        pytest.skip("this machine has a GPU")
    app = console(console_server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.system is not None, what="system figures")
        status = app.screen.query_one("#gpu-status", Static)
        await wait_for(pilot, lambda: status.display and str(status.content).startswith("GPU:"), what="GPU note")
        assert system["gpuStatus"] in str(status.content) or "none" in str(status.content)
        cpu = app.screen.query_one("#host-cpu")
        assert cpu.display and "cores" in cpu.text  # type: ignore[attr-defined]
        # the worker processes are listed, keyed by model version and worker id
        await wait_for(pilot, lambda: any(k.startswith("echo/") for k in table(app, "#workers").keys), what="workers")


async def test_system_panel_shows_the_servers_grpc_addresses(console_server: ForegroundServer) -> None:
    app = console(console_server)
    async with app.run_test(size=SIZE) as pilot:
        grpc = app.screen.query_one("#grpc")
        await wait_for(pilot, lambda: app.system is not None and grpc.display, what="the gRPC addresses")
        urls = console_server.urls
        targets = str(app.screen.query_one("#grpc-targets", Static).content)
        assert targets == f"{urls['grpc_inference']}  inference\n{urls['grpc_management']}  management"


async def test_scale_through_the_ui(console_server: ForegroundServer) -> None:
    app = console(console_server)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        assert isinstance(app.screen, ModelsScreen)
        await wait_for(pilot, lambda: has_row(app, "scaleme/1.0"), what="scaleme's row")
        assert table(app).select_key("scaleme/1.0")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ScaleModal), what="the scale dialog")
        app.screen.query_one("#min", Input).value = "2"
        app.screen.query_one("#max", Input).value = "2"
        await pilot.click("#scale")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen), what="the dialog to close")
        for _ in range(400):
            if await workers_of(console_server, "scaleme") == 2:
                break
            await pilot.pause(0.1)
        assert await workers_of(console_server, "scaleme") == 2
        await wait_for(pilot, lambda: cell(app, "scaleme/1.0", "workers") == "2/2", what="2/2 in the table")

        # scaling to 0 is destructive: it asks first, naming the target; escape keeps the workers
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ScaleModal), what="the scale dialog")
        app.screen.query_one("#min", Input).value = "0"
        app.screen.query_one("#max", Input).value = "0"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the confirmation")
        assert app.screen.question == 'Scale model "scaleme" version 1.0 to 0 workers?'
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert await workers_of(console_server, "scaleme") == 2


async def test_register_and_set_default_through_the_ui(console_server: ForegroundServer) -> None:
    from tsconsole.widgets.register_form import RegisterModal

    mgmt = console_server.urls["management"]
    async with httpx.AsyncClient(timeout=60) as client:
        for version in ("1.0", "2.0"):
            r = await client.post(f"{mgmt}/models", params={"url": f"uimulti_v{version}.mar", "initial_workers": 0})
            assert r.status_code == 200, r.text
    app = console(console_server)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RegisterModal), what="the register dialog")
        await pilot.pause()
        app.screen.query_one("#url", Input).value = "uireg.mar"
        app.screen.query_one("#initial_workers", Input).value = "0"
        await pilot.click("#register")
        await wait_for(pilot, lambda: has_row(app, "uireg/1.0"), what="the registered model's row")
        assert await workers_of(console_server, "uireg") is not None

        # * makes the chosen version the default
        await wait_for(pilot, lambda: has_row(app, "uimulti/2.0"), what="uimulti's rows")
        assert cell(app, "uimulti/1.0", "default") == "*"
        assert table(app).select_key("uimulti/2.0")
        await pilot.press("asterisk")
        await wait_for(pilot, lambda: cell(app, "uimulti/2.0", "default") == "*", what="the new default")
        assert cell(app, "uimulti/1.0", "default") == ""
        async with httpx.AsyncClient(timeout=60) as client:
            r = await client.get(f"{mgmt}/models/uimulti")
        assert r.json()[0]["modelVersion"] == "2.0"


async def test_unregister_needs_confirmation(console_server: ForegroundServer) -> None:
    app = console(console_server)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await wait_for(pilot, lambda: has_row(app, "dropme/1.0"), what="dropme's row")
        assert table(app).select_key("dropme/1.0")
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the confirmation")
        modal = app.screen
        assert modal.question == 'Unregister model "dropme" version 1.0?'
        assert app.focused is not None and app.focused.id == "cancel"  # Cancel is focused
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen), what="the dialog to close")
        await pilot.pause(0.3)
        assert await workers_of(console_server, "dropme") is not None  # still registered

        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the confirmation")
        await pilot.press("y")
        for _ in range(300):
            if await workers_of(console_server, "dropme") is None:
                break
            await pilot.pause(0.1)
        assert await workers_of(console_server, "dropme") is None
        await wait_for(pilot, lambda: not has_row(app, "dropme/1.0"), what="the row to go")


async def test_command_palette_mirrors_the_actions(console_server: ForegroundServer) -> None:
    app = console(console_server)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await wait_for(pilot, lambda: has_row(app, "palette/1.0"), what="palette's row")
        assert table(app).select_key("palette/1.0")
        names = [name for name, _, _ in ActionsProvider(app.screen)._commands()]
        for expected in ("Register", "Scale", "Default", "Unregister", "Dashboard", "Help", "Pause", "Refresh"):
            assert expected in names
        await pilot.press("ctrl+p")
        await pilot.press(*"unregister")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the confirmation from the palette")
        assert app.screen.question == 'Unregister model "palette" version 1.0?'
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen), what="the dialog to close")

        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help screen")
        from textual.widgets import DataTable

        rows = app.screen.query_one(DataTable)
        actions = {str(rows.get_row_at(i)[1]) for i in range(rows.row_count)}
        for expected in ("Dashboard", "Models", "Help", "Pause", "Refresh", "Quit", "Filter", "Command palette"):
            assert expected in actions
        assert any(a.startswith("Unregister") for a in actions)
        await pilot.press("escape")
        assert isinstance(app.screen, ModelsScreen)
    assert await workers_of(console_server, "palette") is not None


async def test_read_only_hides_the_mutating_actions(console_server: ForegroundServer) -> None:
    app = console(console_server, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await wait_for(pilot, lambda: has_row(app, "echo/1.0"), what="echo's row")
        table(app).select_key("echo/1.0")
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        assert not actions & {"register", "scale", "set_default", "unregister"}
        assert "switch_mode('dashboard')" in actions
        names = [name for name, _, _ in ActionsProvider(app.screen)._commands()]
        assert not {"Register", "Scale", "Default", "Unregister"} & set(names)
        assert not app.screen.query_one("#actions").display
        for key in ("u", "s", "r", "asterisk"):
            await pilot.press(key)
        await pilot.pause(0.2)
        assert isinstance(app.screen, ModelsScreen)  # no dialog opened
        assert "read-only" in app.sub_title
    assert await workers_of(console_server, "echo") is not None


async def test_unreachable_server_shows_the_banner(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    app = ConsoleApp(Endpoints(url, url, url), offer_start=False)
    async with app.run_test(size=SIZE) as pilot:
        banner = app.screen.query_one(Banner)
        await wait_for(pilot, lambda: banner.has_class("-shown"), what="the banner")
        assert f"No server answers at {url}" in str(banner.content)
        assert app.models is None


async def test_unreachable_local_server_offers_to_start_one(unused_tcp_port: int) -> None:
    from tsconsole.widgets.start_server import StartServerModal

    url = f"http://127.0.0.1:{unused_tcp_port}"
    app = ConsoleApp(Endpoints(url, url, url))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, StartServerModal), what="the start offer")
        assert app.screen.query_one("#store", Input).value == "./model_store"
        await pilot.press("escape")  # not now: the banner stays, and says how to start one later
        banner = app.screen.query_one(Banner)
        await wait_for(pilot, lambda: banner.has_class("-shown"), what="the banner")
        assert "press c to start a local one" in str(banner.content)
