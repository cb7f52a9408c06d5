"""Unpack an archive safely: everything lands inside the destination, or nothing does.

Members are written into a hidden folder beside the destination, with the same checks as
`inspect_archive` plus the bytes actually written (headers can lie). Symlinks are created last, when
no file will be written through them, and each must resolve inside the folder. Only a complete,
validated tree is renamed to the destination; on any error the hidden folder is removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from archiver.checks import MAX_SMALL_FILE, EntryChecker, validate_contents
from archiver.errors import ArchiverError, InvalidArchiveError, UnsafeArchiveError
from archiver.limits import DEFAULT_LIMITS, Limits
from archiver.members import (
    DIR,
    FILE,
    HARDLINK,
    SYMLINK,
    Entry,
    corrupt_as_invalid,
    detect_format,
    walk_members,
)
from archiver.progress import ProgressCallback
from archiver.reader import ArchiveInfo, default_model_name

CHUNK = 1024 * 1024


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (resolved) is ``root`` or below it — not merely a string prefix of it."""
    return path == root or path.is_relative_to(root)


class _Unpacker:
    def __init__(self, root: Path, checker: EntryChecker, progress: ProgressCallback | None) -> None:
        self.root = root
        self.checker = checker
        self.progress = progress
        self.written = 0
        self.links: list[Entry] = []

    def target(self, name: str) -> Path:
        path = self.root.joinpath(*name.split("/"))
        if not _inside(self.root, path.parent.resolve()):
            raise UnsafeArchiveError(f"entry {name!r} would be written outside the destination")
        return path

    def write_file(self, entry: Entry, source) -> None:
        path = self.target(entry.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        size = 0
        with os.fdopen(os.open(path, flags, 0o644), "wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                self.written += len(chunk)
                if size > entry.size:
                    raise UnsafeArchiveError(f"entry {entry.name!r} unpacks to more than its declared size")
                if self.written > self.checker.limits.max_total_bytes:
                    raise UnsafeArchiveError("the archive unpacks to more than the size allowed")
                self.checker.check_ratio(self.written)
                out.write(chunk)
                if self.progress:
                    self.progress(len(chunk))
        if size != entry.size:
            raise UnsafeArchiveError(f"entry {entry.name!r} is shorter than its declared size")

    def add(self, member) -> None:
        entry = member.entry
        self.checker.admit(entry)
        if entry.kind == DIR:
            self.target(entry.name).mkdir(parents=True, exist_ok=True)
        elif entry.kind == FILE:
            with member.open() as source:
                self.write_file(entry, source)
        elif entry.kind == HARDLINK:
            path = self.target(entry.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.target(entry.target), path, follow_symlinks=False)
            self.written += path.stat().st_size
        elif entry.kind == SYMLINK:
            self.links.append(entry)

    def make_links(self) -> None:
        for entry in self.links:
            path = self.target(entry.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(entry.target, path)
        # Only now can chains of links be judged: every one must resolve inside the destination.
        for entry in self.links:
            try:
                resolved = self.target(entry.name).resolve()
            except (OSError, RuntimeError) as exc:  # a loop, or a chain too long for the OS to follow
                raise InvalidArchiveError(f"symlink {entry.name!r} cannot be followed: {exc}") from None
            if not _inside(self.root, resolved):
                raise UnsafeArchiveError(f"symlink {entry.name!r} points outside the archive: {entry.target}")

    def read_small(self, name: str) -> bytes | None:
        path = self.target(name)
        if not _inside(self.root, path.resolve()) or not path.is_file():
            return None
        if path.stat().st_size > MAX_SMALL_FILE:
            return None
        return path.read_bytes()


def extract_archive(
    source: str | Path,
    dest: str | Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    progress: ProgressCallback | None = None,
) -> ArchiveInfo:
    """Unpack ``source`` (ZIP, tar.gz or folder) into the new folder ``dest``; returns what it holds.

    Raises `InvalidArchiveError` / `UnsafeArchiveError` and leaves nothing behind when the archive is
    corrupt or hostile; refuses to write into an existing ``dest``.
    """
    source, dest = Path(source), Path(dest)
    fmt = detect_format(source)
    if os.path.lexists(dest):
        raise ArchiverError(f"{dest} already exists; extraction needs a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        packed = source.stat().st_size if fmt != "directory" else 0
        unpacker = _Unpacker(tmp.resolve(), EntryChecker(limits, packed), progress)
        entries: list[Entry] = []
        with corrupt_as_invalid(source):
            for member in walk_members(source, fmt):
                unpacker.add(member)
                entries.append(member.entry)
        unpacker.checker.check_links()  # before any link exists
        unpacker.make_links()
        kind, manifest, warnings = validate_contents(
            unpacker.checker.names, unpacker.read_small, default_model_name(source)
        )
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ArchiveInfo(dest, fmt, kind, manifest, entries, packed, warnings)
