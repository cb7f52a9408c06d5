"""A model whose workers cannot start: loaded at startup, it stays registered and crash-loops; describe (REST)
and ``tsconsole status`` say why, against a real background server (``tsconsole start``) with token
authorization on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import make_handler_archive, server_env, tsconsole, write_config
from tsconsole.client import read_key_file

GOOD_HANDLER = """
def handle(data, context):
    if data is None:
        return None
    return ["ok" for _ in data]
"""

BROKEN_HANDLER = """
raise RuntimeError("no such device")


def handle(data, context):
    return None
"""

ONE_WORKER = "minWorkers: 1\nmaxWorkers: 1\n"


@dataclass
class Daemon:
    cwd: Path
    urls: dict[str, str]
    env: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        management_key, _ = read_key_file(self.cwd / "key_file.json")
        assert management_key, "the server wrote no key_file.json"
        return {"Authorization": f"Bearer {management_key}"}

    def describe(self, name: str) -> list[dict]:
        response = httpx.get(f"{self.urls['management']}/models/{name}/all", headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    cwd = tmp_path_factory.mktemp("broken")
    store = cwd / "store"
    store.mkdir()
    make_handler_archive(store, "good", GOOD_HANDLER, ONE_WORKER)
    make_handler_archive(store, "broken", BROKEN_HANDLER, ONE_WORKER)
    urls = write_config(
        cwd, disable_token_authorization="false", load_models="good.mar,broken.mar", default_workers_per_model="1"
    )
    env = server_env(cwd)
    start = tsconsole("start", "--ncs", "--model-store", "store", cwd=cwd, env=env)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield Daemon(cwd, urls, env)
    finally:
        stop = tsconsole("stop", cwd=cwd, env=env)
        assert stop.returncode == 0, stop.stdout + stop.stderr


def failure_of(daemon: Daemon, name: str, *, restarts: int = 0, timeout: float = 60) -> str:
    """The lastFailure of the model's first worker, once it has one from a process started after ``restarts``
    restarts of the slot (its workers fail and restart in the background)."""
    deadline = time.monotonic() + timeout
    started: set[str] = set()  # each process of the slot has its own startTime
    while True:
        [version] = daemon.describe(name)
        worker = version["workers"][0] if version["workers"] else {}
        started.add(worker.get("startTime", ""))
        if worker.get("lastFailure") and len(started - {""}) > restarts:
            return worker["lastFailure"]
        assert time.monotonic() < deadline, f"no lastFailure for {name} after {restarts} restarts: {version}"
        time.sleep(0.1)


def test_describe_says_why_the_workers_of_a_broken_model_fail(daemon: Daemon) -> None:
    assert "no such device" in failure_of(daemon, "broken")
    # the same reason after restarts: the model stays registered, with its files, and keeps retrying
    assert "no such device" in failure_of(daemon, "broken", restarts=2)
    [broken] = daemon.describe("broken")
    assert broken["loadedAtStartup"] is True and broken["minWorkers"] == 1  # still registered: crash-looping
    [worker] = broken["workers"]
    assert worker["status"] != "READY" and list(worker)[-1] == "lastFailure"
    [good] = daemon.describe("good")
    assert [(w["status"], w["lastFailure"]) for w in good["workers"]] == [("READY", None)]


def test_status_shows_each_model_and_why_a_broken_one_fails(daemon: Daemon) -> None:
    failure_of(daemon, "broken", restarts=1)
    status = tsconsole("status", cwd=daemon.cwd, env=daemon.env)
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    assert "Traceback" not in status.stdout + status.stderr
    assert "  good 1.0: 1/1 workers ready" in lines, status.stdout
    [broken] = [line for line in lines if line.startswith("  broken 1.0: ")]
    assert broken.startswith("  broken 1.0: 0/1 workers ready; failing: ") and "no such device" in broken, broken
    assert lines.index("  good 1.0: 1/1 workers ready") > lines.index(f"  management: {daemon.urls['management']}")
