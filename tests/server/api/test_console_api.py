"""The /console/... routes of the management listener over real HTTP (aiohttp's test server)."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from server.api.console import ConsoleAPI
from server.api.http import BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT_S
from server.api.management import ManagementAPI
from server.auth import TokenAuthority
from server.config import load_settings
from server.models.control import ModelControl
from server.models.registry import Registry
from server.models.store import ModelStore
from server.telemetry.system import GpuStats, SystemStats

HANDLER = "def handle(data, context):\n    return data\n"


class FakeSource:
    def sample(self) -> SystemStats:
        return SystemStats(cpu_percent=5.0, memory_used_mb=1.0, memory_percent=1.0, disk_used_gb=1.0,
                           gpus=(GpuStats(0, 10.0, 1.0, 2.0, "Fake GPU"),))  # fmt: skip

    def close(self) -> None:
        pass


def no_pool(*_: Any) -> Any:
    raise AssertionError("no model is registered in these tests")


@pytest_asyncio.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[Callable]:
    made: list[tuple[TestClient, ConsoleAPI]] = []

    async def make(*, model_api: bool = True, store: bool = True, **props: str) -> tuple[TestClient, ConsoleAPI]:
        cwd = tmp_path / f"server{len(made)}"
        (cwd / "logs").mkdir(parents=True)
        props = {"disable_token_authorization": "true", **props}  # tests/e2e/test_token_auth.py has the keys
        lines = [f"enable_model_api={str(model_api).lower()}", *(f"{k}={v}" for k, v in props.items())]
        if store:
            (cwd / "store").mkdir()
            lines.append(f"model_store={cwd / 'store'}")
        (cwd / "config.properties").write_text("\n".join(lines) + "\n")
        settings = load_settings(env={"CUDA_VISIBLE_DEVICES": "", "LOG_LOCATION": str(cwd / "logs")}, cwd=cwd)
        registry = Registry(settings, ModelStore(settings.model_store, cwd / "work"), no_pool)
        console = ConsoleAPI(registry, settings, stats_source=FakeSource())
        management = ManagementAPI(ModelControl(registry, settings), TokenAuthority(settings, cwd), console)
        app = management.app(settings.max_request_size)
        app[BODY_TIMEOUT] = settings.positive("request_body_timeout", DEFAULT_BODY_TIMEOUT_S)  # as the server does
        client = TestClient(TestServer(app))
        await client.start_server()
        made.append((client, console))
        return client, console

    yield make
    for client, console in made:
        await console.close()
        await client.close()


def form(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for key, value in fields.items():
        data.add_field(key, value)
    for key, name, content in files:
        data.add_field(key, io.BytesIO(content), filename=name, content_type="application/octet-stream")
    return data


def store_of(console: ConsoleAPI) -> Path:
    assert console.settings.model_store is not None
    return console.settings.model_store


@pytest.mark.asyncio
async def test_system_with_an_injected_gpu(make_client) -> None:
    client, _ = await make_client()
    response = await client.get("/console/system")
    assert response.status == 200
    body = await response.json()
    assert body["gpuStatus"] == "ok"
    assert body["gpus"][0]["name"] == "Fake GPU" and body["gpus"][0]["memoryTotal"] == 2 * 1024 * 1024
    assert body["workers"] == []
    assert (await client.post("/console/system")).status == 405
    assert (await client.get("/console/nothing")).status == 404


@pytest.mark.asyncio
async def test_system_says_where_the_server_listens(make_client) -> None:
    client, _ = await make_client()
    body = await (await client.get("/console/system")).json()
    assert body["listeners"] == {
        "inference": "http://127.0.0.1:8080",
        "management": "http://127.0.0.1:8081",
        "metrics": "http://127.0.0.1:8082",
        "grpc_inference": "127.0.0.1:7070",
        "grpc_management": "127.0.0.1:7071",
    }
    client, _ = await make_client(
        inference_address="http://0.0.0.0:9080", management_address="unix:/tmp/tsconsole-management.sock",
        enable_metrics_api="false", grpc_inference_address="::1", grpc_inference_port="9070",
        grpc_management_address="10.1.2.3", grpc_management_port="9071",
    )  # fmt: skip
    body = await (await client.get("/console/system")).json()
    assert body["listeners"] == {
        "inference": "http://0.0.0.0:9080",
        "management": "unix:/tmp/tsconsole-management.sock",
        "metrics": None,  # the metrics API is off
        "grpc_inference": "[::1]:9070",
        "grpc_management": "10.1.2.3:9071",
    }


@pytest.mark.asyncio
async def test_logs_list_tail_and_errors(make_client) -> None:
    client, console = await make_client()
    console.log_files["ts_log"].write_text("".join(f"line {i}\n" for i in range(300)))
    console.log_files["access_log"].write_text("")
    body = await (await client.get("/console/logs")).json()
    assert body == {
        "logs": [
            {"name": "ts_log", "file": "ts_log.log", "size": console.log_files["ts_log"].stat().st_size},
            {"name": "access_log", "file": "access_log.log", "size": 0},
        ]
    }
    tail = await (await client.get("/console/logs/ts_log")).json()
    assert tail["name"] == "ts_log" and len(tail["lines"]) == 200 and tail["lines"][-1] == "line 299"
    tail = await (await client.get("/console/logs/ts_log", params={"lines": "2"})).json()
    assert tail["lines"] == ["line 298", "line 299"]
    tail = await (await client.get("/console/logs/ts_log", params={"lines": "999999"})).json()
    assert len(tail["lines"]) == 300
    response = await client.get("/console/logs/secrets")
    assert response.status == 404
    assert (await response.json())["message"].startswith("Unknown log: secrets.")
    assert (await client.get("/console/logs/model_log")).status == 404  # known, but no file yet
    assert (await client.get("/console/logs/ts_log", params={"lines": "-1"})).status == 400
    assert (await client.get("/console/logs/ts_log", params={"lines": "many"})).status == 400
    assert (await client.get("/console/logs/../config.properties")).status == 404


@pytest.mark.asyncio
async def test_a_large_tail_arrives_whole_with_the_usual_headers(make_client) -> None:
    client, console = await make_client()
    lines = [f"{i} {'x' * 2000}" for i in range(2000)]  # 4 MB of JSON: written in pieces
    console.log_files["ts_log"].write_text("".join(f"{line}\n" for line in lines))
    response = await client.get("/console/logs/ts_log", params={"lines": "2000"})
    body = await response.read()
    assert response.status == 200 and int(response.headers["Content-Length"]) == len(body) > 4_000_000
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["x-request-id"] and response.headers["Cache-Control"]
    assert json.loads(body) == {"name": "ts_log", "lines": lines}


@pytest.mark.asyncio
async def test_follow_streams_and_close_ends_it(make_client) -> None:
    client, console = await make_client()
    path = console.log_files["ts_log"]
    path.write_text("old 1\nold 2\n")
    response = await client.get("/console/logs/ts_log/follow", params={"lines": "1"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["x-request-id"]
    assert await response.content.readline() == b"data: old 2\n"
    assert await response.content.readline() == b"\n"
    with open(path, "a") as f:
        f.write("new 1\n")
    async with asyncio.timeout(5):
        assert await response.content.readline() == b"data: new 1\n"
    started = time.monotonic()
    await console.close()
    async with asyncio.timeout(5):
        rest = await response.content.read()  # the stream ends
    assert rest == b"\n"
    assert time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_log_streams_and_uploads_are_capped(make_client, monkeypatch) -> None:
    import server.api.console as console_module

    monkeypatch.setattr(console_module, "MAX_LOG_STREAMS", 1)
    client, console = await make_client()
    console.log_files["ts_log"].write_text("line\n")
    first = await client.get("/console/logs/ts_log/follow")
    assert first.status == 200
    second = await client.get("/console/logs/ts_log/follow")
    assert second.status == 503 and "log streams are open" in (await second.json())["message"]
    await console.close()
    monkeypatch.setattr("server.console.uploads.MAX_UPLOADS", 0)
    upload = await client.post("/console/archives", data={"model_name": "m"})
    assert upload.status == 503 and "uploads are in progress" in (await upload.json())["message"]


@pytest.mark.asyncio
async def test_follow_sends_keep_alive_comments(make_client, monkeypatch) -> None:
    monkeypatch.setattr("server.api.console.KEEPALIVE_S", 0.3)
    client, console = await make_client()
    console.log_files["ts_log"].write_text("")
    response = await client.get("/console/logs/ts_log/follow", params={"lines": "0"})
    assert await response.content.readline() == b": following\n"
    assert await response.content.readline() == b"\n"
    async with asyncio.timeout(5):
        assert await response.content.readline() == b": keep-alive\n"
    response.close()


@pytest.mark.asyncio
async def test_upload_builds_an_archive_in_the_store(make_client) -> None:
    client, console = await make_client()
    response = await client.post(
        "/console/archives",
        data=form(
            {"model_name": "echo", "version": "2.0", "handler": "echo.py:handle"},
            [
                ("handler_file", "echo.py", HANDLER.encode()),
                ("extra_files", "a.json", b"{}"),
                ("extra_files", "../../b.txt", b"b"),
                ("config_file", "/etc/model-config.yaml", b"batchSize: 1\n"),
            ],
        ),
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    store = store_of(console)
    assert body["status"] == "Archive echo.mar created" and body["archive"] == body["url"] == "echo.mar"
    assert body["size"] == (store / "echo.mar").stat().st_size
    assert sorted(body["files"]) == ["MAR-INF/MANIFEST.json", "a.json", "b.txt", "echo.py", "model-config.yaml"]
    assert sorted(p.name for p in store.iterdir()) == ["echo.mar"]  # no upload folder left behind
    with zipfile.ZipFile(store / "echo.mar") as z:
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        assert z.read("echo.py").decode() == HANDLER
    assert manifest["model"]["handler"] == "echo.py:handle" and manifest["model"]["modelVersion"] == "2.0"
    assert manifest["model"]["configFile"] == "model-config.yaml"

    # the archiver's refusals, with its messages; the existing archive is untouched
    before = (store / "echo.mar").read_bytes()
    again = form({"model_name": "echo", "version": "3.0", "handler": "base_handler"}, [])
    response = await client.post("/console/archives", data=again)
    assert response.status == 400
    assert "echo.mar already exists" in (await response.json())["message"]
    assert (store / "echo.mar").read_bytes() == before
    bad_name = form({"model_name": "../evil", "version": "1", "handler": "base_handler"}, [])
    response = await client.post("/console/archives", data=bad_name)
    assert response.status == 400 and "special characters" in (await response.json())["message"]
    bad_runtime = form({"model_name": "r", "version": "1", "handler": "base_handler", "runtime": "java"}, [])
    response = await client.post("/console/archives", data=bad_runtime)
    assert response.status == 400 and "Invalid runtime" in (await response.json())["message"]
    # force replaces it
    forced = form({"model_name": "echo", "version": "3.0", "handler": "base_handler", "force": "true"}, [])
    response = await client.post("/console/archives", data=forced)
    assert response.status == 200, await response.text()
    assert (await response.json())["files"] == ["MAR-INF/MANIFEST.json"]
    assert sorted(p.name for p in store.iterdir()) == ["echo.mar"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fields", "files", "message"),
    [
        ({"version": "1", "handler": "base_handler"}, [], "model_name is required"),
        ({"model_name": "m", "handler": "base_handler"}, [], "version is required"),
        ({"model_name": "m", "version": "1"}, [], "handler is required"),
        # a handler must be built in or uploaded: never a file of the server's
        ({"model_name": "m", "version": "1", "handler": "/etc/passwd"}, [], "neither a built-in"),
        ({"model_name": "m", "version": "1", "handler": "../../x.py"}, [], "neither a built-in"),
        (
            {"model_name": "m", "version": "1", "handler": "other.py"},
            [("handler_file", "h.py", b"")],
            "does not name the uploaded handler_file",
        ),
        ({"model_name": "m", "version": "1", "handler": "base_handler", "color": "red"}, [], "Unknown form field"),
        ({"model_name": "m", "version": "1", "handler": "base_handler"}, [("weights", "w.pt", b"")], "Unknown form"),
        ({"model_name": "m", "version": "1", "handler": "base_handler"}, [("extra_files", "..", b"")], "refusing"),
        ({"model_name": "m", "version": "1", "handler": "base_handler"}, [("extra_files", ".env", b"")], "refusing"),
        (
            {"model_name": "m", "version": "1", "handler": "base_handler"},
            [("model_file", "a.py", b""), ("model_file", "b.py", b"")],
            "Only one model_file",
        ),
    ],
)
async def test_upload_refusals(make_client, fields: dict, files: list, message: str) -> None:
    client, console = await make_client()
    response = await client.post("/console/archives", data=form(fields, files))
    assert response.status == 400
    assert message in (await response.json())["message"]
    assert list(store_of(console).iterdir()) == []


@pytest.mark.asyncio
async def test_upload_over_the_cap_is_413_and_leaves_nothing(make_client) -> None:
    client, console = await make_client(max_upload_size="100000")
    fields = {"model_name": "big", "version": "1", "handler": "base_handler"}
    # known length: refused before reading; streamed (no length): refused once past the cap
    for data in (form(fields, [("serialized_file", "w.pth", b"x" * 300_000)]), None):
        if data is None:

            async def chunks() -> AsyncIterator[bytes]:
                yield b'--B\r\nContent-Disposition: form-data; name="serialized_file"; filename="w.pth"\r\n\r\n'
                for _ in range(30):
                    yield b"x" * 10_000
                yield b"\r\n--B--\r\n"

            response = await client.post(
                "/console/archives", data=chunks(), headers={"Content-Type": "multipart/form-data; boundary=B"}
            )
        else:
            response = await client.post("/console/archives", data=data)
        assert response.status == 413
        body = await response.json()
        assert body["type"] == "RequestEntityTooLargeException" and "max_upload_size" in body["message"]
        assert list(store_of(console).iterdir()) == []


@pytest.mark.asyncio
async def test_upload_needs_the_model_api_and_a_store(make_client) -> None:
    client, _ = await make_client(model_api=False)
    fields = {"model_name": "m", "version": "1", "handler": "base_handler"}
    response = await client.post("/console/archives", data=form(fields, []))
    assert response.status == 405
    assert (await response.json())["type"] == "MethodNotAllowedException"
    client, _ = await make_client(store=False)
    response = await client.post("/console/archives", data=form(fields, []))
    assert response.status == 404
    assert (await response.json())["message"] == "Model store has not been configured."
    client, _ = await make_client()
    assert (await client.get("/console/archives")).status == 405
    response = await client.post("/console/archives", data=b"{}", headers={"Content-Type": "application/json"})
    assert response.status == 400  # not a form


@pytest.mark.asyncio
async def test_the_api_description_lists_the_console_endpoints(make_client) -> None:
    client, _ = await make_client()
    doc = await (await client.options("/")).json()
    for path, method in (
        ("/console/system", "get"),
        ("/console/logs", "get"),
        ("/console/logs/{log_name}", "get"),
        ("/console/logs/{log_name}/follow", "get"),
        ("/console/archives", "post"),
    ):
        assert doc["paths"][path][method]["operationId"].startswith("console"), path
    assert "listeners" in doc["paths"]["/console/system"]["get"]["description"]
    assert "/models" in doc["paths"] and "/metrics" in doc["paths"]
    schema = doc["paths"]["/console/archives"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["model_name", "version"]


@pytest.mark.asyncio
async def test_an_interrupted_upload_leaves_nothing(make_client, caplog: pytest.LogCaptureFixture) -> None:
    client, console = await make_client()
    _, writer = await asyncio.open_connection(client.host, client.port)
    head = b'--B\r\nContent-Disposition: form-data; name="serialized_file"; filename="w.pth"\r\n\r\n'
    writer.write(
        b"POST /console/archives HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
        b"Content-Length: 10000000\r\n\r\n" + head + b"x" * 100_000
    )
    await writer.drain()
    async with asyncio.timeout(5):
        while not any(p.name.startswith(".tsconsole-upload-") for p in store_of(console).iterdir()):
            await asyncio.sleep(0.02)
    writer.close()  # the client goes away mid-upload
    async with asyncio.timeout(5):
        while list(store_of(console).iterdir()):
            await asyncio.sleep(0.02)
    assert "Unexpected error" not in caplog.text


@pytest.mark.asyncio
@pytest.mark.parametrize(("archive_format", "archive"), [("tgz", "m.tar.gz"), ("no-archive", "m")])
async def test_other_archive_formats(make_client, archive_format: str, archive: str) -> None:
    client, console = await make_client()
    fields = {"model_name": "m", "version": "1", "handler": "h.py", "archive_format": archive_format}
    response = await client.post("/console/archives", data=form(fields, [("handler_file", "h.py", HANDLER.encode())]))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["archive"] == body["url"] == archive and body["status"] == f"Archive {archive} created"
    assert sorted(body["files"]) == ["MAR-INF/MANIFEST.json", "h.py"]
    assert [p.name for p in store_of(console).iterdir()] == [archive]
    response = await client.post("/console/archives", data=form(fields, [("handler_file", "h.py", b"")]))
    assert response.status == 400 and "already exists" in (await response.json())["message"]
    fields["force"] = "true"
    response = await client.post("/console/archives", data=form(fields, [("handler_file", "h.py", b"# new\n")]))
    assert response.status == 200, await response.text()
    assert [p.name for p in store_of(console).iterdir()] == [archive]


@pytest.mark.asyncio
async def test_force_never_replaces_an_archive_a_snapshot_names(make_client) -> None:
    client, console = await make_client()
    fields = {"model_name": "saved", "version": "1.0", "handler": "base_handler"}
    assert (await client.post("/console/archives", data=form(fields, []))).status == 200
    before = (store_of(console) / "saved.mar").read_bytes()
    # a snapshot (as the server writes them; a restart without --ncs restores it) names saved.mar
    snapshots = console.settings.log_location / "config"
    snapshots.mkdir()
    saved = {"models": {"saved": {"1.0": {"defaultVersion": True, "marName": "saved.mar", "minWorkers": 1}}}}
    text = "model_store=store\nmodel_snapshot=" + json.dumps(saved) + "\n"
    (snapshots / "20261207120000000-snapshot.cfg").write_text(text)
    forced = form(fields | {"version": "2.0", "force": "true"}, [])
    response = await client.post("/console/archives", data=forced)
    body = await response.json()
    assert response.status == 409, body
    assert "named by the config snapshot 20261207120000000-snapshot.cfg" in body["message"]
    assert (store_of(console) / "saved.mar").read_bytes() == before
    # a newer snapshot that no longer names it (the model was unregistered): force may replace it
    (snapshots / "20261207130000000-snapshot.cfg").write_text("model_snapshot=" + json.dumps({"models": {}}) + "\n")
    response = await client.post("/console/archives", data=form(fields | {"version": "2.0", "force": "true"}, []))
    assert response.status == 200, await response.text()
    assert (store_of(console) / "saved.mar").read_bytes() != before


@pytest.mark.asyncio
async def test_an_upload_that_stalls_gets_408_and_leaves_nothing(make_client) -> None:
    client, console = await make_client(request_body_timeout="1")
    started = time.monotonic()

    async def stalls() -> AsyncIterator[bytes]:
        yield b'--B\r\nContent-Disposition: form-data; name="serialized_file"; filename="w.pth"\r\n\r\n'
        yield b"x" * 1000
        await asyncio.sleep(30)  # nothing more arrives
        yield b"\r\n--B--\r\n"

    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    response = await client.post("/console/archives", data=stalls(), headers=headers)
    assert response.status == 408
    assert "nothing arrived for 1 s" in (await response.json())["message"]
    assert time.monotonic() - started < 10
    assert list(store_of(console).iterdir()) == []
