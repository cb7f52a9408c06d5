"""What the archive wizard knows without a screen: guessing fields from dropped files, checking fields.

Nothing here imports Textual or torch. Guessing reads the disk (folder listings, a zip directory, a
few kilobytes of each ``.py``): call :func:`guess_from_paths` off the event loop.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver import ModelArchiveConfig
from archiver.manifest import BUILTIN_HANDLERS, NAME_PATTERN

SERIALIZED_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".onnx")
DEFAULT_VERSION = "1.0"
EXTRA_FILE_NAMES = ("index_to_name.json",)
REQUIREMENTS_NAMES = ("requirements.txt",)
CONFIG_NAMES = ("model-config.yaml", "model_config.yaml", "model-config.yml")
_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.+]*$")
# ``class Net(nn.Module):`` / ``(torch.nn.Module)`` / ``(Module)``, possibly after other bases.
_MODULE_CLASS = re.compile(r"^\s*class\s+\w+\s*\([^)]*\b(?:torch\.)?(?:nn\.)?Module\s*[,)]", re.MULTILINE)
_READ_LIMIT = 256 * 1024


@dataclass
class Guess:
    """The wizard's starting values and why it chose them (``notes``, shown to the user)."""

    model_name: str = ""
    version: str = DEFAULT_VERSION
    serialized_file: Path | None = None
    model_file: Path | None = None
    handler: str = ""  # a built-in handler name, or a handler file's path
    extra_files: list[Path] = field(default_factory=list)
    requirements_file: Path | None = None
    config_file: Path | None = None
    kind: str = ""  # "torchscript", "state_dict", "" (unknown / no weights)
    notes: list[str] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)


def sanitize_model_name(stem: str) -> str:
    """A name TorchServe accepts (``^[A-Za-z0-9][A-Za-z0-9_\\-.]*$``) made from a file or folder name."""
    name = re.sub(r"[^A-Za-z0-9_\-.]+", "_", stem.strip())
    name = re.sub(r"^[^A-Za-z0-9]+", "", name).rstrip("._-")
    return name or "model"


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (``torch.jit.save``) rather than a pickled ``state_dict`` (``torch.save``).

    Both are zip files; only TorchScript holds compiled code (``<name>/code/…``) and ``constants.pkl``.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return any("/code/" in n or n.endswith("/constants.pkl") for n in names)


def defines_module(path: Path) -> bool:
    """Whether a Python file defines an ``nn.Module`` subclass, judged from its text (nothing is imported)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(_READ_LIMIT)
    except OSError:
        return False
    return bool(_MODULE_CLASS.search(text))


def _is_handler_file(path: Path) -> bool:
    return path.suffix == ".py" and "handler" in path.stem.lower()


def guess_from_paths(paths: Sequence[Path]) -> Guess:
    """Fill what can be filled from dropped files and/or folders. Reads the disk: run it in a thread.

    Files dropped together are taken for what they are; a dropped folder (or the folder of a lone
    dropped weights file) is searched for the companions TorchServe needs.
    """
    guess = Guess()
    files: list[Path] = []
    folders: list[Path] = []
    for path in paths:
        if path.is_dir():
            folders.append(path)
        elif path.is_file():
            files.append(path)
        else:
            guess.missing.append(path)
    weights = [f for f in files if f.suffix.lower() in SERIALIZED_SUFFIXES]
    if not folders and len(files) == 1 and weights:
        folders.append(files[0].parent)  # a lone weights file: look next to it
        searched_beside = True
    else:
        searched_beside = False
    found: list[Path] = list(files)
    for folder in folders:
        try:
            found += sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        except OSError as exc:
            guess.notes.append(f"Could not list {folder}: {exc.strerror or exc}")
    explicit = set(files)

    def pick(candidates: list[Path], what: str) -> Path | None:
        chosen = [c for c in candidates if c in explicit] or candidates
        if not chosen:
            return None
        if len(chosen) > 1:
            guess.notes.append(f"Several {what} found; took {chosen[0].name}.")
        return chosen[0]

    # Weights and the model name.
    weights_all = [f for f in found if f.suffix.lower() in SERIALIZED_SUFFIXES]
    guess.serialized_file = pick(weights_all, "weights files")
    if guess.serialized_file is not None:
        guess.model_name = sanitize_model_name(guess.serialized_file.stem)
        guess.kind = "torchscript" if is_torchscript(guess.serialized_file) else "state_dict"
        if searched_beside:
            guess.notes.append(f"Looked for the other files next to {guess.serialized_file.name}.")
    elif folders:
        guess.model_name = sanitize_model_name(folders[0].name)
    elif files:
        guess.model_name = sanitize_model_name(files[0].stem)

    # Handler.
    handler = pick([f for f in found if _is_handler_file(f)], "handler files")
    if handler is not None:
        guess.handler = str(handler)
        guess.notes.append(f"Handler: {handler.name} (a *handler*.py among the files).")
    else:
        guess.handler = "base_handler"
        if guess.kind == "torchscript":
            guess.notes.append(
                "Handler: base_handler, which loads TorchScript with torch.jit.load; pick image_classifier,"
                " text_classifier… if the model is one of those."
            )
        else:
            guess.notes.append("Handler: base_handler (no *handler*.py found); pick a built-in or a file.")

    # Model file: only an eager state_dict needs one.
    if guess.kind != "torchscript":
        modules = [f for f in found if f.suffix == ".py" and not _is_handler_file(f) and defines_module(f)]
        guess.model_file = pick(modules, "files defining an nn.Module")
        if guess.model_file is not None:
            guess.notes.append(f"Model file: {guess.model_file.name} (defines an nn.Module).")
        elif guess.kind == "state_dict":
            guess.notes.append("A state_dict needs a model file: the .py that defines its nn.Module class.")
    else:
        guess.notes.append(f"{guess.serialized_file.name if guess.serialized_file else 'The model'} is TorchScript:"
                           " no model file needed.")  # fmt: skip

    # Companions by name.
    guess.extra_files = [f for f in found if f.name in EXTRA_FILE_NAMES]
    guess.requirements_file = pick([f for f in found if f.name in REQUIREMENTS_NAMES], "requirements files")
    guess.config_file = pick([f for f in found if f.name in CONFIG_NAMES], "model-config files")
    # Anything else dropped explicitly goes along as an extra file.
    used = {guess.serialized_file, guess.model_file, guess.requirements_file, guess.config_file, handler}
    for f in files:
        if f not in used and f not in guess.extra_files:
            guess.extra_files.append(f)
    if guess.missing:
        guess.notes.append("Not found: " + ", ".join(str(m) for m in guess.missing))
    return guess


# ---- field checks: each returns an error message, or None when the value is fine ------------------------


def check_model_name(value: str) -> str | None:
    if not value:
        return "A model name is required."
    if not _NAME.match(value):
        return "Letters, digits, _ - . only, starting with a letter or digit."
    return None


def check_version(value: str) -> str | None:
    if not value:
        return "A version is required (e.g. 1.0)."
    if not _VERSION.match(value):
        return "Letters, digits, _ - . + only, starting with a letter or digit."
    return None


def check_file(value: str, *, required: bool = False, suffixes: tuple[str, ...] = ()) -> str | None:
    """An existing file (a quick ``stat``), optionally with one of ``suffixes``."""
    if not value:
        return "Required." if required else None
    path = Path(value).expanduser()
    if not path.exists():
        return f"No such file: {value}"
    if not path.is_file():
        return f"Not a file: {value}"
    if suffixes and path.suffix.lower() not in suffixes:
        return f"Expected {' or '.join(suffixes)}."
    return None


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def check_files(value: str) -> str | None:
    """Comma-separated files or folders (a folder's contents go in), each existing."""
    for item in split_list(value):
        if not Path(item).expanduser().exists():
            return f"No such file: {item}"
    return None


def check_positive_int(value: str, *, required: bool = False) -> str | None:
    if not value:
        return "Required." if required else None
    try:
        number = int(value)
    except ValueError:
        return "A whole number."
    return None if number >= 1 else "At least 1."


def check_handler(builtin: str, handler_file: str) -> str | None:
    """A handler file (``x.py`` or ``x.py:function``) when given, else a built-in name."""
    if handler_file:
        return check_file(handler_file.split(":", 1)[0] if ":" in handler_file[2:] else handler_file,
                          required=True, suffixes=(".py",))  # fmt: skip
    if builtin not in BUILTIN_HANDLERS:
        return f"Pick a built-in handler ({', '.join(BUILTIN_HANDLERS)}) or give a handler file."
    return None


# ---- from the form to the archiver / the upload -------------------------------------------------------------


@dataclass
class ArchiveForm:
    """The wizard's fields, as typed (strings), in one place."""

    model_name: str
    version: str = DEFAULT_VERSION
    serialized_file: str = ""
    model_file: str = ""
    handler: str = "base_handler"  # built-in name
    handler_file: str = ""  # wins over ``handler`` when given
    extra_files: str = ""  # comma separated
    requirements_file: str = ""
    config_file: str = ""
    batch_size: str = ""
    initial_workers: str = "1"
    force: bool = False

    def errors(self) -> dict[str, str]:
        """Field name -> message for every field that is wrong."""
        checks = {
            "model_name": check_model_name(self.model_name),
            "version": check_version(self.version),
            "serialized_file": check_file(self.serialized_file),
            "model_file": check_file(self.model_file, suffixes=(".py",)),
            "handler_file": check_handler(self.handler, self.handler_file),
            "extra_files": check_files(self.extra_files),
            "requirements_file": check_file(self.requirements_file),
            "config_file": check_file(self.config_file, suffixes=(".yaml", ".yml")),
            "batch_size": check_positive_int(self.batch_size),
            "initial_workers": check_positive_int(self.initial_workers),
        }
        return {k: v for k, v in checks.items() if v}

    @property
    def handler_value(self) -> str:
        return str(Path(self.handler_file).expanduser()) if self.handler_file else self.handler

    def _path(self, value: str) -> str | None:
        return str(Path(value).expanduser()) if value else None

    def archive_config(self, export_path: Path) -> ModelArchiveConfig:
        """What ``archiver.build_model_archive`` takes to write ``<export_path>/<name>.mar``."""
        extra = ",".join(str(Path(p).expanduser()) for p in split_list(self.extra_files))
        return ModelArchiveConfig(
            model_name=self.model_name,
            handler=self.handler_value,
            version=self.version,
            serialized_file=self._path(self.serialized_file),
            model_file=self._path(self.model_file),
            extra_files=extra or None,
            export_path=str(export_path),
            force=self.force,
            requirements_file=self._path(self.requirements_file),
            config_file=self._path(self.config_file),
        )

    def upload(self) -> tuple[dict[str, Path | list[Path]], dict[str, Any]]:
        """(files, fields) for ``Client.upload_archive``; a handler file travels as ``handler_file``.

        Reads folder listings (call it in a thread); ValueError for an extra-files folder with folders inside.
        """
        files: dict[str, Path | list[Path]] = {}
        for key in ("serialized_file", "model_file", "requirements_file", "config_file"):
            if value := getattr(self, key):
                files[key] = Path(value).expanduser()
        if self.handler_file:
            files["handler_file"] = Path(self.handler_file.split(":", 1)[0]).expanduser()
        extra: list[Path] = []
        for item in split_list(self.extra_files):
            path = Path(item).expanduser()
            if not path.is_dir():
                extra.append(path)
                continue
            inside = sorted(p for p in path.iterdir() if not p.name.startswith("."))
            if any(p.is_dir() for p in inside):
                raise ValueError(
                    f"{path} has folders inside: an upload sends files only, so their layout would be lost. "
                    "Build on the server's machine, or list the files."
                )
            extra += [p for p in inside if p.is_file()]
        if extra:
            files["extra_files"] = extra
        handler = self.handler
        if self.handler_file:
            name = Path(self.handler_file).name
            handler = name  # keeps a ``:function`` suffix
        fields = {"model_name": self.model_name, "version": self.version, "handler": handler, "runtime": "python"}
        fields["force"] = self.force
        return files, fields

    def register_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"initial_workers": int(self.initial_workers or 1), "synchronous": True}
        if self.batch_size:
            params["batch_size"] = int(self.batch_size)
        return params


def describe_size(size: float) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def summary(guess: Guess) -> str:
    """One line per note, for the wizard's explanation panel."""
    return "\n".join(f"• {note}" for note in guess.notes) or "Fill in the fields below."


def form_from_guess(guess: Guess) -> Mapping[str, str]:
    """Field id -> text for every field a guess fills."""

    def text(p: Path | None) -> str:
        return str(p) if p else ""

    handler_file = guess.handler if guess.handler not in BUILTIN_HANDLERS else ""
    return {
        "model_name": guess.model_name,
        "version": guess.version,
        "serialized_file": text(guess.serialized_file),
        "model_file": text(guess.model_file),
        "handler_file": handler_file,
        "handler": guess.handler if not handler_file else "",
        "extra_files": ",".join(str(p) for p in guess.extra_files),
        "requirements_file": text(guess.requirements_file),
        "config_file": text(guess.config_file),
    }
