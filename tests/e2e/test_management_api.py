"""The management API against a real `tsconsole serve`: every endpoint and status code of spec §2."""

from __future__ import annotations

import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ForegroundServer, free_port, make_echo_store


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("mgmt")
    store = cwd / "store"
    store.mkdir()
    make_echo_store(store, ("1.0", "2.0"))
    make_echo_store(store, name="other")
    make_echo_store(store, name="plain", config=False)  # no model-config.yaml: the API's values apply
    server = ForegroundServer(cwd, ["--model-store", "store", "--ncs", "--enable-model-api"])
    server.store = store
    yield server
    assert server.stop() == 0


def body(r: httpx.Response) -> object:
    return json.loads(r.text)


def describe(client: httpx.Client, server: ForegroundServer, path: str) -> list[dict]:
    r = client.get(f"{server.urls['management']}/models/{path}")
    assert r.status_code == 200, r.text
    return body(r)


def test_whole_lifecycle(server: ForegroundServer, client: httpx.Client) -> None:
    mgmt, inference = server.urls["management"], server.inference
    # register two versions of one model
    r = client.post(f"{mgmt}/models", params={"url": "echo_v1.0.mar", "model_name": "echo", "initial_workers": "1"})
    assert r.status_code == 200, r.text
    assert body(r) == {"status": 'Model "echo" Version: 1.0 registered with 1 initial workers'}
    r = client.post(f"{mgmt}/models", params={"url": "echo_v2.0.mar", "model_name": "echo"})
    assert body(r) == {
        "status": 'Model "echo" Version: 2.0 registered with 1 initial workers'
    }  # minWorkers 1 from model-config.yaml
    assert [d["modelVersion"] for d in describe(client, server, "echo/all")] == ["1.0", "2.0"]
    assert body(client.get(f"{mgmt}/models")) == {"models": [{"modelName": "echo", "modelUrl": "echo_v1.0.mar"}]}

    # duplicate version: 409
    r = client.post(f"{mgmt}/models", params={"url": "echo_v1.0.mar", "model_name": "echo"})
    assert r.status_code == 409
    assert body(r)["message"] == "Model version 1.0 is already registered for model echo"

    # scale up and down, synchronously
    r = client.put(f"{mgmt}/models/echo/2.0", params={"min_worker": "2", "max_worker": "2", "synchronous": "true"})
    assert r.status_code == 200 and body(r) == {"status": "Workers scaled to 2 for model: echo, version: 2.0"}
    workers = describe(client, server, "echo/2.0")[0]["workers"]
    assert len(workers) == 2 and all(w["status"] == "READY" and w["pid"] > 0 for w in workers)
    r = client.put(f"{mgmt}/models/echo/2.0", params={"min_worker": "1", "synchronous": "true"})
    assert r.status_code == 200
    assert len(describe(client, server, "echo/2.0")[0]["workers"]) == 1

    # predict each version; the default version is 1.0
    assert body(client.post(f"{inference}/predictions/echo", content=b"x"))["version"] == "1.0"
    assert body(client.post(f"{inference}/predictions/echo/2.0", content=b"x"))["version"] == "2.0"

    # set the default, deleting the default is forbidden while another version exists
    r = client.put(f"{mgmt}/models/echo/2.0/set-default")
    assert body(r) == {"status": 'Default version successfully updated for model "echo" to "2.0"'}
    assert body(client.post(f"{inference}/predictions/echo", content=b"x"))["version"] == "2.0"
    assert describe(client, server, "echo")[0]["modelVersion"] == "2.0"
    r = client.delete(f"{mgmt}/models/echo/2.0")
    assert r.status_code == 403
    assert body(r) == {
        "code": 403, "type": "InvalidModelVersionException", "message": "Cannot remove default version for model echo"
    }  # fmt: skip

    # unregister
    assert body(client.delete(f"{mgmt}/models/echo/1.0")) == {"status": 'Model "echo" unregistered'}
    assert [d["modelVersion"] for d in describe(client, server, "echo/all")] == ["2.0"]
    assert client.delete(f"{mgmt}/models/echo").status_code == 200
    assert client.get(f"{mgmt}/models/echo").status_code == 404
    assert body(client.get(f"{mgmt}/models")) == {"models": []}


def test_describe_has_every_field(server: ForegroundServer, client: httpx.Client) -> None:
    mgmt = server.urls["management"]
    assert client.post(f"{mgmt}/models", params={"url": "other.mar", "initial_workers": "1"}).status_code == 200
    try:
        [d] = describe(client, server, "other")
        assert list(d) == [
            "modelName", "modelVersion", "modelUrl", "runtime", "minWorkers", "maxWorkers", "batchSize",
            "maxBatchDelay", "responseTimeout", "startupTimeout", "maxRetryTimeoutInSec", "clientTimeoutInMills",
            "parallelType", "parallelLevel", "deviceType", "continuousBatching", "useJobTicket", "useVenv",
            "stateful", "sequenceMaxIdleMSec", "sequenceTimeoutMSec", "maxNumSequence", "maxSequenceJobQueueSize",
            "loadedAtStartup", "workers", "jobQueueStatus",
        ]  # fmt: skip
        assert d["modelUrl"] == "other.mar" and d["batchSize"] == 8 and d["maxBatchDelay"] == 200
        assert d["loadedAtStartup"] is False and d["deviceType"] == "cpu"
        [worker] = d["workers"]
        assert list(worker) == ["id", "startTime", "status", "memoryUsage", "pid", "gpu", "gpuUsage", "lastFailure"]
        assert worker["memoryUsage"] > 0 and worker["gpu"] is False and worker["gpuUsage"] == "N/A"
        assert worker["lastFailure"] is None  # ours, after TorchServe's fields: none while it loads fine
        assert d["jobQueueStatus"] == {"remainingCapacity": 100, "pendingRequests": 0}
        customized = describe(client, server, "other?customized=true")[0]
        assert "customizedMetadata" in customized
        assert body(client.get(f"{mgmt}/v1/models/other")) == {"name": "other", "ready": True}
    finally:
        client.delete(f"{mgmt}/models/other")


def test_list_pagination(server: ForegroundServer, client: httpx.Client) -> None:
    mgmt = server.urls["management"]
    for name in ("b", "a", "c"):
        assert client.post(f"{mgmt}/models", params={"url": "other.mar", "model_name": name}).status_code == 200
    try:
        listing = body(client.get(f"{mgmt}/models", params={"limit": "2"}))
        assert [m["modelName"] for m in listing["models"]] == ["a", "b"] and listing["nextPageToken"] == "2"
        page2 = body(client.get(f"{mgmt}/models", params={"limit": "2", "next_page_token": "2"}))
        assert [m["modelName"] for m in page2["models"]] == ["c"] and "nextPageToken" not in page2
        assert len(body(client.get(f"{mgmt}/models", params={"limit": "-1"}))["models"]) == 3
        assert body(client.get(f"{mgmt}/models", params={"next_page_token": "12"})) == {"models": []}
    finally:
        for name in ("a", "b", "c"):
            client.delete(f"{mgmt}/models/{name}")


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "type_", "message"),
    [
        ("POST", "/models", {}, 400, "BadRequestException", "Parameter url is required."),
        ("POST", "/models", {"url": ""}, 404, "ModelNotFoundException", "empty url"),
        ("POST", "/models", {"url": "nothere.mar"}, 404, "ModelNotFoundException", "Model not found at: nothere.mar"),
        ("POST", "/models", {"url": "../store/other.mar"}, 404, "ModelNotFoundException",
         "Relative path is not allowed in url: ../store/other.mar"),
        ("POST", "/models", {"url": "other.mar", "runtime": "python4"}, 400, "BadRequestException",
         "Invalid RuntimeType value: python4"),
        ("POST", "/models", {"url": "ftp://example.com/x.mar"}, 404, "ModelNotFoundException",
         "Model not found at: ftp://example.com/x.mar"),
        ("PUT", "/models/nope", {}, 404, "ModelNotFoundException", "Model not found: nope"),
        ("GET", "/models/nope/1.0", {}, 404, "ModelNotFoundException", "Model not found: nope"),
        ("PUT", "/models/nope/1.0/set-default", {}, 404, "ModelNotFoundException", "Model not found: nope"),
        ("DELETE", "/models/nope", {}, 404, "ModelNotFoundException", "Model not found: nope"),
        ("PUT", "/models", {}, 405, "MethodNotAllowedException",
         "Requested method is not allowed, please refer to API document."),
        ("POST", "/models/x", {}, 405, "MethodNotAllowedException",
         "Requested method is not allowed, please refer to API document."),
        ("GET", "/nothing", {}, 404, "ResourceNotFoundException",
         "Requested resource is not found, please refer to API document."),
    ],
)  # fmt: skip
def test_error_codes(
    server: ForegroundServer, client: httpx.Client, method: str, path: str, params: dict, status: int, type_: str,
    message: str,
) -> None:  # fmt: skip
    r = client.request(method, f"{server.urls['management']}{path}", params=params)
    assert r.status_code == status, r.text
    assert body(r) == {"code": status, "type": type_, "message": message}


def test_bad_worker_counts_change_nothing(server: ForegroundServer, client: httpx.Client) -> None:
    mgmt = server.urls["management"]
    assert client.post(f"{mgmt}/models", params={"url": "other.mar", "model_name": "w"}).status_code == 200
    try:
        before = describe(client, server, "w")[0]
        cases = [
            ({"min_worker": "2", "max_worker": "1"}, 400, "max_worker cannot be less than min_worker."),
            ({"max_worker": "-1"}, 400, "max_worker cannot be less than min_worker."),
            ({"min_worker": "100000"}, 400, "max_worker cannot be more than 256."),
            ({"min_worker": "-1"}, 500, "min_worker cannot be negative."),  # TorchServe's status, kept
        ]
        for params, status, message in cases:
            r = client.put(f"{mgmt}/models/w", params=params)
            assert (r.status_code, body(r)["message"]) == (status, message)
        after = describe(client, server, "w")[0]
        assert (after["minWorkers"], after["maxWorkers"], after["workers"]) == (
            before["minWorkers"], before["maxWorkers"], before["workers"]
        )  # fmt: skip
        r = client.put(f"{mgmt}/models/w/9.9", params={"min_worker": "1"})
        assert r.status_code == 404 and body(r)["message"] == "Model version: 9.9 does not exist for model: w"
        r = client.put(f"{mgmt}/models/w/9.9/set-default")
        assert (body(r)["type"], body(r)["message"]) == (
            "ModelVersionNotFoundException", "Model version 9.9 does not exist for model w"
        )  # fmt: skip
        assert client.put(f"{mgmt}/models/w", params={"min_worker": "1"}).status_code == 202
        r = client.post(f"{mgmt}/models", params={"url": "other.mar", "model_name": "w2", "initial_workers": "9999"})
        assert r.status_code == 400
    finally:
        client.delete(f"{mgmt}/models/w")


def test_register_json_body_async_and_failing_handler(server: ForegroundServer, client: httpx.Client) -> None:
    mgmt = server.urls["management"]
    r = client.post(f"{mgmt}/models", json={"url": "other.mar", "model_name": "j", "initial_workers": 1,
                                           "synchronous": False})  # fmt: skip
    assert (r.status_code, body(r)) == (202, {"status": "Processing worker updates..."})
    client.delete(f"{mgmt}/models/j")

    # A handler that cannot load: registration with 0 workers works, a synchronous scale fails with 500.
    r = client.post(f"{mgmt}/models", params={"url": "plain.mar", "model_name": "bad", "handler": "no_such_module"})
    assert r.status_code == 200
    r = client.put(f"{mgmt}/models/bad", params={"min_worker": "1", "synchronous": "true"})
    assert r.status_code == 500
    assert body(r)["message"].startswith("Failed to start workers for model bad version: null: ")
    assert "no_such_module" in body(r)["message"]  # the worker's reason
    assert client.delete(f"{mgmt}/models/bad").status_code == 200

    # Synchronous registration that cannot start its workers is undone.
    r = client.post(f"{mgmt}/models", params={"url": "plain.mar", "model_name": "bad2", "handler": "no_such_module",
                                             "initial_workers": "1"})  # fmt: skip
    assert r.status_code == 500
    assert body(r)["message"].startswith("Failed to start workers for model bad2 version: 1.0: ")
    assert client.get(f"{mgmt}/models/bad2").status_code == 404


def test_register_from_urls(server: ForegroundServer, client: httpx.Client, tmp_path: Path) -> None:
    mgmt = server.urls["management"]
    served = tmp_path / "served"
    served.mkdir()
    (served / "remote.mar").write_bytes((server.store / "other.mar").read_bytes())
    handler = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/remote.mar"
        r = client.post(f"{mgmt}/models", params={"url": url, "model_name": "remote"})
        assert r.status_code == 200, r.text
        assert (server.store / "remote.mar").exists()
        assert describe(client, server, "remote")[0]["modelUrl"] == url
        again = client.post(f"{mgmt}/models", params={"url": url, "model_name": "remote"})
        assert (again.status_code, body(again)["message"]) == (500, "Model file already exists remote.mar")
        client.delete(f"{mgmt}/models/remote")
        assert not (server.store / "remote.mar").exists()  # a downloaded archive goes with its model
        closed = f"http://127.0.0.1:{free_port()}/missing.mar"
        r = client.post(f"{mgmt}/models", params={"url": closed})
        assert body(r) == {
            "code": 400, "type": "DownloadArchiveException", "message": f"Failed to download archive from: {closed}"
        }  # fmt: skip
        r = client.post(f"{mgmt}/models", params={"url": (served / "remote.mar").as_uri(), "model_name": "viafile"})
        assert r.status_code == 200
        client.delete(f"{mgmt}/models/viafile")
    finally:
        httpd.shutdown()


def test_api_description(server: ForegroundServer, client: httpx.Client) -> None:
    doc = body(client.request("OPTIONS", f"{server.urls['management']}/"))
    assert doc["openapi"] == "3.0.1" and doc["info"]["title"] == "TorchServe APIs"
    assert {"/models", "/models/{model_name}", "/models/{model_name}/{model_version}/set-default"} <= set(doc["paths"])


def test_model_api_disabled_by_default(tmp_path: Path, client: httpx.Client) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_echo_store(store)
    locked = ForegroundServer(tmp_path, ["--model-store", "store", "--ncs", "--models", "echo.mar"])
    try:
        mgmt = locked.urls["management"]
        r = client.post(f"{mgmt}/models", params={"url": "echo.mar", "model_name": "again"})
        assert r.status_code == 405 and body(r)["type"] == "MethodNotAllowedException"
        assert client.delete(f"{mgmt}/models/echo").status_code == 405
        assert client.get(f"{mgmt}/models/echo").status_code == 200  # describe, list, scale stay open
        assert client.put(f"{mgmt}/models/echo", params={"min_worker": "1"}).status_code == 202
        assert describe(client, locked, "echo")[0]["loadedAtStartup"] is True
    finally:
        assert locked.stop() == 0


def test_cross_origin_writes_are_refused_without_authorization(server: ForegroundServer, client: httpx.Client) -> None:
    mgmt = server.urls["management"]
    evil = client.post(f"{mgmt}/models", params={"url": "echo.mar"}, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and body(evil)["type"] == "ForbiddenException"
    assert client.put(f"{mgmt}/models/nope", headers={"Origin": "null"}).status_code == 403
    assert client.get(f"{mgmt}/models", headers={"Origin": "http://evil.example"}).status_code == 200  # reads
    same_site = client.put(f"{mgmt}/models/nope", headers={"Origin": mgmt})
    assert same_site.status_code == 404  # its own origin: the request goes on (and finds no model)
