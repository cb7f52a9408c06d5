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
