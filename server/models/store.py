"""The model store: find an archive from a registration url and unpack it safely for the workers.

Resolution follows TorchServe (spec §5.5) for local archives: ``..`` anywhere in the url is refused;
the file name is the url's last path component, looked up in the model store; ``.mar`` files and
tar.gz files are unpacked (with every safety check of `archiver.extract_archive`) into a fresh folder
of the server's work directory; a folder is used in place once validated. URLs allowed by ``allowed_urls``
are downloaded into the store first (`server.models.download`).
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
from server.errors import InternalServerError, InvalidModel, ModelNotFound
from server.models.download import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S, allowed, download

ARCHIVE_SUFFIXES = (".mar", ".model", ".tar.gz")


def looks_like_url(url: str) -> bool:
    return re.match(r"^(https?|file?)://", url, flags=re.IGNORECASE) is not None


def file_name(url: str) -> str:
    """The archive's file name: the last path component of the url (TorchServe's rule)."""
    path = urlsplit(url).path if looks_like_url(url) else url
    return path.rstrip("/").split("/")[-1]


class ModelStore:
    def __init__(
        self,
        root: Path | None,
        work_dir: Path,
        limits: Limits = DEFAULT_LIMITS,
        *,
        max_download_bytes: int = DEFAULT_MAX_BYTES,
        download_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.root = root
        self.work_dir = work_dir
        self.limits = limits
        self.max_download_bytes = max_download_bytes
        self.download_timeout_s = download_timeout_s

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
        """A store entry (or an existing folder) named by ``url``; no download (see `fetch`)."""
        if self.root is None:
            raise ModelNotFound("Model store has not been configured.")
        if not url:
            raise ModelNotFound("empty url")
        if ".." in url:
            raise ModelNotFound(f"Relative path is not allowed in url: {url}")
        target = self.root / file_name(url)
        if target.exists():
            return target
        if not looks_like_url(url) and Path(url).is_dir():
            return Path(url)
        raise ModelNotFound(f"Model not found at: {url}")

    async def fetch(self, url: str, allowed_urls: str) -> tuple[Path, bool]:
        """Resolve a registration url (spec §5.5): download allowed URLs into the store, else `locate`.

        Returns the store entry and whether it was downloaded (unregistering then deletes it).
        """
        if self.root is None:
            raise ModelNotFound("Model store has not been configured.")
        if url and ".." in url:
            raise ModelNotFound(f"Relative path is not allowed in url: {url}")
        patterns = [p for p in allowed_urls.split(",") if p]
        if url and allowed(url, patterns):
            target = self.root / file_name(url)
            if target.exists():
                raise InternalServerError(f"Model file already exists {target.name}")
            await download(url, target, patterns, max_bytes=self.max_download_bytes, timeout_s=self.download_timeout_s)
            return target, True
        if looks_like_url(url):
            raise ModelNotFound(f"Given URL {url} does not match any allowed URL(s)")
        return self.locate(url), False

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
    async def discard(info: ArchiveInfo, archive: Path, *, downloaded: bool = False) -> None:
        """Remove an unpacked copy (never a store folder used in place), and the archive too when it was
        downloaded for this registration; off the event loop."""

        def remove() -> None:
            if not archive.is_dir() and info.path.exists():
                shutil.rmtree(info.path, ignore_errors=True)
            if downloaded:
                archive.unlink(missing_ok=True)

        await asyncio.to_thread(remove)
