"""The console against servers that cannot give it everything: a plain TorchServe, a refused token, none at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from textual.widgets import Static

from tests.tsconsole.conftest import wait_for
from tsconsole.app import ConsoleApp
from tsconsole.client import Endpoints
from tsconsole.widgets.banner import Banner
from tsconsole.widgets.keyed_table import KeyedTable
from tsconsole.widgets.start_server import StartServerModal
from tsconsole.widgets.system_panel import NEEDS_TSCONSOLE

pytestmark = pytest.mark.asyncio

SIZE = (120, 40)
DESCRIBE = {
    "modelName": "resnet",
    "modelVersion": "1.0",
    "modelUrl": "resnet.mar",
    "minWorkers": 1,
    "maxWorkers": 1,
    "batchSize": 4,
    "maxBatchDelay": 100,
    "workers": [{"id": "9000", "status": "READY", "pid": 1, "memoryUsage": 0, "gpu": False}],
    "jobQueueStatus": {"remainingCapacity": 100, "pendingRequests": 3},
}
INVALID_KEY = {"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed."}


class PlainTorchServe(BaseHTTPRequestHandler):
    """What a TorchServe 0.12 answers to the console: no /console/*, metrics in log mode (an empty page)."""

    refuse_token = False

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: object, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if self.refuse_token:
            self._send(400, INVALID_KEY)
        elif path == "/models":
            self._send(200, {"models": [{"modelName": "resnet", "modelUrl": "resnet.mar"}]})
        elif path in ("/models/resnet", "/models/resnet/all"):
            self._send(200, [DESCRIBE])
        elif path == "/metrics":
            self._send(200, "", "text/plain")
        else:
            self._send(404, {"code": 404, "type": "ResourceNotFoundException", "message": "Not found"})


class RefusingServer(PlainTorchServe):
    refuse_token = True


class OlderTsconsole(PlainTorchServe):
    """A tsconsole server from before ``listeners``: ``/console/system`` without them."""

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/console/system":
            host = {"cpuPercent": 12.5, "cpuCount": 4, "memoryPercent": 30.0}
            self._send(200, {"host": host, "gpus": [], "gpuStatus": "NVML is not available", "workers": []})
        else:
            super().do_GET()


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def plain_torchserve() -> Iterator[str]:
    yield from serve(PlainTorchServe)


@pytest.fixture
def refusing_server() -> Iterator[str]:
    yield from serve(RefusingServer)


@pytest.fixture
def older_tsconsole() -> Iterator[str]:
    yield from serve(OlderTsconsole)


async def test_plain_torchserve_shows_models_only(plain_torchserve: str) -> None:
    url = plain_torchserve
    app = ConsoleApp(Endpoints(url, url, url))
    async with app.run_test(size=SIZE) as pilot:
        models = app.screen.query_one("#models", KeyedTable)
        await wait_for(pilot, lambda: "resnet/1.0" in models.keys, what="the model row")
        assert str(models.get_cell("resnet/1.0", "queue")) == "3"
        assert str(models.get_cell("resnet/1.0", "rps")) == "–"  # log mode: no rates, and no invented numbers
        note = app.screen.query_one("#system-note", Static)
        await wait_for(pilot, lambda: app.system is not None and note.display, what="the system note")
        assert str(note.content) == NEEDS_TSCONSOLE
        assert not app.screen.query_one("#host-cpu").display
        assert not app.screen.query_one("#grpc").display  # no listeners reported: no gRPC line
        assert "prometheus" in str(app.screen.query_one("#models-note", Static).content)
        assert not app.screen.query_one(Banner).has_class("-shown")


async def test_a_server_that_does_not_report_its_listeners_shows_no_grpc_line(older_tsconsole: str) -> None:
    url = older_tsconsole
    app = ConsoleApp(Endpoints(url, url, url))
    async with app.run_test(size=SIZE) as pilot:
        cpu = app.screen.query_one("#host-cpu")
        await wait_for(pilot, lambda: app.system is not None and cpu.display, what="the host figures")
        assert "of 4 cores" in cpu.text  # type: ignore[attr-defined]
        assert app.system is not None and app.system.listeners is None
        assert not app.screen.query_one("#grpc").display


async def test_refused_token_shows_the_banner(refusing_server: str, tmp_path: Path) -> None:
    url = refusing_server
    app = ConsoleApp(Endpoints(url, url, url), key_file=tmp_path / "key_file.json", cwd=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        banner = app.screen.query_one(Banner)
        await wait_for(pilot, lambda: banner.has_class("-auth"), what="the token banner")
        assert "refused the token" in str(banner.content)
        assert not isinstance(app.screen, StartServerModal)  # a server answers: nothing to start


async def test_start_a_server_from_the_console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.e2e.conftest import free_port, make_echo_store

    monkeypatch.setenv("TSCONSOLE_PID_FILE", str(tmp_path / "tsconsole.pid"))
    monkeypatch.setenv("LOG_LOCATION", str(tmp_path / "logs"))
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    (tmp_path / "model_store").mkdir()
    make_echo_store(tmp_path / "model_store")
    app = ConsoleApp(Endpoints(*urls), cwd=tmp_path)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, StartServerModal), what="the start offer")
            await pilot.pause()
            assert await pilot.click("#start")
            await wait_for(pilot, lambda: app.models is not None, timeout=120, what="the started server")
            assert app.problem is None
            assert app.models is not None and app.models.models == ()  # an empty store: no model registered
        record = json.loads((tmp_path / "tsconsole.pid").read_text())
        assert record["management"] == urls[1]
    finally:
        env = dict(os.environ)
        subprocess.run([sys.executable, "-m", "tsconsole", "stop"], env=env, capture_output=True, timeout=120)
