"""`tsconsole models / register / scale / set-default / unregister` against a real server, as subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from tests.e2e.conftest import ForegroundServer, free_port


def tsconsole(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tsconsole", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_manage_models_from_the_shell(console_server: ForegroundServer, tmp_path: Path) -> None:
    mgmt = ["--management", console_server.urls["management"]]

    r = tsconsole("register", "clireg.mar", "--initial-workers", "1", "--batch-size", "2", *mgmt, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'Model "clireg" Version: 1.0 registered with 1 initial workers'

    r = tsconsole("register", "multi_v1.0.mar", *mgmt, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = tsconsole("register", "multi_v2.0.mar", "--name", "multi", "--no-sync", *mgmt, cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    r = tsconsole("models", "--json", *mgmt, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {(m["name"], m["version"]): m for m in json.loads(r.stdout)}
    assert rows["clireg", "1.0"]["batchSize"] == 2
    assert rows["clireg", "1.0"]["default"] is True
    assert rows["multi", "1.0"]["default"] is True and rows["multi", "2.0"]["default"] is False

    r = tsconsole("scale", "clireg", "2", "--sync", *mgmt, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Workers scaled to 2 for model: clireg"

    r = tsconsole("set-default", "multi", "2.0", *mgmt, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'Default version successfully updated for model "multi" to "2.0"'

    r = tsconsole("models", *mgmt, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "DEFAULT", "WORKERS", "STATUS"]
    table = {tuple(line.split()[:2]): line.split() for line in lines[1:]}
    assert table["clireg", "1.0"][2:] == ["*", "2/2", "READY"]
    assert table["multi", "2.0"][2] == "*"
    assert table["multi", "1.0"][2] != "*"

    r = tsconsole("unregister", "multi", "--version", "1.0", *mgmt, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = tsconsole("unregister", "clireg", *mgmt, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'Model "clireg" unregistered'

    # failures: exit 1 with the server's own message
    r = tsconsole("unregister", "clireg", *mgmt, cwd=tmp_path)
    assert r.returncode == 1
    assert "clireg" in r.stderr and "Traceback" not in r.stderr
    r = tsconsole("scale", "multi", "3", "1", *mgmt, cwd=tmp_path)
    assert r.returncode == 1
    assert "max_worker cannot be less than min_worker" in r.stderr
    r = tsconsole("register", "nothing-here.mar", *mgmt, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("tsconsole: ")


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    r = tsconsole("models", "--management", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert r.returncode == 1
    assert "cannot reach" in r.stderr and "Traceback" not in r.stderr


def test_console_help_lists_the_console_flags(tmp_path: Path) -> None:
    r = tsconsole("console", "--help", cwd=tmp_path)
    assert r.returncode == 0
    for flag in ("--read-only", "--inference", "--management", "--metrics"):
        assert flag in r.stdout
    r = tsconsole("--help", cwd=tmp_path)
    for command in ("models", "register", "scale", "unregister", "set-default"):
        assert command in r.stdout


def test_logs_from_the_shell(console_server: ForegroundServer, tmp_path: Path) -> None:
    import httpx

    mgmt = ["--management", console_server.urls["management"]]
    marker = "/predictions/no-such-model-for-the-logs-test"
    httpx.post(console_server.inference + marker, content=b"x", timeout=30)
    tail = tsconsole("logs", "access_log", "-n", "200", *mgmt, cwd=tmp_path)
    assert tail.returncode == 0, tail.stderr
    assert f'"POST {marker} HTTP/1.1" 404' in tail.stdout

    follow = subprocess.Popen(
        [sys.executable, "-m", "tsconsole", "logs", "access_log", "-f", "-n", "0", *mgmt],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    stop = threading.Event()

    def keep_requesting() -> None:  # the follower may subscribe after any one request: keep sending
        while not stop.wait(0.3):
            httpx.post(f"{console_server.inference}{marker}-followed", content=b"x", timeout=30)

    sender = threading.Thread(target=keep_requesting, daemon=True)
    sender.start()
    try:
        assert follow.stdout is not None
        line = ""
        while f"{marker}-followed" not in line:
            line = follow.stdout.readline()
            assert line, "the follower ended without showing the request"
    finally:
        stop.set()
        follow.terminate()
        follow.wait(timeout=30)
        sender.join(timeout=30)

    missing = tsconsole("logs", "no_such_log", *mgmt, cwd=tmp_path)
    assert missing.returncode == 1 and "no_such_log" in missing.stderr
