"""Registering from a URL against a real `tsconsole serve` process, with a canary HTTP server on loopback
that records every request it gets: refused URLs are never fetched, redirects are checked hop by hop,
special addresses and oversized archives are refused, and a failure leaves nothing in the model store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.e2e.conftest import ForegroundServer, make_echo_store

MAX_DOWNLOAD = 200_000


class Canary:
    """Serves an archive, redirects and an oversized body; remembers every path asked for."""

    def __init__(self, archive: bytes) -> None:
        self.paths: list[str] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canary.paths.append(self.path)
                port = self.server.server_address[1]
                if self.path == "/echo.mar":
                    self._send(200, archive)
                elif self.path == "/huge.mar":
                    self._send(200, b"x" * (MAX_DOWNLOAD * 3))
                elif self.path == "/hop.mar":  # to this server again: allowed
                    self._redirect("/echo.mar")
                elif self.path == "/away.mar":  # to a URL allowed_urls does not allow
                    self._redirect(f"http://localhost:{port}/secret.mar")
                elif self.path == "/loop.mar":
                    self._redirect("/loop.mar")
                else:
                    self._send(404, b"no")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda *_: None  # type: ignore[method-assign]  # a refused download hangs up
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canary]:
    source = tmp_path_factory.mktemp("canary_store")
    make_echo_store(source)
    served = Canary((source / "echo.mar").read_bytes())
    yield served
    served.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, canary: Canary) -> Iterator[ForegroundServer]:
    cwd = tmp_path_factory.mktemp("downloads")
    (cwd / "store").mkdir()
    config = {
        "enable_model_api": "true",
        "allowed_urls": rf"http://127\.0\.0\.1:{canary.port}/.*,http://169\.254\..*",
        "max_download_size": str(MAX_DOWNLOAD),
    }
    started = ForegroundServer(cwd, ["--model-store", "store", "--ncs"], config=config)
    yield started
    assert started.stop() == 0


def register(server: ForegroundServer, url: str, name: str) -> httpx.Response:
    params = {"url": url, "model_name": name, "initial_workers": "1", "synchronous": "true"}
    return httpx.post(f"{server.urls['management']}/models", params=params, timeout=60)


def store_files(server: ForegroundServer) -> list[str]:
    return sorted(p.name for p in (server.cwd / "store").iterdir())


def test_an_allowed_url_and_an_allowed_redirect_download(server: ForegroundServer, canary: Canary) -> None:
    assert register(server, f"http://127.0.0.1:{canary.port}/hop.mar", "hopped").status_code == 200
    assert canary.paths[-2:] == ["/hop.mar", "/echo.mar"]
    assert httpx.delete(f"{server.urls['management']}/models/hopped", timeout=60).status_code == 200
    assert store_files(server) == []  # a downloaded archive goes with its model


def test_a_url_that_is_not_allowed_is_never_fetched(server: ForegroundServer, canary: Canary) -> None:
    before = len(canary.paths)
    refused = register(server, f"http://localhost:{canary.port}/echo.mar", "other")
    assert refused.status_code == 404 and "does not match any allowed URL" in refused.json()["message"]
    assert len(canary.paths) == before


def test_a_redirect_to_a_url_that_is_not_allowed_is_not_followed(server: ForegroundServer, canary: Canary) -> None:
    refused = register(server, f"http://127.0.0.1:{canary.port}/away.mar", "away")
    assert refused.status_code == 404 and "matches no allowed URL" in refused.json()["message"]
    assert "/secret.mar" not in canary.paths  # TorchServe followed it (CVE-2024-35198)
    assert store_files(server) == []


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/huge.mar", "larger than max_download_size"), ("/loop.mar", "redirects")],
)
def test_oversized_and_endless_downloads_leave_nothing_behind(
    server: ForegroundServer, canary: Canary, path: str, reason: str
) -> None:
    refused = register(server, f"http://127.0.0.1:{canary.port}{path}", "big")
    assert refused.status_code == 400, refused.text
    assert refused.json()["type"] == "DownloadArchiveException" and reason in refused.json()["message"]
    assert store_files(server) == []


def test_link_local_and_metadata_addresses_are_refused(server: ForegroundServer) -> None:
    refused = register(server, "http://169.254.169.254/latest/meta-data/model.mar", "metadata")
    assert refused.status_code == 400
    assert "link-local or metadata address" in refused.json()["message"]
    assert store_files(server) == []
