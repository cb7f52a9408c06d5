"""Console fixtures: one real `tsconsole serve` (prometheus metrics, model API on) for the console tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ForegroundServer, make_echo_store
from tsconsole.client import Client, Endpoints

# models loaded at startup; each test changes only its own
STARTUP_MODELS = ("echo", "scaleme", "dropme", "palette")


@pytest.fixture(scope="session")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForegroundServer]:
    cwd = tmp_path_factory.mktemp("console")
    store = cwd / "store"
    store.mkdir()
    for name in (*STARTUP_MODELS, "clireg", "uireg"):
        make_echo_store(store, name=name)
    make_echo_store(store, ("1.0", "2.0"), name="multi")
    make_echo_store(store, ("1.0", "2.0"), name="uimulti")
    models = [f"{n}={n}.mar" for n in STARTUP_MODELS]
    server = ForegroundServer(
        cwd,
        ["--model-store", "store", "--ncs", "--enable-model-api", "--models", *models],
        config={"metrics_mode": "prometheus", "default_workers_per_model": "1"},
    )
    server.store = store  # type: ignore[attr-defined]
    yield server
    assert server.stop() == 0


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until ``condition()`` holds (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.05)


async def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.05)


async def workers_of(server: ForegroundServer, model: str) -> int | None:
    """Workers the management API reports for ``model`` (None: not registered)."""
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"{server.urls['management']}/models/{model}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return len(r.json()[0]["workers"])


def store_of(server: ForegroundServer) -> Path:
    return server.store  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForegroundServer]:
    """A server of one module's own, with the echo model loaded (for screen tests that need little)."""
    cwd = tmp_path_factory.mktemp("echo-server")
    (cwd / "store").mkdir()
    make_echo_store(cwd / "store")
    srv = ForegroundServer(cwd, ["--model-store", "store", "--ncs", "--enable-model-api", "--models", "echo=echo.mar"])
    yield srv
    srv.stop()


def client_for(server: ForegroundServer) -> Client:
    return Client(Endpoints(server.urls["inference"], server.urls["management"], server.urls["metrics"]))
