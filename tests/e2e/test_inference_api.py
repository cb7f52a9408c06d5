"""The inference API against a real `tsconsole serve` process: routes, inputs, batching, errors, logs."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from server.errors import NOT_FOUND_TEXT
from tests.e2e.conftest import ForegroundServer, make_echo_store


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("echo")
    store = cwd / "store"
    store.mkdir()
    make_echo_store(store)
    server = ForegroundServer(cwd, ["--model-store", "store", "--models", "echo.mar", "--ncs"])
    yield server
    assert server.stop() == 0


def test_ping(echo_server: ForegroundServer, client: httpx.Client) -> None:
    r = client.get(f"{echo_server.inference}/ping")
    assert r.status_code == 200
    assert r.text == '{\n  "status": "Healthy"\n}\n'
    assert r.headers["content-type"].startswith("application/json")
    assert len(r.headers["x-request-id"]) == 36
    assert r.headers["cache-control"] == "no-cache; no-store, must-revalidate, private"


def test_raw_body_json_and_text_inputs(echo_server: ForegroundServer, client: httpx.Client) -> None:
    base = f"{echo_server.inference}/predictions/echo"
    raw = client.put(base, content=b"\x00\x01raw")
    assert raw.status_code == 200
    assert "content-type" not in raw.headers  # the handler set none, so TorchServe sends none
    body = json.loads(raw.text)
    assert body["inputs"] == {"body": ["bytearray", "\x00\x01raw"]}
    assert body["request_id"] == raw.headers["x-request-id"]
    assert raw.text.startswith('{\n  "request_id"')  # json.dumps(indent=2), as TorchServe's worker

    as_json = json.loads(client.post(base, json={"a": [1, 2]}).text)
    assert as_json["inputs"] == {"body": ["dict", {"a": [1, 2]}]}
    text = json.loads(client.post(base, content="hello", headers={"Content-Type": "text/plain"}).text)
    assert text["inputs"] == {"body": ["str", "hello"]}


def test_multipart_and_form_inputs(echo_server: ForegroundServer, client: httpx.Client) -> None:
    base = f"{echo_server.inference}/predictions/echo"
    multipart = client.post(base, files={"data": ("x.bin", b"file bytes", "application/octet-stream")})
    assert json.loads(multipart.text)["inputs"] == {"data": ["bytearray", "file bytes"]}
    form = client.post(base, data={"field": "value", "other": "2"})
    assert json.loads(form.text)["inputs"] == {"field": ["bytearray", "value"], "other": ["bytearray", "2"]}


def test_versions_url_path_and_explanations(echo_server: ForegroundServer, client: httpx.Client) -> None:
    base = echo_server.inference
    versioned = json.loads(client.post(f"{base}/predictions/echo/1.0/extra/path", content=b"x").text)
    assert versioned["url_path"] == "extra/path" and versioned["explain"] == "False"
    explained = json.loads(client.post(f"{base}/explanations/echo", content=b"x").text)
    assert explained["explain"] == "True"
    kserve_v2 = json.loads(client.post(f"{base}/v2/models/echo/explain", content=b"x").text)
    assert kserve_v2["inputs"]["body"][1] == "x" and kserve_v2["explain"] == "True"
    oip = client.post(f"{base}/v2/models/echo/infer", content=b"x")  # the Open Inference Protocol: JSON tensors
    assert oip.status_code == 400 and "error" in oip.json()
    legacy = json.loads(client.post(f"{base}/echo/predict?q=1", content=b"x").text)
    assert legacy["inputs"]["q"] == ["bytearray", "1"]


@pytest.mark.parametrize(
    ("path", "status", "type_", "message"),
    [
        ("/predictions/nope", 404, "ModelNotFoundException", "Model not found: nope"),
        ("/predictions/echo/9.9", 404, "ModelVersionNotFoundException",
         "Model version: 9.9 does not exist for model: echo"),
        ("/nothing/here/at/all", 404, "ResourceNotFoundException", NOT_FOUND_TEXT),
        ("/predictions", 404, "ResourceNotFoundException", NOT_FOUND_TEXT),
    ],
)  # fmt: skip
def test_error_bodies(
    echo_server: ForegroundServer, client: httpx.Client, path: str, status: int, type_: str, message: str
) -> None:
    r = client.post(f"{echo_server.inference}{path}", content=b"x")
    assert r.status_code == status
    assert r.text == json.dumps({"code": status, "type": type_, "message": message}, indent=2) + "\n"
    assert r.headers["connection"] == "close"


def test_handler_errors_are_torchserve_503s(echo_server: ForegroundServer, client: httpx.Client) -> None:
    base = f"{echo_server.inference}/predictions/echo"
    failed = client.post(base, data={"fail": "1"})
    assert failed.status_code == 503
    assert json.loads(failed.text) == {"code": 503, "type": "InternalServerException", "message": "Prediction failed"}
    short = client.post(base, data={"short": "1"})
    assert short.status_code == 503
    assert json.loads(short.text)["message"] == "number of batch response mismatched"
    assert client.post(base, content=b"still fine").status_code == 200


def test_root_method_and_api_description(echo_server: ForegroundServer, client: httpx.Client) -> None:
    assert client.get(f"{echo_server.inference}/").status_code == 405
    doc = client.request("OPTIONS", f"{echo_server.inference}/")
    assert doc.status_code == 200
    assert json.loads(doc.text)["openapi"] == "3.0.1"
    assert "/predictions/{model_name}" in json.loads(doc.text)["paths"]


def test_every_response_goes_to_its_own_request_under_load(echo_server: ForegroundServer, client: httpx.Client) -> None:
    base = f"{echo_server.inference}/predictions/echo"

    def one(i: int) -> tuple[int, dict]:
        with httpx.Client(timeout=120) as c:
            r = c.post(base, content=f"payload-{i}".encode())
            return i, json.loads(r.text) | {"header_id": r.headers["x-request-id"]}

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(one, range(96)))
    for i, body in results:
        assert body["inputs"]["body"][1] == f"payload-{i}"
        assert body["request_id"] == body["header_id"]
    assert max(body["batch"] for _, body in results) > 1  # batch_size 8 from model-config.yaml really batched


def test_access_and_model_logs(echo_server: ForegroundServer, client: httpx.Client) -> None:
    client.put(f"{echo_server.inference}/predictions/echo", content=b"logged")
    logs = echo_server.cwd / "logs"
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        access = (logs / "access_log.log").read_text()
        if '"PUT /predictions/echo HTTP/1.1" 200' in access:
            break
        time.sleep(0.2)
    assert '"PUT /predictions/echo HTTP/1.1" 200' in access
    line = next(line for line in access.splitlines() if '"PUT /predictions/echo' in line)
    assert line[:4].isdigit() and " - /127.0.0.1:" in line
    model_log = (logs / "model_log.log").read_text()
    assert "W-9000-echo_1.0-stdout MODEL_LOG - Torch worker started." in model_log
    ts_log = (logs / "ts_log.log").read_text()
    assert "Loading initial models: echo.mar" in ts_log
    assert "[INFO ]" in ts_log


def test_unreadable_store_entry_does_not_stop_the_others(tmp_path: Path, client: httpx.Client) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_echo_store(store)
    (store / "broken.mar").write_bytes(b"this is not a zip")
    server = ForegroundServer(tmp_path, ["--model-store", "store", "--models", "all", "--ncs"])
    try:
        assert client.post(f"{server.inference}/predictions/echo", content=b"x").status_code == 200
        assert client.post(f"{server.inference}/predictions/broken", content=b"x").status_code == 404
    finally:
        assert server.stop() == 0
    assert "broken.mar" in (tmp_path / "logs" / "ts_log.log").read_text()


def test_tsconsole_predict(echo_server: ForegroundServer, tmp_path: Path) -> None:
    from tests.e2e.conftest import tsconsole

    (tmp_path / "in.txt").write_text("from a file")
    ok = tsconsole("predict", "echo", "in.txt", "--url", echo_server.inference, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["inputs"]["body"] == ["bytearray", "from a file"]
    assert "[200 in" in ok.stderr
    missing = tsconsole("predict", "nope", "--data", "x", "--url", echo_server.inference, cwd=tmp_path)
    assert missing.returncode == 1
    assert "Model not found: nope" in missing.stdout


def test_sagemaker_invocations(echo_server: ForegroundServer, client: httpx.Client) -> None:
    base = f"{echo_server.inference}/invocations"
    by_query = json.loads(client.post(base, params={"model_name": "echo"}, content=b"q").text)
    assert by_query["inputs"]["body"] == ["bytearray", "q"] and by_query["inputs"]["model_name"][1] == "echo"
    form = json.loads(client.post(base, data={"model_name": "echo", "text": "t"}).text)
    assert form["inputs"]["text"] == ["bytearray", "t"]
    multipart = client.post(base, data={"model_name": "echo"}, files={"data": ("d.bin", b"file bytes")})
    assert multipart.status_code == 200, multipart.text  # TorchServe answers 500 here
    assert json.loads(multipart.text)["inputs"]["data"] == ["bytearray", "file bytes"]
    only_model = json.loads(client.post(base, content=b"x").text)  # the one model loaded at startup
    assert only_model["inputs"]["body"] == ["bytearray", "x"]
    unknown = client.post(base, params={"model_name": "nope"}, content=b"x")
    assert unknown.status_code == 404


def test_a_header_that_is_not_utf8_fails_alone(echo_server: ForegroundServer, client: httpx.Client) -> None:
    import socket
    from urllib.parse import urlsplit

    before = {p.pid for p in echo_server.workers()}
    address = urlsplit(echo_server.inference)
    with socket.create_connection((address.hostname, address.port), timeout=30) as raw:
        raw.sendall(b"POST /predictions/echo HTTP/1.1\r\nHost: x\r\nX-Odd: \xff\xfe\r\nContent-Length: 1\r\n\r\nx")
        answer = raw.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.1 400") and "X-Odd" in answer and "not valid UTF-8" in answer
    assert json.loads(client.post(f"{echo_server.inference}/predictions/echo", content=b"ok").text)["batch"] >= 1
    assert {p.pid for p in echo_server.workers()} == before  # no worker failed or restarted
