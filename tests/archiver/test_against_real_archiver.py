"""Our archiver against the real torch-model-archiver / torch-workflow-archiver, from the same inputs.

Same file list, same bytes, same compression, same manifest (keys, order, values; only createdOn may
differ), same errors for the same mistakes, in every archive format; and every archive the real tool
makes opens, validates and unpacks with our library.
"""

from __future__ import annotations

import json
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from archiver import ModelManifest, extract_archive, inspect_archive
from tests.archiver.conftest import run_ours, run_theirs

FORMATS = ["default", "zip-store", "tgz", "no-archive"]
SUFFIX = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}
VARIANTS = {
    "builtin-handler": [
        "--model-file", "model.py", "--serialized-file", "tiny.pth",
        "--handler", "image_classifier", "--extra-files", "index_to_name.json",
    ],
    "every-flag": [
        "--model-file", "model.py", "--serialized-file", "tiny.pth", "--handler", "my_handler.py",
        "--extra-files", "index_to_name.json,extra,glob_*.txt", "-r", "requirements.txt",
        "-c", "model-config.yaml", "--runtime", "python3",
    ],
    "handler-function": ["--serialized-file", "tiny.pth", "--handler", "my_handler:handle"],
}  # fmt: skip


def read_output(path: Path, fmt: str) -> dict[str, tuple[bytes, object]]:
    """Archive member name -> (bytes, how it is stored), for any format."""
    if fmt == "no-archive":
        return {p.relative_to(path).as_posix(): (p.read_bytes(), None) for p in path.rglob("*") if p.is_file()}
    if fmt == "tgz":
        with tarfile.open(path) as tf:
            return {m.name: (tf.extractfile(m).read(), (m.type, m.mode)) for m in tf.getmembers()}
    with zipfile.ZipFile(path) as zf:
        return {i.filename: (zf.read(i), (i.compress_type, i.external_attr)) for i in zf.infolist()}


def manifest_of(files: dict[str, tuple[bytes, object]], prefix: str = "") -> str:
    return files[f"{prefix}MAR-INF/MANIFEST.json"][0].decode()


def without_created_on(text: str) -> str:
    return re.sub(r'"createdOn": "[^"]*"', '"createdOn": "X"', text)


def build_both(inputs: Path, args: list[str], name: str, fmt: str) -> tuple[Path, Path]:
    outputs = []
    for who, runner in (("theirs", run_theirs), ("ours", run_ours)):
        export = inputs / f"out-{who}-{name}-{fmt}"
        export.mkdir()
        flags = ["--model-name", name, "--version", "2.1", *args, "--export-path", str(export)]
        flags += ["--archive-format", fmt]
        result = runner("torch-model-archiver", flags, inputs) if who == "theirs" else runner(flags, inputs)
        assert result.returncode == 0, result.stderr
        outputs.append(export / f"{name}{SUFFIX[fmt]}")
    return outputs[0], outputs[1]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_same_archive_as_torch_model_archiver(model_inputs: Path, variant: str, fmt: str) -> None:
    name = f"m-{variant}"
    theirs_path, ours_path = build_both(model_inputs, VARIANTS[variant], name, fmt)
    theirs, ours = read_output(theirs_path, fmt), read_output(ours_path, fmt)

    assert sorted(ours) == sorted(theirs)
    for member, (data, how) in theirs.items():
        assert ours[member][0] == data or member.endswith("MANIFEST.json"), member
        assert ours[member][1] == how, f"{member} stored differently"
    prefix = f"{name}/" if fmt == "tgz" else ""
    theirs_manifest, ours_manifest = manifest_of(theirs, prefix), manifest_of(ours, prefix)
    assert without_created_on(ours_manifest) == without_created_on(theirs_manifest)
    assert list(json.loads(ours_manifest)) == list(json.loads(theirs_manifest))  # same key order
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", json.loads(ours_manifest)["createdOn"])


def test_every_flag_lands_where_torchserve_puts_it(model_inputs: Path) -> None:
    """Spot-check the layout itself, so the comparison above cannot pass on two equally wrong tools."""
    _, ours_path = build_both(model_inputs, VARIANTS["every-flag"], "layout", "default")
    names = set(read_output(ours_path, "default"))
    assert names == {
        "model.py", "tiny.pth", "my_handler.py", "index_to_name.json", "requirements.txt",
        "model-config.yaml", "vocab.txt", ".dotfile", "sub/table.csv", "sub/deeper/blob.bin",
        "glob_a.txt", "glob_b.txt", "MAR-INF/MANIFEST.json",
    }  # fmt: skip
    manifest = json.loads(manifest_of(read_output(ours_path, "default")))
    assert manifest["runtime"] == "python3"
    assert manifest["model"] == {
        "modelName": "layout", "serializedFile": "tiny.pth", "handler": "my_handler.py",
        "modelFile": "model.py", "modelVersion": "2.1", "requirementsFile": "requirements.txt",
        "configFile": "model-config.yaml",
    }  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
def test_real_archives_open_validate_and_unpack(model_inputs: Path, tmp_path: Path, fmt: str) -> None:
    theirs_path, _ = build_both(model_inputs, VARIANTS["every-flag"], f"read-{fmt}", fmt)
    expected = read_output(theirs_path, fmt)
    if fmt == "tgz":
        expected = {k.split("/", 1)[1]: v for k, v in expected.items()}

    info = inspect_archive(theirs_path)
    assert info.kind == "model"
    assert info.format == {"tgz": "tgz", "no-archive": "directory"}.get(fmt, "zip")
    assert isinstance(info.manifest, ModelManifest)
    assert info.manifest.to_json() == manifest_of(expected)  # parsed and re-written: identical text
    assert {e.name for e in info.files} == set(expected)
    assert info.warnings == []

    dest = tmp_path / "unpacked"
    unpacked = extract_archive(theirs_path, dest)
    assert unpacked.manifest == info.manifest
    on_disk = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert on_disk == {k: v[0] for k, v in expected.items()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_our_archives_read_back(model_inputs: Path, tmp_path: Path, fmt: str) -> None:
    _, ours_path = build_both(model_inputs, VARIANTS["builtin-handler"], f"back-{fmt}", fmt)
    info = extract_archive(ours_path, tmp_path / "back")
    assert info.manifest.model_name == f"back-{fmt}"
    assert (tmp_path / "back" / "tiny.pth").read_bytes() == (model_inputs / "tiny.pth").read_bytes()


def error_text(stderr: str) -> str:
    """The message of an archiver error: from 'ERROR - ' up to any traceback."""
    start = stderr.index("ERROR - ")
    return stderr[start:].split("Traceback")[0].strip()


@pytest.mark.parametrize(
    "case",
    ["missing-export-path", "bad-model-name", "archive-exists"],
)
def test_same_errors_for_the_same_mistakes(model_inputs: Path, case: str) -> None:
    base = ["--version", "1.0", "--handler", "image_classifier", "--serialized-file", "tiny.pth"]
    if case == "missing-export-path":
        args = ["--model-name", "e1", *base, "--export-path", "no/such/dir"]
    elif case == "bad-model-name":
        args = ["--model-name", "bad name!", *base]
    else:
        (model_inputs / "exists").mkdir(exist_ok=True)
        args = ["--model-name", "e3", *base, "--export-path", "exists"]
        assert run_theirs("torch-model-archiver", args, model_inputs).returncode == 0
    theirs = run_theirs("torch-model-archiver", args, model_inputs)
    ours = run_ours(args, model_inputs)
    assert theirs.returncode == ours.returncode == 1
    assert error_text(ours.stderr) == error_text(theirs.stderr)
    assert "Traceback" not in ours.stderr


def test_same_usage_errors(model_inputs: Path) -> None:
    theirs = run_theirs("torch-model-archiver", ["--version", "1"], model_inputs)
    ours = run_ours(["--version", "1"], model_inputs)
    assert theirs.returncode == ours.returncode == 2
    last = [r.stderr.strip().splitlines()[-1].split("error: ")[1] for r in (theirs, ours)]
    assert last[0] == last[1] == "the following arguments are required: --model-name, --handler"

    args = ["--model-name", "x", "-v", "1", "--handler", "h", "--archive-format", "rar"]
    theirs, ours = run_theirs("torch-model-archiver", args, model_inputs), run_ours(args, model_inputs)
    assert theirs.returncode == ours.returncode == 2
    assert theirs.stderr.split("error: ")[1] == ours.stderr.split("error: ")[1]


def test_missing_inputs_are_named(model_inputs: Path) -> None:
    base = ["--model-name", "miss", "--version", "1", "--handler", "image_classifier", "--export-path", "."]
    extra = run_ours([*base, "--extra-files", "nothere.json"], model_inputs)
    assert extra.returncode == 1
    assert "ERROR - File does not exist: nothere.json" in extra.stderr
    serialized = run_ours([*base, "--serialized-file", "missing.pth"], model_inputs)
    assert serialized.returncode == 1
    assert "--serialized-file: No such file or directory: 'missing.pth'" in serialized.stderr
    assert not (model_inputs / "miss.mar").exists()


# ---- workflow archives -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow_inputs(model_inputs: Path) -> Path:
    (model_inputs / "wf.yaml").write_text(
        "models:\n  min-workers: 1\n  m1:\n    url: m1.mar\ndag:\n  pre: [m1]\n  m1: [post]\n"
    )
    (model_inputs / "wf_handler.py").write_text(
        "def pre(data, context):\n    return data\n\n\ndef post(data, context):\n    return data\n"
    )
    return model_inputs


def test_same_war_as_torch_workflow_archiver(workflow_inputs: Path) -> None:
    args = ["--workflow-name", "wfdemo", "--spec-file", "wf.yaml", "--handler", "wf_handler.py"]
    args += ["--extra-files", "index_to_name.json,requirements.txt"]
    out = {}
    for who in ("theirs", "ours"):
        export = workflow_inputs / f"wf-{who}"
        export.mkdir()
        flags = [*args, "--export-path", str(export)]
        result = (
            run_theirs("torch-workflow-archiver", flags, workflow_inputs)
            if who == "theirs"
            else run_ours(["workflow", *flags], workflow_inputs)
        )
        assert result.returncode == 0, result.stderr
        out[who] = read_output(export / "wfdemo.war", "default")
    assert (
        sorted(out["ours"])
        == sorted(out["theirs"])
        == sorted(["wf.yaml", "wf_handler.py", "index_to_name.json", "requirements.txt", "WAR-INF/MANIFEST.json"])
    )
    for member, (data, how) in out["theirs"].items():
        assert out["ours"][member][1] == how
        if member != "WAR-INF/MANIFEST.json":
            assert out["ours"][member][0] == data
    manifests = [out[w]["WAR-INF/MANIFEST.json"][0].decode() for w in ("theirs", "ours")]
    assert without_created_on(manifests[0]) == without_created_on(manifests[1])

    info = inspect_archive(workflow_inputs / "wf-theirs" / "wfdemo.war")
    assert info.kind == "workflow"
    assert info.manifest.to_json() == manifests[0]


@pytest.mark.parametrize("case", ["bad-name", "archive-exists", "missing-export-path"])
def test_same_workflow_errors(workflow_inputs: Path, case: str) -> None:
    base = ["--spec-file", "wf.yaml", "--handler", "wf_handler.py"]
    if case == "bad-name":
        args = ["--workflow-name", "no good", *base]
    elif case == "missing-export-path":
        args = ["--workflow-name", "w2", *base, "--export-path", "nowhere"]
    else:
        (workflow_inputs / "wf-exists").mkdir(exist_ok=True)
        args = ["--workflow-name", "w3", *base, "--export-path", "wf-exists"]
        assert run_theirs("torch-workflow-archiver", args, workflow_inputs).returncode == 0
    theirs = run_theirs("torch-workflow-archiver", args, workflow_inputs)
    ours = run_ours(["workflow", *args], workflow_inputs)
    assert theirs.returncode == ours.returncode == 1
    assert error_text(ours.stderr) == error_text(theirs.stderr)


def test_workflow_without_handler_is_a_clear_error(workflow_inputs: Path) -> None:
    result = run_ours(["workflow", "--workflow-name", "nohandler", "--spec-file", "wf.yaml"], workflow_inputs)
    assert result.returncode == 1
    assert "ERROR - --handler is required" in result.stderr
    assert "Traceback" not in result.stderr
