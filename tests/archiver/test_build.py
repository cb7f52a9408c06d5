"""Building archives: streaming, progress, atomic replacement, and the inspect/unpack commands."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from archiver import ArchiveInputError, ModelArchiveConfig, build_model_archive, extract_archive
from archiver.writer import write_archive
from tests.archiver.conftest import run_ours

MiB = 1024 * 1024


def big_file(path: Path, mib: int) -> Path:
    """An incompressible-looking file of ``mib`` MiB, written without holding it in memory."""
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(block)
    return path


def test_hundreds_of_mb_are_streamed_not_loaded(tmp_path: Path) -> None:
    weights = big_file(tmp_path / "big.pth", 200)
    config = ModelArchiveConfig(
        model_name="big",
        handler="base_handler",
        version="1.0",
        serialized_file=str(weights),
        export_path=str(tmp_path),
        archive_format="zip-store",
    )
    tracemalloc.start()
    try:
        mar = build_model_archive(config)
        _, build_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        extract_archive(mar, tmp_path / "unpacked")
        _, extract_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert mar.stat().st_size > 200 * MiB
    assert (tmp_path / "unpacked" / "big.pth").stat().st_size == 200 * MiB
    # A whole-file read would allocate 200 MiB; streaming stays at a few chunks.
    assert build_peak < 16 * MiB, build_peak
    assert extract_peak < 16 * MiB, extract_peak


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    big_file(tmp_path / "w.pth", 6)
    args = ["--model-name", "p", "--version", "1", "--handler", "base_handler", "--serialized-file", "w.pth"]
    primary, replica = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsconsole", "archive", *args, "--archive-format", "zip-store"],
        cwd=tmp_path,
        stderr=replica,
        stdout=subprocess.DEVNULL,
    )
    os.close(replica)
    out = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the pty closes when the process exits
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=60) == 0
    text = out.decode()
    assert "p [" in text and "100%" in text and "6.0 MB / 6.0 MB" in text


def test_no_progress_bar_when_not_a_terminal(tmp_path: Path) -> None:
    big_file(tmp_path / "w.pth", 6)
    args = ["--model-name", "q", "--version", "1", "--handler", "base_handler", "--serialized-file", "w.pth"]
    result = run_ours(args, tmp_path)
    assert result.returncode == 0
    assert result.stderr == ""


def test_failed_build_keeps_the_old_archive_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    output = tmp_path / "m.mar"
    output.write_bytes(b"previous archive")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(FileNotFoundError):
        write_archive(output, {"a.txt": tmp_path / "a.txt", "gone.pth": tmp_path / "gone.pth"}, "M", "{}")
    assert output.read_bytes() == b"previous archive"
    assert sorted(os.listdir(tmp_path)) == before


def test_force_replaces_a_no_archive_folder(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("1")
    (tmp_path / "two.txt").write_text("2")
    base = dict(model_name="dir", handler="base_handler", version="1", export_path=str(tmp_path))
    build_model_archive(ModelArchiveConfig(**base, extra_files=str(tmp_path / "one.txt"), archive_format="no-archive"))
    with pytest.raises(ArchiveInputError, match="already exists"):
        build_model_archive(ModelArchiveConfig(**base, archive_format="no-archive"))
    build_model_archive(
        ModelArchiveConfig(**base, extra_files=str(tmp_path / "two.txt"), archive_format="no-archive", force=True)
    )
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["MAR-INF", "two.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_archive_never_contains_itself(tmp_path: Path) -> None:
    (tmp_path / "vocab.txt").write_text("words")
    config = dict(model_name="self", handler="base_handler", version="1", extra_files=str(tmp_path))
    build_model_archive(ModelArchiveConfig(**config, export_path=str(tmp_path)))
    build_model_archive(ModelArchiveConfig(**config, export_path=str(tmp_path), force=True))
    with zipfile.ZipFile(tmp_path / "self.mar") as zf:
        assert sorted(zf.namelist()) == ["MAR-INF/MANIFEST.json", "vocab.txt"]


def test_a_file_and_a_folder_of_one_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "extra" / "sub").mkdir(parents=True)
    (tmp_path / "extra" / "sub" / "x.txt").write_text("x")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "sub").write_text("a file called sub")
    config = ModelArchiveConfig(
        model_name="clash", handler="base_handler", version="1", export_path=str(tmp_path),
        extra_files=f"{tmp_path / 'extra'},{tmp_path / 'flat'}",
    )  # fmt: skip
    with pytest.raises(ArchiveInputError, match="both a file and a folder"):
        build_model_archive(config)
    assert not (tmp_path / "clash.mar").exists()


def test_inspect_and_unpack_commands(model_inputs: Path, tmp_path: Path) -> None:
    args = ["--model-name", "cli", "--version", "3.0", "--model-file", "model.py", "--serialized-file"]
    args += [
        "tiny.pth",
        "--handler",
        "my_handler.py",
        "--export-path",
        str(tmp_path),
        "-c",
        "model-config.yaml",
    ]
    assert run_ours(args, model_inputs).returncode == 0
    mar = str(tmp_path / "cli.mar")

    human = run_ours(["--inspect", mar], tmp_path)
    assert human.returncode == 0
    for expected in (
        "Model       cli",
        "Version     3.0",
        "Handler     my_handler.py",
        "tiny.pth",
        "model.py",
    ):
        assert expected in human.stdout

    as_json = json.loads(run_ours(["--inspect", mar, "--json"], tmp_path).stdout)
    assert as_json["kind"] == "model" and as_json["format"] == "zip"
    assert as_json["manifest"]["model"]["configFile"] == "model-config.yaml"
    assert {f["name"] for f in as_json["files"]} == {
        "model.py", "tiny.pth", "my_handler.py", "model-config.yaml", "MAR-INF/MANIFEST.json",
    }  # fmt: skip

    unpack = run_ours(["--unpack", mar, "--export-path", str(tmp_path / "models")], tmp_path)
    assert unpack.returncode == 0, unpack.stderr
    assert (tmp_path / "models" / "cli" / "tiny.pth").read_bytes() == (model_inputs / "tiny.pth").read_bytes()
    again = run_ours(["--unpack", mar, "--export-path", str(tmp_path / "models")], tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
