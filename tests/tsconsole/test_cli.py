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
