"""Collect the files that go into an archive, flattened the way TorchServe's archivers flatten them.

torch-model-archiver copies every input into one folder and zips that folder, so every file lands at
the archive root under its base name (a later input with the same name replaces an earlier one) and a
folder given in ``--extra-files`` contributes its *contents*. We compute the same mapping without the
copy: archive member name -> source path, and stream from the sources when writing.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

from archiver.errors import ArchiveInputError

log = logging.getLogger("archiver")

# Folders torch-model-archiver leaves out, at any depth (plus every folder whose name starts with '.').
SKIPPED_DIRS = frozenset({"__MACOSX", "__pycache__"})


def _skipped_dir(name: str) -> bool:
    return name in SKIPPED_DIRS or name.startswith(".")


def _is_wildcard(spec: str) -> bool:
    return "*" in spec or "?" in spec or ("[" in spec and "]" in spec)


class ArchiveInputs:
    """An ordered mapping of archive member names to the files they come from."""

    def __init__(self, reserved: tuple[str, ...] = ()) -> None:
        self.members: dict[str, Path] = {}
        self._folders: set[str] = set()
        self._reserved = set(reserved)

    def add(self, name: str, source: Path) -> None:
        if name in self._reserved:
            log.warning("Skipping %s: the archive writes its own %s", source, name)
            return
        # A file and a folder of the same name cannot both exist once unpacked.
        parts = name.split("/")
        parents = {"/".join(parts[:i]) for i in range(1, len(parts))}
        clash = name if name in self._folders else next(iter(parents & self.members.keys()), None)
        if clash is not None:
            raise ArchiveInputError(f"{source} would make {clash!r} both a file and a folder in the archive")
        self._folders |= parents
        self.members.pop(name, None)  # re-inserted last, as a later copy replaces an earlier one
        self.members[name] = source

    def add_file(self, path: str, flag: str) -> None:
        """One input file given by a flag (``--serialized-file x.pth``), stored under its base name."""
        source = Path(path)
        if not source.exists():
            raise ArchiveInputError(f"{flag}: No such file or directory: {path!r}")
        if not source.is_file():
            raise ArchiveInputError(f"{flag}: {path} is a directory, not a file")
        self.add(source.name, source)

    def add_extra_files(self, spec: str, *, folders: bool = True) -> None:
        """``--extra-files``: comma-separated files, folders (their contents) or glob patterns."""
        for item in spec.split(","):
            wildcard = _is_wildcard(item)
            if not (wildcard or Path(item).exists()):
                raise ArchiveInputError(f"File does not exist: {item}")
            matches = sorted(glob.glob(item.strip()))
            if wildcard and not matches:
                log.warning("Given wildcard pattern did not match any file: %s", item)
            for match in matches:
                source = Path(match)
                if source.is_file():
                    self.add(source.name, source)
                elif source.is_dir() and folders:
                    self._add_folder_contents(source)
                elif source.is_dir():
                    raise ArchiveInputError(f"--extra-files: {match} is a directory, not a file")
                else:
                    raise ArchiveInputError(f"Invalid extra file given {match}")

    def _add_folder_contents(self, folder: Path) -> None:
        for root, dirs, files in os.walk(folder, followlinks=True):
            rel_root = Path(root).relative_to(folder)
            dirs[:] = sorted(d for d in dirs if not _skipped_dir(d))
            for name in sorted(files):
                source = Path(root) / name
                if source.is_file():
                    self.add((rel_root / name).as_posix(), source)

    def without(self, path: Path) -> None:
        """Leave out the archive being written, should it sit among the inputs."""
        target = path.resolve()
        for name, source in list(self.members.items()):
            if source.resolve() == target:
                del self.members[name]

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.members.values())
