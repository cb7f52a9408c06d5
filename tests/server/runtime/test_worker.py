"""The worker process on its own: a real ``python -m server.runtime.worker`` and a blocking socket client."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.runtime import protocol
from server.runtime.messages import Inference, InputItem, Load, Reply, Request

ROOT = Path(__file__).resolve().parents[3]
SERVICE = "tests.server.runtime.services:EchoService"


class Worker:
    def __init__(self, proc: subprocess.Popen[str], sock_path: str, first_lines: list[str]) -> None:
        self.proc = proc
        self.sock_path = sock_path
        self.first_lines = first_lines
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.settimeout(30)
        self.conn.connect(sock_path)

    def ask(self, msg: protocol.Message) -> protocol.Message | None:
        protocol.send_message(self.conn, msg)
        return protocol.recv_message(self.conn)


@pytest.fixture
def start_worker() -> Iterator:
    procs: list[subprocess.Popen[str]] = []
    workers: list[Worker] = []
    tmp = tempfile.mkdtemp(prefix="tsc-test-")

    def start(service: str = SERVICE) -> Worker:
        sock_path = os.path.join(tmp, f"w-{len(procs)}.sock")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.runtime.worker", "--sock", sock_path, "--service", service],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(proc)
        assert proc.stdout is not None
        lines = [proc.stdout.readline().rstrip("\n"), proc.stdout.readline().rstrip("\n")]
        workers.append(Worker(proc, sock_path, lines))
        return workers[-1]

    yield start
    for worker in workers:
        worker.conn.close()
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    shutil.rmtree(tmp, ignore_errors=True)


def load(handler: str = "echo") -> Load:
    return Load("mymodel", "/nonexistent", 4, handler, model_version="2.0")


def test_start_lines_load_inference_and_clean_exit(start_worker) -> None:
    worker = start_worker()
    assert worker.first_lines == [f"[PID]{worker.proc.pid}", "Torch worker started."]
    assert worker.ask(load()) == Reply(200, "mymodel loaded")
    assert not os.path.exists(worker.sock_path)  # unlinked once the frontend connected
    requests = [Request(f"r{i}", [("h", "v")], [InputItem("body", "", f"in-{i}".encode())]) for i in range(3)]
    batch = Inference(requests)
    reply = worker.ask(batch)
    assert isinstance(reply, Reply) and reply.code == 200
    assert [r.request_id for r in reply.responses] == ["r0", "r1", "r2"]
    bodies = [json.loads(r.body) for r in reply.responses]
    assert [b["input"] for b in bodies] == ["in-0", "in-1", "in-2"]
    assert {b["batch"] for b in bodies} == {3}
    assert bodies[0]["model_version"] == "2.0"
    fail = worker.ask(Inference([Request("x", [], [InputItem("body", "", b"fail:507:Out of resources")])]))
    assert fail == Reply(507, "Out of resources")
    worker.conn.shutdown(socket.SHUT_WR)  # end of stream: the worker exits 0
    assert worker.proc.wait(10) == 0
    out, err = worker.proc.communicate()
    assert out == "echo service loading mymodel\n"  # nothing else on stdout
    assert "echo service stderr mymodel" in err


def test_load_error_is_replied_then_the_worker_exits(start_worker) -> None:
    worker = start_worker()
    assert worker.ask(load("fail_load:507:Out of resources")) == Reply(507, "Out of resources")
    assert worker.proc.wait(10) == 1


def test_unknown_service_is_a_load_failure(start_worker) -> None:
    worker = start_worker("tests.server.runtime.no_such_module:Nope")
    reply = worker.ask(load())
    assert isinstance(reply, Reply) and reply.code == 500
    assert "no_such_module" in reply.message
    assert worker.proc.wait(10) == 1


def test_a_raising_predict_is_a_503_and_the_worker_survives(start_worker) -> None:
    worker = start_worker()
    worker.ask(load())
    assert worker.ask(Inference([Request("x", [], [InputItem("body", "", b"raise")])])) == Reply(
        503, "Prediction failed"
    )
    reply = worker.ask(Inference([Request("y", [], [InputItem("body", "", b"ok")])]))
    assert isinstance(reply, Reply) and reply.code == 200


def test_garbage_on_the_socket_ends_the_worker(start_worker) -> None:
    worker = start_worker()
    worker.conn.sendall(b"\x00\x00\x00\x02ZZ")
    assert worker.proc.wait(10) == 1
    assert "Protocol error" in worker.proc.communicate()[1]
