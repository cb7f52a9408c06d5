"""The `tsconsole` command line: dispatch, help, unknown commands."""

from __future__ import annotations

import subprocess
import sys


def tsconsole(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tsconsole", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_the_commands() -> None:
    result = tsconsole("--help")
    assert result.returncode == 0
    assert "archive" in result.stdout


def test_unknown_command_is_an_error() -> None:
    result = tsconsole("frobnicate")
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr


def test_archive_help_shows_torch_model_archiver_flags() -> None:
    result = tsconsole("archive", "--help")
    assert result.returncode == 0
    for flag in ("--model-name", "--serialized-file", "--archive-format", "--requirements-file", "--inspect"):
        assert flag in result.stdout
    workflow = tsconsole("archive", "workflow", "--help")
    assert workflow.returncode == 0 and "--spec-file" in workflow.stdout


def test_serve_and_start_need_a_model_store(tmp_path) -> None:
    for command in ("serve", "start"):
        result = subprocess.run(
            [sys.executable, "-m", "tsconsole", command], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2
        assert "--model-store is required" in result.stderr


def test_busy_port_is_a_clear_error(tmp_path) -> None:
    import os
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "config.properties").write_text(f"inference_address=http://127.0.0.1:{port}\n")
        (tmp_path / "store").mkdir()
        env = dict(os.environ, TSCONSOLE_PID_FILE=str(tmp_path / "pid"), LOG_LOCATION=str(tmp_path / "logs"))
        serve = subprocess.run(
            [sys.executable, "-m", "tsconsole", "serve", "--model-store", "store"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert serve.returncode == 1
        assert f"cannot listen on http://127.0.0.1:{port}" in serve.stderr
        start = subprocess.run(
            [sys.executable, "-m", "tsconsole", "start", "--model-store", "store"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert start.returncode == 1
        assert "failed to start" in start.stderr and "cannot listen" in start.stderr
        assert not (tmp_path / "pid").exists()


def test_stop_and_status_when_nothing_runs(tmp_path) -> None:
    import os

    env = dict(os.environ, TSCONSOLE_PID_FILE=str(tmp_path / "pid"))
    for command, code in (("status", 3), ("stop", 0)):
        result = subprocess.run(
            [sys.executable, "-m", "tsconsole", command], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == code
        assert "not currently running" in result.stdout


def test_start_and_status_show_every_address(tmp_path) -> None:
    import json

    from tests.e2e.conftest import server_env, write_config

    urls = write_config(tmp_path)
    (tmp_path / "store").mkdir()
    env = server_env(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tsconsole", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip

    start = run("start", "--ncs", "--model-store", "store")
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        status = run("status")
        assert status.returncode == 0 and "Healthy" in status.stdout.splitlines()[0], status.stdout
        addresses = [
            f"  inference:  {urls['inference']}",
            f"  management: {urls['management']}",
            f"  grpc:       {urls['grpc_inference']} (inference), {urls['grpc_management']} (management)",
            f"  logs:       {(tmp_path / 'logs').resolve()}",
        ]
        assert start.stdout.splitlines()[1:] == addresses
        assert status.stdout.splitlines()[1:] == addresses
        record = json.loads((tmp_path / "tsconsole.pid").read_text())
        grpc = ("grpc_inference", "grpc_management")
        assert [record[key] for key in grpc] == [urls[key] for key in grpc]  # in the pid file, for later commands
    finally:
        stop = run("stop")
    assert stop.returncode == 0 and "stopped" in stop.stdout


def test_a_pid_file_from_before_grpc_still_loads(tmp_path, monkeypatch, capsys) -> None:
    import json
    import os

    from tests.e2e.conftest import free_port
    from tsconsole import daemon

    pid_file = tmp_path / "tsconsole.pid"
    monkeypatch.setenv("TSCONSOLE_PID_FILE", str(pid_file))
    nobody = f"http://127.0.0.1:{free_port()}"
    older = {
        "pid": os.getpid(), "inference": nobody, "management": nobody, "metrics": nobody,
        "log_location": str(tmp_path / "logs"), "model_store": str(tmp_path / "store"), "output": "server.log",
    }  # fmt: skip
    pid_file.write_text(json.dumps(older))
    record = daemon.running()
    assert record is not None and (record.grpc_inference, record.grpc_management) == ("", "")
    assert daemon.status() == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        f"  inference:  {nobody}",
        f"  management: {nobody}",
        f"  logs:       {tmp_path / 'logs'}",
        f"  models:     the management API at {nobody} did not answer (ConnectError)",
    ]  # no gRPC line rather than a wrong one; one line (no traceback) when the management API does not answer

    # and a newer tsconsole's record, with keys this one does not know, is still read
    pid_file.write_text(json.dumps(older | {"grpc_inference": "127.0.0.1:7070", "kserve": "http://127.0.0.1:8085"}))
    record = daemon.running()
    assert record is not None and (record.grpc_inference, record.grpc_management) == ("127.0.0.1:7070", "")
    assert "  grpc:       127.0.0.1:7070 (inference)" in record.lines()


def test_status_lines_name_ready_workers_and_why_the_others_fail() -> None:
    from tsconsole.daemon import _model_lines

    def worker(status: str, failure: str | None = None) -> dict[str, object]:
        return {"id": "9000", "status": status, "lastFailure": failure}

    versions = [
        {"modelName": "digits", "modelVersion": "1.0", "workers": [worker("READY"), worker("READY")]},
        {"modelName": "digits", "modelVersion": "2.0", "workers": [worker("READY", "an old one"), worker("UNLOADING")]},
        {"modelName": "broken", "modelVersion": "1.0", "workers": [worker("UNLOADING", "code 500:\n  no such device")]},
        {"modelName": "idle", "modelVersion": "1.0", "workers": []},
    ]
    assert _model_lines(versions) == [
        "  digits 1.0: 2/2 workers ready",
        "  digits 2.0: 1/2 workers ready",  # a READY worker's failure is over
        "  broken 1.0: 0/1 workers ready; failing: code 500: no such device",  # one line, whatever the reason
        "  idle 1.0: 0/0 workers ready",
    ]
