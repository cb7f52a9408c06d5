"""Inspect an archive without unpacking it: format, manifest, file list, and every safety check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.checks import MAX_SMALL_FILE, EntryChecker, Manifest, validate_contents
from archiver.limits import DEFAULT_LIMITS, Limits
from archiver.members import FILE, Entry, corrupt_as_invalid, detect_format, walk_members


def default_model_name(path: str | Path) -> str:
    """TorchServe's name for an archive without a manifest: file name less extension, non-word chars -> _."""
    stem = Path(path).name
    for suffix in (".tar.gz", ".mar", ".war", ".model"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return re.sub(r"\W", "_", stem) or "model"


@dataclass
class ArchiveInfo:
    path: Path
    format: str  # "zip", "tgz" or "directory"
    kind: str  # "model" or "workflow"
    manifest: Manifest
    entries: list[Entry]
    packed_bytes: int  # the archive's size on disk (0 for a folder)
    warnings: list[str] = field(default_factory=list)

    @property
    def unpacked_bytes(self) -> int:
        return sum(e.size for e in self.entries if e.kind == FILE)

    @property
    def files(self) -> list[Entry]:
        return [e for e in self.entries if e.kind != "dir"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "kind": self.kind,
            "manifest": self.manifest.to_dict(),
            "manifestSynthesized": getattr(self.manifest, "synthesized", False),
            "packedBytes": self.packed_bytes,
            "unpackedBytes": self.unpacked_bytes,
            "files": [
                {"name": e.name, "kind": e.kind, "size": e.size, "packed": e.packed, "target": e.target}
                for e in self.files
            ],
            "warnings": self.warnings,
        }


def _is_small_text(entry: Entry) -> bool:
    return (
        entry.kind == FILE
        and entry.size <= MAX_SMALL_FILE
        and (entry.name.endswith(("MANIFEST.json", ".yaml", ".yml")))
    )


def inspect_archive(path: str | Path, *, limits: Limits = DEFAULT_LIMITS) -> ArchiveInfo:
    """Read an archive's manifest and member list without unpacking anything to disk.

    Raises `InvalidArchiveError` / `UnsafeArchiveError` for what `extract_archive` refuses, except what
    only unpacking can reveal: a ZIP member whose plausible header sizes or CRC lie about its data.
    """
    path = Path(path)
    fmt = detect_format(path)
    packed = path.stat().st_size if fmt != "directory" else 0
    checker = EntryChecker(limits, packed)
    entries: list[Entry] = []
    small: dict[str, bytes] = {}
    with corrupt_as_invalid(path):
        for member in walk_members(path, fmt):
            checker.admit(member.entry)
            entries.append(member.entry)
            if member.open is not None and _is_small_text(member.entry):
                with member.open() as f:
                    small[member.entry.name] = f.read(MAX_SMALL_FILE + 1)
    checker.check_links()
    kind, manifest, warnings = validate_contents(
        checker.names,
        lambda n: small.get(n) if len(small.get(n, b"")) <= MAX_SMALL_FILE else None,
        default_model_name(path),
    )
    return ArchiveInfo(path, fmt, kind, manifest, entries, packed, warnings)
