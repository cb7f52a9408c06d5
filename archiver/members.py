"""Walk the members of an archive in any of TorchServe's formats: ZIP (.mar/.war), tar.gz, folder.

Each member comes with a safe, canonical name (see `archiver.paths`) and, for files, a way to open
its data. A tar.gz is read as a stream, so a member's data can only be opened while the walk is on it.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from archiver.errors import InvalidArchiveError, UnsafeArchiveError
from archiver.paths import check_raw_name, escapes, member_name

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"
MAX_LINK_TARGET = 4096
# A tar ends with zero blocks padded to its record size; more than this after the end is refused.
MAX_TAR_TRAILER = 16 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    name: str  # canonical "a/b/c", inside the archive
    kind: str  # FILE, DIR, SYMLINK or HARDLINK
    size: int = 0  # unpacked bytes of a file
    packed: int | None = None  # compressed bytes of a ZIP member
    target: str | None = None  # symlink target as stored, or the member a hardlink names


@dataclass(frozen=True)
class Member:
    entry: Entry
    open: Callable[[], BinaryIO] | None = None  # files only


def detect_format(path: Path) -> str:
    """``zip``, ``tgz`` or ``directory``, judged by content, not by the file name."""
    if path.is_dir():
        return "directory"
    if not path.exists():
        raise InvalidArchiveError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"PK":
        return "zip"
    if magic[:2] == b"\x1f\x8b":
        return "tgz"
    raise InvalidArchiveError(
        f"{path} is not an archive: it is neither a ZIP (.mar/.war) nor a gzip-compressed tar (.tar.gz) file"
    )


# Errors that mean the bytes are not a well-formed archive (as opposed to a disk or permission error).
CORRUPT = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
)


@contextmanager
def corrupt_as_invalid(path: Path) -> Iterator[None]:
    try:
        yield
    except CORRUPT as exc:
        raise InvalidArchiveError(f"{path} is truncated or corrupt: {exc}") from None


def _walk_zip(path: Path) -> Iterator[Member]:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            name = member_name(info.filename)
            if info.create_system == 3 and stat.S_ISLNK(mode):
                if info.file_size > MAX_LINK_TARGET:
                    raise UnsafeArchiveError(f"symlink {name!r} has an oversized target")
                target = zf.read(info).decode("utf-8", "replace")
                yield Member(Entry(name, SYMLINK, target=target))
            elif info.is_dir():
                yield Member(Entry(name, DIR))
            else:
                if _sizes_impossible(info):
                    raise UnsafeArchiveError(
                        f"entry {name!r} has lying headers: {info.compress_size} packed bytes "
                        f"cannot unpack to {info.file_size}"
                    )
                yield Member(
                    Entry(name, FILE, size=info.file_size, packed=info.compress_size),
                    open=lambda info=info: zf.open(info),
                )


def _sizes_impossible(info: zipfile.ZipInfo) -> bool:
    """Sizes no compressor could produce: a lie only unpacking would otherwise reveal (and
    ``inspect_archive`` unpacks nothing). Deflate at worst adds a few bytes per block."""
    if info.flag_bits & 0x1:  # encrypted: zipfile refuses to read it anyway
        return False
    if info.compress_type == zipfile.ZIP_STORED:
        return info.compress_size != info.file_size
    if info.compress_type == zipfile.ZIP_DEFLATED:
        return info.compress_size > 2 * info.file_size + 1024
    return False


def _strip_top(raw: str) -> str | None:
    """tar.gz model archives keep everything under one top folder, which TorchServe strips."""
    parts = raw.lstrip("/").split("/", 1)
    return parts[1] if len(parts) == 2 and parts[1].strip("/") else None


def _walk_tgz(path: Path) -> Iterator[Member]:
    # gzip itself, not tarfile's "r|gz": only GzipFile checks the stream's CRC and notices a missing end.
    with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tf:
        for info in tf:
            check_raw_name(info.name)  # before stripping: a top folder '..' or 'C:' is no folder
            stripped = _strip_top(info.name)
            if stripped is None:
                if info.isdir():
                    continue  # the top folder itself
                raise UnsafeArchiveError(
                    f"entry {info.name!r} sits outside the archive's top folder"
                    if info.name.count("/") == 0
                    else f"entry {info.name!r} is not a file name"
                )
            name = member_name(stripped)
            if info.isreg():
                yield Member(Entry(name, FILE, size=info.size), open=lambda info=info: tf.extractfile(info))
            elif info.isdir():
                yield Member(Entry(name, DIR))
            elif info.issym():
                yield Member(Entry(name, SYMLINK, target=info.linkname))
            elif info.islnk():
                linked = _strip_top(info.linkname)
                if linked is None or escapes(info.linkname):
                    raise UnsafeArchiveError(f"hardlink {name!r} points outside the archive: {info.linkname}")
                yield Member(Entry(name, HARDLINK, target=linked))
            else:
                raise UnsafeArchiveError(f"entry {name!r} is a device, FIFO or other special file")
        # Read to the end of the gzip stream, so a truncated or corrupted archive is noticed.
        trailer = 0
        while chunk := gz.read(1024 * 1024):
            trailer += len(chunk)
            if trailer > MAX_TAR_TRAILER:
                raise UnsafeArchiveError(f"{path} has more than {MAX_TAR_TRAILER} bytes after its tar data")


def _walk_dir(path: Path) -> Iterator[Member]:
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for d in list(dirs):
            full = Path(root) / d
            rel = full.relative_to(path).as_posix()
            if full.is_symlink():
                dirs.remove(d)
                yield Member(Entry(rel, SYMLINK, target=os.readlink(full)))
            else:
                yield Member(Entry(rel, DIR))
        for f in sorted(files):
            full = Path(root) / f
            rel = full.relative_to(path).as_posix()
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                yield Member(Entry(rel, SYMLINK, target=os.readlink(full)))
            elif stat.S_ISREG(st.st_mode):
                yield Member(Entry(rel, FILE, size=st.st_size), open=lambda full=full: open(full, "rb"))  # noqa: SIM115
            else:
                raise UnsafeArchiveError(f"entry {rel!r} is a device, FIFO or other special file")


def walk_members(path: Path, fmt: str) -> Iterator[Member]:
    """Every member of the archive at ``path`` (format from `detect_format`)."""
    walker = {"zip": _walk_zip, "tgz": _walk_tgz, "directory": _walk_dir}[fmt]
    with corrupt_as_invalid(path):
        yield from walker(path)
