"""The /console/... endpoints of a real `tsconsole serve`, through the console's own client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import DIGITS, ForegroundServer, make_echo_store
from tsconsole.client import ApiError, Client, Endpoints, Listeners

CAP = 1024 * 1024  # max_upload_size of the module's server
CHATTY = """\
def handle(data, context):
    if data is None:
        return None
    out = []
    for row in data:
        body = row.get("body") or row.get("data")
        text = body.decode() if isinstance(body, (bytes, bytearray)) else str(body)
        if text.startswith("burst "):
            count = int(text.split()[1])
            print("\\n".join(f"chatty-line {i}" for i in range(count)), flush=True)
        out.append({"echo": text})
    return out
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("console")
    store = cwd / "store"
    store.mkdir()
    make_echo_store(store)
    server = ForegroundServer(
        cwd,
        ["--model-store", "store", "--ncs", "--enable-model-api", "--models", "echo.mar"],
        config={"max_upload_size": str(CAP)},
    )
    server.store = store
    yield server
    assert server.stop() == 0


def client_for(server: ForegroundServer) -> Client:
    urls = server.urls
    return Client(Endpoints(urls["inference"], urls["management"], urls["metrics"]))


def run(coro):
    return asyncio.run(coro)


def store_listing(server: ForegroundServer) -> list[str]:
    return sorted(p.name for p in server.store.iterdir())


async def collect(lines: AsyncIterator[str], into: list[str], done: asyncio.Event, until) -> None:
    async for line in lines:
        into.append(line)
        if until(line):
            done.set()
            return


def test_system_shows_the_host_and_the_live_worker(server: ForegroundServer) -> None:
    async def main() -> tuple[dict, dict]:
        async with client_for(server) as c:
            first = await c.system()
            await asyncio.sleep(0.3)
            return first, await c.system()

    first, second = run(main())
    host = first["host"]
    assert isinstance(host["cpuPercent"], float) and host["cpuCount"] >= 1
    assert 0 < host["memoryUsed"] <= host["memoryTotal"] and 0 <= host["memoryPercent"] <= 100
    assert 0 < host["diskUsed"] <= host["diskTotal"]
    assert isinstance(first["gpus"], list) and isinstance(first["gpuStatus"], str)
    if not first["gpus"]:
        assert first["gpuStatus"].startswith("NVML")  # a plain sentence: why there is none
    pids = {p.pid for p in server.workers()}
    [worker] = [w for w in second["workers"] if w["model"] == "echo"]
    assert worker["version"] == "1.0" and worker["status"] == "READY" and worker["id"]
    assert worker["pid"] in pids
    assert worker["rss"] > 10 * 1024 * 1024
    assert isinstance(worker["cpuPercent"], float)  # primed by the first call
    assert worker["gpu"] is None and worker["gpuMemory"] is None
    urls = server.urls  # where write_config put the listeners, gRPC ones included
    roles = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
    assert first["listeners"] == {role: urls[role] for role in roles}
    assert Listeners.parse(first["listeners"]) == Listeners(*(urls[role] for role in roles))


def test_logs_list_and_tail(server: ForegroundServer) -> None:
    async def main() -> tuple[list, list, list]:
        async with client_for(server) as c:
            files, ts_log = await c.log_files(), await c.log_tail("ts_log", 10_000)
            async with asyncio.timeout(10):  # the access log is written just after each response
                while True:
                    access = await c.log_tail("access_log", 3)
                    if any("GET /console/logs HTTP/1.1" in line for line in access):
                        break
                    await asyncio.sleep(0.1)
            return files, ts_log, access

    files, ts_log, access = run(main())
    names = [f["name"] for f in files]
    assert names[:3] == ["ts_log", "model_log", "access_log"] and "ts_metrics" in names
    assert all(f["file"] == f["name"] + ".log" and isinstance(f["size"], int) for f in files)
    assert any(line.endswith("Model server started.") for line in ts_log)
    assert len(access) == 3


def test_unknown_logs_are_404(server: ForegroundServer) -> None:
    async def main() -> list[ApiError]:
        errors = []
        async with client_for(server) as c:
            for call in (c.log_tail("../../etc/passwd"), c.log_tail("nope"), anext(c.follow_log("nope"))):
                with pytest.raises(ApiError) as caught:
                    await call
                errors.append(caught.value)
        return errors

    for error in run(main()):
        assert error.status == 404 and error.type == "ResourceNotFoundException"
    assert "Unknown log: nope" in error.message and "access_log" in error.message


def test_follow_gets_the_access_log_line_of_a_later_request(server: ForegroundServer) -> None:
    marker = uuid.uuid4().hex

    async def main() -> list[str]:
        async with client_for(server) as c:
            got: list[str] = []
            done = asyncio.Event()
            task = asyncio.create_task(collect(c.follow_log("access_log", lines=1), got, done, lambda s: marker in s))
            try:
                async with asyncio.timeout(15):
                    while not done.is_set():  # until the stream is surely on: its line proves it
                        async with httpx.AsyncClient() as h:
                            await h.get(f"{server.inference}/ping", params={"marker": marker})
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(0.5):
                                await done.wait()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            return got

    got = run(main())
    assert f'"GET /ping?marker={marker} HTTP/1.1" 200' in got[-1]


def upload_chatty(server: ForegroundServer, tmp_path: Path, name: str) -> dict:
    handler = tmp_path / "chatty.py"
    handler.write_text(CHATTY)
    config = tmp_path / "model-config.yaml"
    config.write_text("minWorkers: 1\nmaxWorkers: 1\n")

    async def main() -> dict:
        async with client_for(server) as c:
            result = await c.upload_archive(
                {"handler_file": handler, "config_file": config},
                {"model_name": name, "version": "1.0", "handler": "chatty.py"},
            )
            await c.register(result["url"], initial_workers=1, synchronous=True)
            return result

    return run(main())


def test_a_burst_of_model_log_lines_all_arrive(server: ForegroundServer, tmp_path: Path) -> None:
    upload_chatty(server, tmp_path, "chatty")

    async def main() -> tuple[list[str], float]:
        async with client_for(server) as c:
            got: list[str] = []
            done = asyncio.Event()
            task = asyncio.create_task(
                collect(c.follow_log("model_log"), got, done, lambda s: s.endswith("chatty-line 4999"))
            )
            try:
                await asyncio.sleep(0.5)  # the stream is on
                started = time.monotonic()
                prediction = await c.predict("chatty", b"burst 5000")
                assert prediction.status == 200, prediction.text
                async with asyncio.timeout(30):
                    await done.wait()
                return got, time.monotonic() - started
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    got, elapsed = run(main())
    burst = [line.rsplit(" - ", 1)[1] for line in got if "chatty-line" in line]
    assert burst == [f"chatty-line {i}" for i in range(5000)]
    assert elapsed < 15


def test_an_uploaded_archive_registers_and_serves(server: ForegroundServer) -> None:
    files = {
        "serialized_file": DIGITS / "digits_cnn.pth",
        "model_file": DIGITS / "model.py",
        "handler_file": DIGITS / "digits_handler.py",
        "extra_files": [DIGITS / "index_to_name.json"],
    }
    fields = {"model_name": "digits", "version": "1.0", "handler": "digits_handler.py", "force": False}

    async def main() -> tuple[dict, httpx.Response]:
        async with client_for(server) as c:
            result = await c.upload_archive(files, fields)
            with pytest.raises(ApiError) as again:  # it exists now: the archiver's message, 400
                await c.upload_archive(files, fields)
            assert again.value.status == 400 and "already exists" in again.value.message
            await c.register(result["url"], initial_workers=1, synchronous=True)
            sample = (DIGITS / "samples" / "digit_3_30.png").read_bytes()
            return result, await c.predict("digits", sample)

    result, prediction = run(main())
    assert result["status"] == "Archive digits.mar created" and result["archive"] == result["url"] == "digits.mar"
    assert sorted(result["files"]) == sorted(
        ["MAR-INF/MANIFEST.json", "digits_cnn.pth", "model.py", "digits_handler.py", "index_to_name.json"]
    )
    assert result["size"] == (server.store / "digits.mar").stat().st_size
    assert prediction.status == 200, prediction.text
    assert next(iter(prediction.json())) == "3"
    assert not [n for n in store_listing(server) if n.startswith(".")]  # no upload folder left


def test_hostile_upload_names_are_neutralised(server: ForegroundServer) -> None:
    url = f"{server.urls['management']}/console/archives"
    files = [
        ("handler_file", ("../../../hostile.py", b"def handle(data, context):\n    return data\n")),
        ("extra_files", (str(server.cwd / "escaped.json"), b"{}")),  # an absolute path: only its name counts
        ("extra_files", ("..\\..\\win.txt", b"w")),
    ]
    data = {"model_name": "hostile", "version": "1", "handler": "hostile.py"}
    r = httpx.post(url, data=data, files=files)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["files"]) == ["MAR-INF/MANIFEST.json", "escaped.json", "hostile.py", "win.txt"]
    assert not (server.cwd / "escaped.json").exists() and not (server.cwd.parent / "hostile.py").exists()
    assert "hostile.mar" in store_listing(server)
    r = httpx.post(url, data=data | {"model_name": "h2"}, files=[("handler_file", ("..", b""))])
    assert r.status_code == 400 and "refusing" in r.json()["message"]
    assert "h2.mar" not in store_listing(server)


def test_force_never_replaces_the_archive_of_a_registered_model(server: ForegroundServer) -> None:
    url = f"{server.urls['management']}/console/archives"
    before = (server.store / "echo.mar").read_bytes()
    handler = [("handler_file", ("h.py", b"def handle(data, context):\n    return data\n"))]
    data = {"model_name": "echo", "version": "9", "handler": "h.py", "force": "true"}
    r = httpx.post(url, data=data, files=handler)
    assert r.status_code == 409 and "in use by model echo" in r.json()["message"]
    assert (server.store / "echo.mar").read_bytes() == before


def test_an_upload_over_the_cap_is_413_and_leaves_nothing(server: ForegroundServer, tmp_path: Path) -> None:
    before = store_listing(server)
    big = tmp_path / "weights.pth"
    big.write_bytes(b"\0" * (3 * CAP))

    async def main() -> ApiError:
        async with client_for(server) as c:
            with pytest.raises(ApiError) as caught:
                await c.upload_archive({"serialized_file": big}, {"model_name": "big", "version": "1",
                                                                  "handler": "base_handler"})  # fmt: skip
            return caught.value

    error = run(main())
    assert error.status == 413 and "max_upload_size" in error.message

    def chunks():  # no Content-Length: refused once past the cap
        yield b'--B\r\nContent-Disposition: form-data; name="serialized_file"; filename="w.pth"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * (64 * 1024)
        yield b"\r\n--B--\r\n"

    r = httpx.post(
        f"{server.urls['management']}/console/archives",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=B"},
    )
    assert r.status_code == 413 and r.json()["type"] == "RequestEntityTooLargeException"
    assert store_listing(server) == before


def test_the_model_api_rule_and_a_quick_stop_with_an_open_stream(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    server = ForegroundServer(tmp_path, ["--model-store", "store", "--ncs"])  # the model API is off
    try:

        async def main() -> float:
            async with client_for(server) as c:
                with pytest.raises(ApiError) as caught:
                    await c.upload_archive({}, {"model_name": "m", "version": "1", "handler": "base_handler"})
                assert caught.value.status == 405 and caught.value.type == "MethodNotAllowedException"
                got: list[str] = []
                task = asyncio.create_task(
                    collect(c.follow_log("ts_log", lines=5), got, asyncio.Event(), lambda _: False)
                )
                async with asyncio.timeout(10):
                    while not got:
                        await asyncio.sleep(0.05)
                started = time.monotonic()
                stopping = threading.Thread(target=server.stop)
                stopping.start()
                await asyncio.to_thread(stopping.join, 30)
                elapsed = time.monotonic() - started
                async with asyncio.timeout(5):
                    await asyncio.gather(task, return_exceptions=True)  # the stream ended with the server
                return elapsed

        elapsed = run(main())
        assert elapsed < 15, elapsed  # an open stream used to hold the stop for ~35 s
        assert server.proc.returncode == 0
        assert store_listing_of(store) == []
    finally:
        server.stop()


def store_listing_of(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir())


def test_the_api_description_lists_the_console_endpoints(server: ForegroundServer) -> None:
    doc = json.loads(httpx.request("OPTIONS", server.urls["management"] + "/").text)
    assert {"/console/system", "/console/logs", "/console/logs/{log_name}", "/console/archives"} <= set(doc["paths"])
    assert "/console/logs/{log_name}/follow" in doc["paths"] and "/models" in doc["paths"]
