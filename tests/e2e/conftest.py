"""End-to-end fixtures: real server processes on real sockets, and real model archives."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (held open together while picked: the kernel never hands one out twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def free_port() -> int:
    return free_ports(1)[0]


def write_config(folder: Path, **extra: str) -> dict[str, str]:
    """A config.properties on free ports (REST and gRPC), in ``folder`` (where the server will run).

    Token authorization is off unless ``extra`` says ``disable_token_authorization="false"``.
    """
    picked = free_ports(5)  # distinct: five separate picks could repeat a port
    ports = dict(zip(("inference", "management", "metrics"), picked[:3], strict=True))
    grpc = dict(zip(("grpc_inference", "grpc_management"), picked[3:], strict=True))
    props = {f"{k}_address": f"http://127.0.0.1:{v}" for k, v in ports.items()}
    props |= {f"{k}_port": str(v) for k, v in grpc.items()}
    props |= {"disable_token_authorization": "true"} | extra  # test_token_auth.py passes "false"
    (folder / "config.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return {k: f"http://127.0.0.1:{v}" for k, v in ports.items()} | {k: f"127.0.0.1:{v}" for k, v in grpc.items()}


def tsconsole(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "tsconsole", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def server_env(cwd: Path) -> dict[str, str]:
    return dict(os.environ, TSCONSOLE_PID_FILE=str(cwd / "tsconsole.pid"), LOG_LOCATION=str(cwd / "logs"))


class ForegroundServer:
    """``tsconsole serve`` as a child process; stopped with Ctrl-C (SIGINT) like a person would."""

    def __init__(
        self, cwd: Path, args: list[str], urls: dict[str, str] | None = None, config: dict[str, str] | None = None
    ) -> None:
        self.cwd = cwd
        self.urls = urls or write_config(cwd, **(config or {}))  # given urls: reuse the config.properties there
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tsconsole", "serve", *args],
            cwd=cwd,
            env=server_env(cwd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        deadline = time.monotonic() + 300
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if "Model server started." in line and not line.startswith("20"):
                break
            if time.monotonic() > deadline:
                break
        else:
            pytest.fail("server exited before starting:\n" + "".join(self.output))
        self.inference = self.urls["inference"]
        # Keep reading its console, so a full pipe never stalls the server's logging.
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _read_rest(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain.join(timeout=10)
        return self.proc.returncode


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120) as c:
        yield c


def make_echo_store(
    store: Path, versions: tuple[str, ...] = ("1.0",), *, name: str = "echo", config: bool = True
) -> None:
    """Cheap models (a function entry point echoing its inputs), for API behaviour tests.

    One version writes ``<name>.mar``; several write ``<name>_v<version>.mar`` each.
    """
    from archiver import ModelArchiveConfig, build_model_archive

    src = store.parent / "echo_src"
    src.mkdir(exist_ok=True)
    (src / "echo.py").write_text(
        "import json\n\n\n"
        "def handle(data, context):\n"
        "    if data is None:\n"
        "        return None\n"
        "    context.metrics.add_counter('EchoRequests', len(data))\n"
        "    out = []\n"
        "    for i, row in enumerate(data):\n"
        "        if 'fail' in row:\n"
        "            raise ValueError('asked to fail')\n"
        "        if 'short' in row:\n"
        "            return out\n"
        "        out.append({\n"
        "            'request_id': context.get_request_id(i),\n"
        "            'batch': len(data),\n"
        "            'inputs': {k: [type(v).__name__, v if isinstance(v, (str, dict, list, int)) else v.decode()]\n"
        "                       for k, v in row.items()},\n"
        "            'url_path': context.get_request_header(i, 'url_path'),\n"
        "            'explain': context.get_request_header(i, 'explain'),\n"
        "            'version': context.manifest['model']['modelVersion'],\n"
        "        })\n"
        "    return out\n"
    )
    (src / "model-config.yaml").write_text("batchSize: 8\nmaxBatchDelay: 200\nminWorkers: 1\nmaxWorkers: 1\n")
    for version in versions:
        out = src / f"v{version}"
        out.mkdir(exist_ok=True)
        mar = build_model_archive(
            ModelArchiveConfig(
                model_name=name, handler=str(src / "echo.py"), version=version, export_path=str(out),
                config_file=str(src / "model-config.yaml") if config else None, force=True,
            )
        )  # fmt: skip
        mar.rename(store / (f"{name}.mar" if len(versions) == 1 else f"{name}_v{version}.mar"))


def digits_archive(store: Path, name: str = "digits") -> Path:
    from archiver import ModelArchiveConfig, build_model_archive

    return build_model_archive(
        ModelArchiveConfig(
            model_name=name, version="1.0", model_file=str(DIGITS / "model.py"),
            serialized_file=str(DIGITS / "digits_cnn.pth"), handler=str(DIGITS / "digits_handler.py"),
            extra_files=str(DIGITS / "index_to_name.json"), export_path=str(store),
        )
    )  # fmt: skip


def read_json(response: httpx.Response) -> object:
    return json.loads(response.text)


STREAM_HANDLER = '''
import os
import time

from ts.handler_utils.utils import send_intermediate_predict_response


def handle(data, context):
    """Three intermediate "hello"s, then "hello world ". The body names a gate file: after the first
    intermediate the handler waits (30 s at most) until the gate exists, so a test proves the first
    chunk reached it before the handler went on."""
    if data is None:
        return None
    body = data[0].get("data") or data[0].get("body") or b""
    gate = bytes(body).decode() if isinstance(body, (bytes, bytearray)) else ""
    n = len(data)
    send_intermediate_predict_response(["hello"] * n, context.request_ids, "Intermediate", 200, context)
    deadline = time.time() + 30
    while gate and not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.01)
    for _ in range(2):
        send_intermediate_predict_response(["hello"] * n, context.request_ids, "Intermediate", 200, context)
    return ["hello world "] * n
'''

RECORDING_HANDLER = '''
import json
import time

RECORD = {record!r}


def handle(data, context):
    """Appends every request it receives to RECORD, then answers its text; "sleep:<s>:<mark>" sleeps s seconds."""
    if data is None:
        return None
    out = []
    for row in data:
        value = row.get("data") if row.get("data") is not None else row.get("body")
        text = bytes(value).decode() if isinstance(value, (bytes, bytearray)) else json.dumps(value)
        with open(RECORD, "a") as f:
            f.write(text + "\\n")
        if text.startswith("sleep:"):
            time.sleep(float(text.split(":")[1]))
        out.append(text)
    return out
'''


def make_handler_archive(store: Path, name: str, source: str, config: str = "", version: str = "1.0") -> Path:
    """``<store>/<name>.mar`` holding one function handler ``source`` (and a model-config.yaml if given)."""
    from archiver import ModelArchiveConfig, build_model_archive

    src = store.parent / f"{name}_src"
    src.mkdir(exist_ok=True)
    (src / f"{name}_handler.py").write_text(source)
    if config:
        (src / "model-config.yaml").write_text(config)
    return build_model_archive(
        ModelArchiveConfig(
            model_name=name, handler=str(src / f"{name}_handler.py"), version=version, export_path=str(store),
            config_file=str(src / "model-config.yaml") if config else None, force=True,
        )
    )  # fmt: skip


def make_lab_store(store: Path, record: Path) -> None:
    """echo, stream (intermediate responses) and recorder (writes down every request it gets, one at a time)."""
    make_echo_store(store)
    make_handler_archive(store, "stream", STREAM_HANDLER)
    single = "batchSize: 1\nminWorkers: 1\nmaxWorkers: 1\n"
    make_handler_archive(store, "recorder", RECORDING_HANDLER.format(record=str(record)), single)


def recorded(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


LAB_MAX_REQUEST = 1_000_000
LAB_MAX_RESPONSE = 300_000


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForegroundServer]:
    """A server with the lab models, the model API on, Prometheus metrics and small message limits."""
    cwd = tmp_path_factory.mktemp("lab")
    store = cwd / "store"
    store.mkdir()
    make_lab_store(store, cwd / "record.txt")
    config = {
        "enable_model_api": "true",
        "metrics_mode": "prometheus",
        "max_request_size": str(LAB_MAX_REQUEST),
        "max_response_size": str(LAB_MAX_RESPONSE),
        "request_body_timeout": "1",
    }
    server = ForegroundServer(cwd, ["--model-store", "store", "--models", "all", "--ncs"], config=config)
    yield server
    code = server.stop()
    assert code == 0, f"the server ended with {code}:\n" + "".join(server.output[-60:])
