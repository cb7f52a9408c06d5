"""Streaming and cancellation on the REST inference port, against a real `tsconsole serve` process."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import ForegroundServer, recorded


def test_intermediate_responses_arrive_as_chunks_while_the_handler_runs(lab: ForegroundServer, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{lab.inference}/predictions/stream", content=str(gate).encode()) as response,
    ):
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked" and "content-length" not in response.headers
        assert response.headers["ts_stream_next"] == "true"
        assert response.headers["x-request-id"]
        chunks = response.iter_raw()
        first = next(chunks)  # the handler waits for the gate after this chunk: it reached us while it ran
        assert first == b"hello"
        gate.touch()
        rest = b"".join(chunks)
    assert first + rest == b"hellohellohellohello world "


def test_a_non_streaming_answer_is_one_plain_response(lab: ForegroundServer) -> None:
    r = httpx.post(f"{lab.inference}/predictions/echo", content=b"x")
    assert r.status_code == 200 and "content-length" in r.headers and "transfer-encoding" not in r.headers


def test_a_client_that_disconnects_while_queued_never_reaches_the_handler(lab: ForegroundServer) -> None:
    record = lab.cwd / "record.txt"
    busy = threading.Thread(target=lambda: httpx.post(f"{lab.inference}/predictions/recorder",
                                                      content=b"sleep:2:rest-busy", timeout=60))  # fmt: skip
    busy.start()
    deadline = time.monotonic() + 30
    while "sleep:2:rest-busy" not in recorded(record):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    address = urlsplit(lab.inference)
    with socket.create_connection((address.hostname, address.port)) as raw:
        body = b"gone-away"
        raw.sendall(b"POST /predictions/recorder HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body),
                                                                                                   body))  # fmt: skip
        time.sleep(0.3)  # queued behind the busy request
    busy.join()
    assert httpx.post(f"{lab.inference}/predictions/recorder", content=b"then", timeout=30).text == "then"
    assert "gone-away" not in recorded(record)


@pytest.mark.parametrize("path", ["/predictions/nope", "/v2/models/nope/infer"])
def test_unknown_models_before_any_body_is_read(lab: ForegroundServer, path: str) -> None:
    assert httpx.post(f"{lab.inference}{path}", content=b"x").status_code == 404


def test_unregister_lets_queued_and_in_flight_requests_finish(lab: ForegroundServer) -> None:
    management, inference = lab.urls["management"], lab.inference
    params = {"url": "recorder.mar", "model_name": "drainer", "initial_workers": "1", "synchronous": "true"}
    assert httpx.post(f"{management}/models", params=params, timeout=60).status_code == 200
    record = lab.cwd / "record.txt"
    answers: dict[str, httpx.Response] = {}

    def ask(mark: str, body: bytes) -> None:
        answers[mark] = httpx.post(f"{inference}/predictions/drainer", content=body, timeout=60)

    threads = [threading.Thread(target=ask, args=("busy", b"sleep:1.5:drain-busy"))]
    threads[0].start()
    deadline = time.monotonic() + 30
    while "sleep:1.5:drain-busy" not in recorded(record):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    threads.append(threading.Thread(target=ask, args=("queued", b"drain-queued")))
    threads[1].start()
    time.sleep(0.3)  # queued behind the busy one
    gone = httpx.delete(f"{management}/models/drainer", timeout=60)
    assert gone.status_code == 200
    for thread in threads:
        thread.join()
    assert answers["busy"].status_code == 200 and answers["busy"].text == "sleep:1.5:drain-busy"
    assert answers["queued"].status_code == 200 and answers["queued"].text == "drain-queued"  # TorchServe: 503
    assert httpx.post(f"{inference}/predictions/drainer", content=b"late").status_code == 404


def test_max_request_size_bounds_the_parts_of_a_multipart_body_together(lab: ForegroundServer) -> None:
    from tests.e2e.conftest import LAB_MAX_REQUEST

    part = b"x" * (LAB_MAX_REQUEST // 5)  # small enough for its echo to fit max_response_size too
    url = f"{lab.inference}/predictions/echo"
    assert httpx.post(url, files={"a": ("a", part)}, timeout=60).status_code == 200  # one part fits
    too_big = httpx.post(url, files={name: (name, part) for name in "abcdef"}, timeout=60)  # six do not
    assert too_big.status_code == 413


def test_max_response_size_bounds_the_answers(lab: ForegroundServer) -> None:
    from tests.e2e.conftest import LAB_MAX_RESPONSE

    url = f"{lab.inference}/predictions/echo"
    assert httpx.post(url, content=b"x" * 1000, timeout=60).status_code == 200
    too_big = httpx.post(url, content=b"x" * LAB_MAX_RESPONSE, timeout=60)  # echoed back, and more
    assert too_big.status_code == 413 and "max_response_size" in too_big.json()["message"]


def _trickle(url: str, path: str, content_type: str, first_bytes: bytes) -> str:
    """Send a request's head and the first bytes of a longer body, then nothing: the server's answer."""
    address = urlsplit(url)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: 100000\r\n\r\n"
    with socket.create_connection((address.hostname, address.port), timeout=30) as slow:
        slow.sendall(head.encode() + first_bytes)
        return slow.recv(65536).decode("latin-1")


MULTIPART_START = b'--B\r\nContent-Disposition: form-data; name="data"; filename="x"\r\n\r\nxx'


@pytest.mark.parametrize(
    ("listener", "path", "content_type", "first_bytes"),
    [
        ("inference", "/predictions/echo", "application/octet-stream", b"x"),
        ("inference", "/predictions/echo", "multipart/form-data; boundary=B", MULTIPART_START),
        ("inference", "/predictions/echo", "application/x-www-form-urlencoded", b"data=x"),
        ("inference", "/v2/models/echo/infer", "application/json", b"{"),
        ("management", "/models", "application/json", b"{"),
    ],
)
def test_a_body_that_trickles_gets_408(
    lab: ForegroundServer, listener: str, path: str, content_type: str, first_bytes: bytes
) -> None:
    answer = _trickle(lab.urls[listener], path, content_type, first_bytes)  # request_body_timeout=1 in the lab
    assert answer.startswith("HTTP/1.1 408") and "did not arrive within 1 s" in answer
    assert httpx.post(f"{lab.inference}/predictions/echo", content=b"still fine").status_code == 200


def test_hostile_inputs_get_a_clear_error(lab: ForegroundServer) -> None:
    huge_header = httpx.post(f"{lab.inference}/predictions/echo", content=b"x", headers={"X-Big": "y" * 20000})
    assert huge_header.status_code in (400, 431)
    deep = "[" * 100_000 + "]" * 100_000
    oip = httpx.post(f"{lab.inference}/v2/models/echo/infer", content=deep)
    assert oip.status_code == 400 and "nested too deeply" in oip.json()["error"]
    management = lab.urls["management"]
    register = httpx.post(f"{management}/models", content=deep, headers={"Content-Type": "application/json"})
    assert register.status_code == 400 and "nested too deeply" in register.json()["message"]
    bad_name = httpx.post(f"{management}/models", params={"url": "echo.mar", "model_name": "../x"})
    assert bad_name.status_code == 400 and "Invalid model name" in bad_name.json()["message"]
    assert httpx.post(f"{lab.inference}/predictions/echo", content=b"still fine").status_code == 200
