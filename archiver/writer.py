"""Write an archive in one of TorchServe's formats, streaming, atomically.

Files are copied in chunks (a multi-GB serialized file never sits in memory) into a temporary name
beside the output, which replaces the output only once complete: a failed or interrupted build leaves
neither a half-written archive nor a damaged previous one.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from archiver.progress import ProgressCallback

CHUNK = 1024 * 1024
# --archive-format -> suffix of the output, as torch-model-archiver names it.
FORMAT_SUFFIXES = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}


def _noop(_: int) -> None:
    pass


def _copy(src: BinaryIO, dst: BinaryIO, progress: ProgressCallback) -> None:
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        progress(len(chunk))


class _CountingReader:
    """A file wrapper that reports every read to a progress callback (for tarfile.addfile)."""

    def __init__(self, raw: BinaryIO, progress: ProgressCallback) -> None:
        self._raw = raw
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._progress(len(data))
        return data


def _write_zip(
    tmp: Path, members: Mapping[str, Path], manifest_name: str, manifest: str, stored: bool, progress
) -> None:
    compression = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(tmp, "w", compression) as zf:
        for name, source in members.items():
            info = zipfile.ZipInfo.from_file(source, name, strict_timestamps=False)
            info.compress_type = compression
            with open(source, "rb") as fin, zf.open(info, "w") as fout:
                _copy(fin, fout, progress)
        info = zipfile.ZipInfo(manifest_name, date_time=time.localtime(time.time())[:6])
        info.compress_type = compression
        info.external_attr = 0o600 << 16
        zf.writestr(info, manifest)


def _write_tgz(tmp: Path, members: Mapping[str, Path], manifest_name: str, manifest: str, top: str, progress) -> None:
    with tarfile.open(tmp, "w:gz", dereference=True) as tf:
        for name, source in members.items():
            info = tf.gettarinfo(source, arcname=f"{top}/{name}")
            with open(source, "rb") as fin:
                tf.addfile(info, _CountingReader(fin, progress))
        data = manifest.encode("utf-8")
        info = tarfile.TarInfo(f"{top}/{manifest_name}")
        info.size = len(data)
        with tempfile.SpooledTemporaryFile() as buf:
            buf.write(data)
            buf.seek(0)
            tf.addfile(info, buf)


def _write_dir(tmp: Path, members: Mapping[str, Path], manifest_name: str, manifest: str, progress) -> None:
    for name, source in members.items():
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as fin, open(target, "wb") as fout:
            _copy(fin, fout, progress)
        shutil.copymode(source, target)
    target = tmp / manifest_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(manifest, encoding="utf-8")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_archive(
    output: Path,
    members: Mapping[str, Path],
    manifest_name: str,
    manifest: str,
    archive_format: str = "default",
    *,
    top_dir: str = "",
    progress: ProgressCallback | None = None,
) -> Path:
    """Write ``members`` plus the manifest to ``output`` in ``archive_format``; replace any old output."""
    progress = progress or _noop
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        if archive_format == "no-archive":
            _write_dir(tmp, members, manifest_name, manifest, progress)
            staged = tmp
        else:
            staged = tmp / "archive"
            if archive_format == "tgz":
                _write_tgz(staged, members, manifest_name, manifest, top_dir, progress)
            else:
                _write_zip(staged, members, manifest_name, manifest, archive_format == "zip-store", progress)
        if output.is_dir() and not output.is_symlink():
            # A folder cannot be replaced atomically: move the old one aside first, drop it after.
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".old", dir=output.parent))
            os.replace(output, old / "x")
            os.replace(staged, output)
            shutil.rmtree(old)
        else:
            os.replace(staged, output)
        if staged is tmp:
            os.chmod(output, 0o755)
    finally:
        if tmp.exists():
            _remove(tmp)
    return output
