"""Stopping a real `tsconsole serve` process (SIGINT, as Ctrl-C) loses no request and never lingers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import RECORDING_HANDLER, ForegroundServer, make_handler_archive, recorded


def ask_in_background(url: str, body: bytes, answers: dict[bytes, object]) -> threading.Thread:
    def ask() -> None:
        try:
            answers[body] = httpx.post(url, content=body, timeout=120)
        except httpx.HTTPError as exc:
            answers[body] = exc

    thread = threading.Thread(target=ask)
    thread.start()
    return thread


def test_requests_under_way_finish_before_the_server_stops(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    record = tmp_path / "record.txt"
    single = "batchSize: 1\nminWorkers: 1\nmaxWorkers: 1\n"
    make_handler_archive(tmp_path / "store", "recorder", RECORDING_HANDLER.format(record=str(record)), single)
    server = ForegroundServer(tmp_path, ["--model-store", "store", "--models", "all", "--ncs"])
    url = f"{server.inference}/predictions/recorder"
    answers: dict[bytes, object] = {}
    threads = [ask_in_background(url, b"sleep:1.5:first", answers)]
    deadline = time.monotonic() + 30
    while "sleep:1.5:first" not in recorded(record):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    threads.append(ask_in_background(url, b"second", answers))
    time.sleep(0.3)  # queued behind the first
    assert server.stop() == 0
    for thread in threads:
        thread.join()
    statuses = {body: getattr(answer, "status_code", answer) for body, answer in answers.items()}
    assert statuses == {b"sleep:1.5:first": 200, b"second": 200}
    assert recorded(record) == ["sleep:1.5:first", "second"]


def test_requests_for_a_model_that_cannot_start_get_503_and_the_server_stops_at_once(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    make_handler_archive(tmp_path / "store", "broken", "raise RuntimeError('this model never loads')\n")
    server = ForegroundServer(tmp_path, ["--model-store", "store", "--models", "all", "--ncs"])
    answers: dict[bytes, object] = {}
    waiting = ask_in_background(f"{server.inference}/predictions/broken", b"x", answers)
    time.sleep(1.0)  # queued: its workers keep failing to load
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 10  # it used to wait 60 s for the stuck request, then get killed
    waiting.join()
    answer = answers[b"x"]
    assert isinstance(answer, httpx.Response) and answer.status_code == 503
