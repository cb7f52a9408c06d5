"""Pasted / dropped paths in every terminal's spelling, and the wizard's Textual-free guessing and checks."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from tsconsole.paths import join_paths, looks_like_paths, parse_pasted_paths, paths_from_drop, split_existing
from tsconsole.wizard_logic import (
    ArchiveForm,
    check_files,
    check_handler,
    check_model_name,
    check_positive_int,
    check_version,
    defines_module,
    guess_from_paths,
    is_torchscript,
    sanitize_model_name,
)

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
HOME = Path("~").expanduser()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # plain, one or several, any whitespace
        ("/models/digits.pth", ["/models/digits.pth"]),
        ("  /models/digits.pth  \n", ["/models/digits.pth"]),
        ("/a/model.pth /a/model.py", ["/a/model.pth", "/a/model.py"]),
        ("/a/model.pth\t/a/model.py", ["/a/model.pth", "/a/model.py"]),
        ("/a/model.pth\n/a/model.py\n", ["/a/model.pth", "/a/model.py"]),
        ("/a/model.pth\r\n/a/model.py\r\n", ["/a/model.pth", "/a/model.py"]),
        ("/a/model.pth\r/a/model.py", ["/a/model.pth", "/a/model.py"]),
        # quoted (GNOME Terminal, Konsole, Windows Terminal for WSL)
        ("'/my models/digits.pth'", ["/my models/digits.pth"]),
        ('"/my models/digits.pth"', ["/my models/digits.pth"]),
        ("'/my models/a.pth' '/my models/b.py'", ["/my models/a.pth", "/my models/b.py"]),
        ("'/it'\\''s/x.pth'", ["/it's/x.pth"]),  # the shell's way of quoting a quote
        ('"/say \\"hi\\"/x.pth"', ['/say "hi"/x.pth']),
        # backslash-escaped (iTerm2, macOS Terminal, kitty, xterm)
        ("/my\\ models/digits.pth", ["/my models/digits.pth"]),
        ("/my\\ models/a\\ b.pth /other/c.py", ["/my models/a b.pth", "/other/c.py"]),
        ("/weird\\(1\\)\\&\\[x\\].pth", ["/weird(1)&[x].pth"]),
        ("/tab\\\tname.pth", ["/tab\tname.pth"]),
        # file:// URIs (text/uri-list from file managers)
        ("file:///my%20models/digits.pth", ["/my models/digits.pth"]),
        ("file://localhost/srv/m.pth", ["/srv/m.pth"]),
        ("file:///a/%C3%A9t%C3%A9.pth", ["/a/été.pth"]),
        ("file:///a/x.pth\r\nfile:///a/y.py\r\n", ["/a/x.pth", "/a/y.py"]),
        ("file:///a/x.pth file:///a/y.py", ["/a/x.pth", "/a/y.py"]),
        ("'file:///a/b%20c.pth'", ["/a/b c.pth"]),
        ("file:///C:/Models/x.pth", ["C:/Models/x.pth"]),
        # Windows paths keep their backslashes
        ('"C:\\My Models\\x.pth"', ["C:\\My Models\\x.pth"]),
        ("C:\\Models\\x.pth", ["C:\\Models\\x.pth"]),
        ("\\\\server\\share\\x.pth", ["\\\\server\\share\\x.pth"]),
        # a raw path with spaces (some terminals paste it unescaped)
        ("/home/me/My Models/x.pth", ["/home/me/My Models/x.pth"]),
        # duplicates once; empty lines ignored
        ("/a/x.pth\n\n/a/x.pth", ["/a/x.pth"]),
        ("", []),
        ("   \n\r\n", []),
        # relative names
        ("model.py handler.py", ["model.py", "handler.py"]),
        # an unbalanced quote takes the rest literally
        ("'/a b/x.pth", ["/a b/x.pth"]),
    ],
)
def test_parse_pasted_paths(text: str, expected: list[str]) -> None:
    assert parse_pasted_paths(text) == [Path(p) for p in expected]


def test_home_is_expanded() -> None:
    assert parse_pasted_paths("~/x.pth '~/a b.py'") == [HOME / "x.pth", HOME / "a b.py"]


def test_drops_are_told_from_prose() -> None:
    assert paths_from_drop("/a/x.pth") == [Path("/a/x.pth")]
    assert paths_from_drop("file:///a/x.pth") == [Path("/a/x.pth")]
    assert paths_from_drop("digits_cnn.pth") == [Path("digits_cnn.pth")]
    assert paths_from_drop("hello world") == []
    assert paths_from_drop("just some words pasted.") == []
    assert not looks_like_paths([])


def test_split_existing_and_unescaped_spaces(tmp_path: Path) -> None:
    spaced = tmp_path / "my models"
    spaced.mkdir()
    weights = spaced / "w.pth"
    weights.write_bytes(b"x")
    found, missing = split_existing([weights, tmp_path / "nope.pth"])
    assert found == [weights] and missing == [tmp_path / "nope.pth"]
    # Pasted relative to nothing, spaces unescaped and words not starting a path: the disk decides.
    text = f"{weights}"
    assert split_existing(parse_pasted_paths(text), text) == ([weights], [])
    assert join_paths([Path("/a"), Path("/b")]) == "/a,/b"


# ---- the wizard's guesses ------------------------------------------------------------------------------------


def test_sanitize_model_name() -> None:
    assert sanitize_model_name("digits_cnn") == "digits_cnn"
    assert sanitize_model_name("my model (v2)") == "my_model_v2"
    assert sanitize_model_name("__init__") == "init"
    assert sanitize_model_name("résumé.v1") == "r_sum_.v1"
    assert sanitize_model_name("!!!") == "model"
    for stem in ("a b", "-x", ".hidden", "é"):
        assert check_model_name(sanitize_model_name(stem)) is None


@pytest.fixture
def digits_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "digits model"
    folder.mkdir()
    for name in ("model.py", "digits_cnn.pth", "digits_handler.py", "index_to_name.json"):
        shutil.copy(DIGITS / name, folder / name)
    (folder / "train.py").write_text("import torch\nprint('training')\n")
    return folder


def test_guess_from_a_folder(digits_copy: Path) -> None:
    guess = guess_from_paths([digits_copy])
    assert guess.model_name == "digits_cnn"
    assert guess.serialized_file == digits_copy / "digits_cnn.pth"
    assert guess.kind == "state_dict"
    assert guess.model_file == digits_copy / "model.py"
    assert guess.handler == str(digits_copy / "digits_handler.py")
    assert guess.extra_files == [digits_copy / "index_to_name.json"]
    assert guess.requirements_file is None and guess.config_file is None
    assert any("digits_handler.py" in note for note in guess.notes)


def test_guess_from_a_lone_weights_file_looks_beside_it(digits_copy: Path) -> None:
    (digits_copy / "requirements.txt").write_text("numpy\n")
    (digits_copy / "model-config.yaml").write_text("batchSize: 4\n")
    guess = guess_from_paths([digits_copy / "digits_cnn.pth"])
    assert guess.model_file == digits_copy / "model.py"
    assert guess.requirements_file == digits_copy / "requirements.txt"
    assert guess.config_file == digits_copy / "model-config.yaml"


def test_guess_from_torchscript(tmp_path: Path) -> None:
    scripted = tmp_path / "resnet-18.pt"
    with zipfile.ZipFile(scripted, "w") as z:
        z.writestr("resnet-18/data.pkl", b"x")
        z.writestr("resnet-18/code/__torch__/m.py", b"x")
        z.writestr("resnet-18/constants.pkl", b"x")
    (tmp_path / "net.py").write_text("class Net(nn.Module):\n    pass\n")
    guess = guess_from_paths([scripted])
    assert is_torchscript(scripted)
    assert guess.kind == "torchscript" and guess.model_name == "resnet-18"
    assert guess.handler == "base_handler" and guess.model_file is None
    assert any("TorchScript" in note for note in guess.notes)
    assert not is_torchscript(DIGITS / "digits_cnn.pth")  # a torch.save(state_dict) zip


def test_guess_reports_missing_paths(tmp_path: Path) -> None:
    guess = guess_from_paths([tmp_path / "gone.pth"])
    assert guess.missing == [tmp_path / "gone.pth"]


def test_defines_module_reads_text_only(tmp_path: Path) -> None:
    cases = {
        "class A(nn.Module):": True,
        "class A(torch.nn.Module):": True,
        "class A (Base, nn.Module) :": True,
        "class A(Module):": True,
        "class A(ModuleList):": False,
        "x = nn.Module()": False,
    }
    for i, (source, expected) in enumerate(cases.items()):
        path = tmp_path / f"m{i}.py"
        path.write_text(f"import torch\n\n{source}\n    pass\n")
        assert defines_module(path) is expected, source


def test_field_checks(tmp_path: Path) -> None:
    assert check_model_name("digits") is None
    assert "required" in (check_model_name("") or "")
    assert check_model_name("bad name!") is not None
    assert check_model_name("-x") is not None
    assert check_version("1.0") is None and check_version("1 0") is not None
    assert check_positive_int("") is None and check_positive_int("3") is None
    assert check_positive_int("0") == "At least 1." and check_positive_int("x") == "A whole number."
    assert check_files(f"{DIGITS / 'index_to_name.json'},{DIGITS}") is None
    assert "No such file" in (check_files(str(tmp_path / "nope")) or "")
    assert check_handler("image_classifier", "") is None
    assert check_handler("nope", "") is not None
    assert check_handler("base_handler", str(DIGITS / "digits_handler.py")) is None
    assert check_handler("base_handler", str(DIGITS / "digits_handler.py") + ":handle") is None
    assert "No such file" in (check_handler("base_handler", str(tmp_path / "h.py")) or "")
    assert "Expected .py" in (check_handler("base_handler", str(DIGITS / "digits_cnn.pth")) or "")


def test_form_to_archiver_and_upload(digits_copy: Path, tmp_path: Path) -> None:
    form = ArchiveForm(
        model_name="digits",
        serialized_file=str(digits_copy / "digits_cnn.pth"),
        model_file=str(digits_copy / "model.py"),
        handler_file=str(digits_copy / "digits_handler.py"),
        extra_files=str(digits_copy / "index_to_name.json"),
        batch_size="4",
    )
    assert form.errors() == {}
    config = form.archive_config(tmp_path)
    assert config.handler == str(digits_copy / "digits_handler.py") and config.export_path == str(tmp_path)
    files, fields = form.upload()
    assert files["handler_file"] == digits_copy / "digits_handler.py"
    assert files["extra_files"] == [digits_copy / "index_to_name.json"]
    assert fields["handler"] == "digits_handler.py" and fields["model_name"] == "digits"
    assert form.register_params() == {"initial_workers": 1, "synchronous": True, "batch_size": 4}
    nested = tmp_path / "assets"
    (nested / "sub").mkdir(parents=True)
    (nested / "vocab.txt").write_text("a\n")
    with pytest.raises(ValueError, match="folders inside"):
        ArchiveForm(model_name="m", extra_files=str(nested)).upload()
    (nested / "sub").rmdir()
    assert ArchiveForm(model_name="m", extra_files=str(nested)).upload()[0]["extra_files"] == [nested / "vocab.txt"]
    bad = ArchiveForm(model_name="bad name", model_file=str(tmp_path / "missing.py"), initial_workers="0")
    assert set(bad.errors()) == {"model_name", "model_file", "initial_workers"}
