"""Building a model archive in the model store from uploaded files (``POST /console/archives``).

The parts are written to a private folder inside the store as they arrive (never held in memory), the
archive is built and checked there like every archive, then moved into the store with one rename. Limits:
``max_upload_size`` for the whole upload, `MAX_UPLOADS` at once, `MAX_FIELD_BYTES` per text field, and
``request_body_timeout`` seconds at most between two pieces of the body. ``force`` replaces an existing
archive, never one a registered model was loaded from or one a config snapshot names (`archive_users`).
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, unquote

import aiohttp
from aiohttp import BodyPartReader, web

from archiver import ArchiveInfo, ArchiverError, ModelArchiveConfig, build_model_archive, inspect_archive
from archiver.manifest import BUILTIN_HANDLERS, LSP_BUILTIN_HANDLERS
from archiver.mar import archive_path, check_output
from archiver.writer import FORMAT_SUFFIXES
from server.api.http import body_deadline, json_response
from server.config import Settings
from server.errors import (
    BadRequest,
    Conflict,
    InternalServerError,
    MethodNotAllowed,
    ResourceNotFound,
    ServeError,
    ServiceUnavailable,
)
from server.models.registry import Registry
from server.models.snapshot import snapshot_archives

log = logging.getLogger("server.console.uploads")

KiB = 1024
GiB = 1024 * 1024 * KiB
DEFAULT_MAX_UPLOAD = 20 * GiB  # config key max_upload_size
MAX_UPLOADS = 2  # archive uploads received and built at once
MAX_FIELD_BYTES = 64 * KiB  # a text form field (model_name, handler, ...)
UPLOAD_CHUNK = 1 * 1024 * KiB

FILE_FIELDS = ("serialized_file", "model_file", "handler_file", "extra_files", "requirements_file", "config_file")
TEXT_FIELDS = ("model_name", "version", "handler", "runtime", "force", "archive_format")
_REPEATABLE = {"extra_files"}

T = TypeVar("T")


class PayloadTooLarge(ServeError):
    status, type = 413, "RequestEntityTooLargeException"


# "," separates --extra-files and "*?[]" are glob patterns there; control characters have no business here.
_REFUSED_CHARS = re.compile(r"[,*?\[\]\x00-\x1f\x7f]")


def safe_file_name(raw: str | None, field_name: str = "file") -> str:
    """The base name of an uploaded file, or 400: ``../x.py`` -> ``x.py``, ``C:\\a\\b.pth`` -> ``b.pth``.

    Percent-escapes are decoded first (some clients, aiohttp's among them, send ``my%20model.pth``).

    Refused: no name, ``.``/``..``, hidden names (``.bashrc``), control characters, ``,*?[]`` (they mean
    something to the archiver's ``--extra-files``) and names over 255 bytes.
    """
    if raw is None or not raw.strip():
        raise BadRequest(f"{field_name}: the uploaded file has no file name.")
    name = unquote(raw).replace("\\", "/").rstrip("/ ").split("/")[-1].strip()
    if not name or name in (".", "..") or name.startswith("."):
        raise BadRequest(f"{field_name}: refusing the uploaded file name {raw!r} (empty, relative or hidden).")
    if _REFUSED_CHARS.search(name):
        raise BadRequest(f"{field_name}: refusing the uploaded file name {raw!r} (control characters or ,*?[]).")
    if len(name.encode("utf-8")) > 255:
        raise BadRequest(f"{field_name}: the uploaded file name is longer than 255 bytes.")
    return name


def _size_setting(settings: Settings, key: str, default: int) -> int:
    raw = settings.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        return max(int(raw.strip()), 0)
    except ValueError:
        log.warning("config: %s=%r is not a whole number of bytes; using %d", key, raw, default)
        return default


def _glob_escape(path: str) -> str:
    """A literal path for the archiver's ``--extra-files`` (which expands ``*?[]``)."""
    return glob.escape(path)


@dataclass
class _Upload:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    received: int = 0


class ArchiveUploads:
    """``POST /console/archives`` (see the module docstring)."""

    def __init__(self, registry: Registry, settings: Settings, *, max_upload_size: int | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.max_upload_size = (
            max_upload_size
            if max_upload_size is not None
            else _size_setting(settings, "max_upload_size", DEFAULT_MAX_UPLOAD)
        )
        self._uploads = 0
        self._store_lock = threading.Lock()

    async def upload(self, request: web.Request) -> web.Response:
        """Receive, build, move into the store; the answer names the archive (JSON)."""
        if not self.settings.enable_model_api:
            raise MethodNotAllowed()
        if self._uploads >= MAX_UPLOADS:
            raise ServiceUnavailable(f"{MAX_UPLOADS} uploads are in progress; try again when one has finished.")
        self._uploads += 1
        try:
            return await self._upload(request)
        finally:
            self._uploads -= 1

    async def _upload(self, request: web.Request) -> web.Response:
        store = self.settings.model_store
        if store is None:
            raise ResourceNotFound("Model store has not been configured.")
        cap = self.max_upload_size
        if request.content_length is not None and request.content_length > cap:
            raise self._too_large()
        if request.content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise BadRequest("Send the archive's files as multipart/form-data.")
        # A private (0700) folder inside the store: parts are written to disk as they arrive, and the
        # built archive moves into the store with one rename on the same file system.
        try:
            staging = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".tsconsole-upload-", dir=store))
        except OSError as exc:
            raise InternalServerError(f"Cannot write to the model store: {exc.strerror or exc}") from None
        try:
            try:
                upload = await self._receive(request, staging / "in", cap)
            except (aiohttp.ClientError, ConnectionError, asyncio.IncompleteReadError) as exc:
                raise BadRequest(f"The upload was interrupted: {exc or type(exc).__name__}") from None
            config = self._archive_config(upload, staging / "out")
            users = {entry.archive.resolve(): f"model {entry.name}" for entry in self.registry.all_versions()}
            result, info = await asyncio.to_thread(self._build, config, Path(store), users)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        size = result.stat().st_size if result.is_file() else info.unpacked_bytes
        log.info("Archive %s built from an upload of %d bytes", result.name, upload.received)
        return json_response(
            {
                "status": f"Archive {result.name} created",
                "archive": result.name,
                "url": result.name,
                "files": [e.name for e in info.files],
                "size": size,
            }
        )

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The upload is larger than max_upload_size ({self.max_upload_size} bytes). "
            "Raise max_upload_size in config.properties, or copy the files to the server and archive there."
        )

    @staticmethod
    async def _piece(request: web.Request, read: Awaitable[T]) -> T:
        """One read of the body: an upload may take long, but not ``request_body_timeout`` without a byte."""
        async with body_deadline(request, "The upload stalled: nothing arrived for {seconds:g} s."):
            return await read

    async def _receive(self, request: web.Request, folder: Path, cap: int) -> _Upload:
        upload = _Upload()
        await asyncio.to_thread(folder.mkdir)
        if request.content_type == "application/x-www-form-urlencoded":
            # Fields only (what an HTTP client sends when there is no file to upload, e.g. a built-in handler).
            limit = MAX_FIELD_BYTES * len(TEXT_FIELDS)
            body = await self._piece(request, request.content.read(limit + 1))
            self._count(upload, len(body), cap)
            if len(body) > limit:
                raise BadRequest(f"The form is longer than {limit} bytes.")
            for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                if key not in TEXT_FIELDS:
                    raise BadRequest(f"Unknown form field {key!r}. Accepted fields: {', '.join(TEXT_FIELDS)}.")
                if key in upload.fields:
                    raise BadRequest(f"Form field {key} is given twice.")
                upload.fields[key] = value.strip()
            return upload
        try:
            reader = await self._piece(request, request.multipart())
        except (ValueError, AssertionError) as exc:
            raise BadRequest(f"Cannot read the multipart body: {exc}") from None
        count = 0
        while True:
            part = await self._piece(request, reader.next())
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise BadRequest("Nested multipart bodies are not supported.")
            name = part.name or ""
            if name in TEXT_FIELDS:
                if name in upload.fields:
                    raise BadRequest(f"Form field {name} is given twice.")
                upload.fields[name] = await self._read_field(request, part, upload, cap)
            elif name in FILE_FIELDS:
                if name in upload.files and name not in _REPEATABLE:
                    raise BadRequest(f"Only one {name} may be uploaded.")
                file_name = safe_file_name(part.filename, name)
                count += 1
                target = folder / str(count) / file_name  # one folder per part: same names never collide
                await asyncio.to_thread(target.parent.mkdir)
                await self._save_part(request, part, target, upload, cap)
                upload.files.setdefault(name, []).append(target)
            else:
                accepted = ", ".join(TEXT_FIELDS + FILE_FIELDS)
                raise BadRequest(f"Unknown form field {name!r}. Accepted fields: {accepted}.")
        return upload

    def _count(self, upload: _Upload, n: int, cap: int) -> None:
        upload.received += n
        if upload.received > cap:
            raise self._too_large()

    async def _read_field(self, request: web.Request, part: BodyPartReader, upload: _Upload, cap: int) -> str:
        data = b""
        while chunk := await self._piece(request, part.read_chunk(MAX_FIELD_BYTES)):
            self._count(upload, len(chunk), cap)
            data += chunk
            if len(data) > MAX_FIELD_BYTES:
                raise BadRequest(f"Form field {part.name} is longer than {MAX_FIELD_BYTES} bytes.")
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise BadRequest(f"Form field {part.name} is not UTF-8 text.") from None

    async def _save_part(
        self, request: web.Request, part: BodyPartReader, target: Path, upload: _Upload, cap: int
    ) -> None:
        out = await asyncio.to_thread(open, target, "xb")
        try:
            while chunk := await self._piece(request, part.read_chunk(UPLOAD_CHUNK)):
                self._count(upload, len(chunk), cap)
                await asyncio.to_thread(out.write, chunk)
        finally:
            await asyncio.to_thread(out.close)

    def _archive_config(self, upload: _Upload, out: Path) -> ModelArchiveConfig:
        fields, files = upload.fields, upload.files
        for required in ("model_name", "version"):
            if not fields.get(required):
                raise BadRequest(f"Parameter {required} is required.")
        runtime = fields.get("runtime") or "python"
        handler = self._handler(fields.get("handler") or "", files.get("handler_file"), runtime)

        def one(key: str) -> str | None:
            paths = files.get(key)
            return str(paths[0]) if paths else None

        extra = files.get("extra_files") or []
        if any("," in str(p) for p in extra):
            raise ServeError(f"The model store's path contains a comma, which extra_files cannot pass: {out}")
        return ModelArchiveConfig(
            model_name=fields["model_name"],
            handler=handler,
            version=fields["version"],
            serialized_file=one("serialized_file"),
            model_file=one("model_file"),
            extra_files=",".join(_glob_escape(str(p)) for p in extra) or None,
            runtime=runtime,
            export_path=str(out),
            archive_format=fields.get("archive_format") or "default",
            force=(fields.get("force") or "").lower() == "true",
            requirements_file=one("requirements_file"),
            config_file=one("config_file"),
        )

    @staticmethod
    def _handler(handler: str, uploaded: list[Path] | None, runtime: str) -> str:
        """A built-in handler name, or the path of the uploaded handler file (never a path on the server)."""
        handler_file = uploaded[0] if uploaded else None
        if not handler:
            if handler_file is None:
                raise BadRequest("Parameter handler is required: a built-in handler or an uploaded handler_file.")
            return str(handler_file)
        module, sep, function = handler.partition(":")
        if handler_file is not None:
            if module in (handler_file.name, handler_file.stem):
                return f"{handler_file}{sep}{function}"
            raise BadRequest(f"handler {handler!r} does not name the uploaded handler_file {handler_file.name!r}.")
        builtins = LSP_BUILTIN_HANDLERS if runtime == "LSP" else tuple(BUILTIN_HANDLERS)
        if handler in builtins:
            return handler
        raise BadRequest(
            f"handler {handler!r} is neither a built-in handler ({', '.join(builtins)}) "
            "nor the file name of an uploaded handler_file."
        )

    def _build(self, config: ModelArchiveConfig, store: Path, users: dict[Path, str]) -> tuple[Path, ArchiveInfo]:
        """Build in the staging folder, check it as every archive is checked, then move it into the store;
        ``force`` never replaces an archive a registered model was loaded from (``users``) or that a config
        snapshot names (a restart would load the new archive in its place)."""
        try:
            final: Path | None = None
            if config.archive_format in FORMAT_SUFFIXES:  # else the archiver says what is wrong, below
                final = Path(archive_path(str(store), config.model_name, config.archive_format))
                # The archiver's checks and messages (name, existing output), against the store itself.
                check_output(
                    config.model_name, str(store), str(final), config.force, kind="model", what="model archive"
                )
            Path(config.export_path or "").mkdir()
            built = build_model_archive(config)
            info = inspect_archive(built, limits=self.registry.store.limits)
        except ArchiverError as exc:
            raise BadRequest(str(exc)) from None
        assert final is not None
        with self._store_lock:  # two uploads of one name at once: the second sees the first's archive
            if os.path.lexists(final):
                if not config.force:
                    raise BadRequest(
                        f"{final} already exists.\nPlease specify --force/-f option to overwrite the model "
                        "archive output file.\nSee -h/--help for more details."
                    )
                user = users.get(final.resolve())
                if user is not None:
                    raise Conflict(f"{final.name} is in use by {user}: unregister it before replacing it.")
                snapshot = snapshot_archives(self.settings, store).get(final.resolve())
                if snapshot is not None:
                    raise Conflict(
                        f"{final.name} is named by the config snapshot {snapshot}: a restart would load the new "
                        "archive in place of the one saved there. Archive it under another name or version."
                    )
                if final.is_dir() and not final.is_symlink():
                    shutil.rmtree(final)
                else:
                    final.unlink()
            os.replace(built, final)
        return final, replace(info, path=final)
