"""The model store: find an archive from a registration url and unpack it safely for the workers.

Resolution follows TorchServe (spec §5.5) for local archives: ``..`` anywhere in the url is refused;
the file name is the url's last path component, looked up in the model store; ``.mar`` files and
tar.gz files are unpacked (with every safety check of `archiver.extract_archive`) into a fresh folder
of the server's work directory; a folder is used in place once validated.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from archiver import ArchiveInfo, ArchiverError, Limits, extract_archive, inspect_archive
from archiver.limits import DEFAULT_LIMITS
from server.errors import InvalidModel, ModelNotFound

ARCHIVE_SUFFIXES = (".mar", ".model", ".tar.gz")


def default_name(file_name: str) -> str:
    """TorchServe's default model name for a store entry: the name less extension, non-word chars -> ``_``."""
    for suffix in ARCHIVE_SUFFIXES:
        if file_name.endswith(suffix):
            file_name = file_name[: -len(suffix)]
            break
    return re.sub(r"\W", "_", file_name)


class ModelStore:
    def __init__(self, root: Path | None, work_dir: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.root = root
        self.work_dir = work_dir
        self.limits = limits

    def entries(self) -> list[Path]:
        """What ``load_models=all`` loads: every non-hidden folder or archive in the store."""
        if self.root is None:
            return []
        return sorted(
            p
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p.is_dir() or p.name.endswith(ARCHIVE_SUFFIXES))
        )

    def locate(self, url: str) -> Path:
        if self.root is None:
            raise ModelNotFound("Model store has not been configured.")
        if ".." in url:
            raise ModelNotFound(f"Relative path is not allowed in url: {url}")
        path = urlsplit(url).path if "://" in url else url
        name = path.rstrip("/").split("/")[-1]
        target = self.root / name
        if target.exists():
            return target
        raise ModelNotFound(f"Model not found in model store: {url}")

    async def unpack(self, archive: Path) -> ArchiveInfo:
        """Validate and unpack ``archive`` off the event loop; returns where the model lives and its manifest."""
        return await asyncio.to_thread(self._unpack, archive)

    def _unpack(self, archive: Path) -> ArchiveInfo:
        try:
            if archive.is_dir():
                info = inspect_archive(archive, limits=self.limits)
                info.path = archive.resolve()
                return info
            dest = self.work_dir / "models" / uuid.uuid4().hex
            return extract_archive(archive, dest, limits=self.limits)
        except ArchiverError as exc:
            raise InvalidModel(f"{archive.name}: {exc}") from None

    @staticmethod
    def discard(info: ArchiveInfo, archive: Path) -> None:
        """Remove an unpacked copy (never a store folder used in place)."""
        if not archive.is_dir() and info.path.exists():
            shutil.rmtree(info.path, ignore_errors=True)
