"""What makes an archive acceptable: its members (caps, names, links) and its contents (manifest, YAML).

Both inspecting and extracting run the same checks, so ``--inspect`` refuses exactly what unpacking
would refuse.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

import yaml

from archiver.errors import InvalidArchiveError, UnsafeArchiveError
from archiver.limits import Limits
from archiver.manifest import (
    MODEL_MANIFEST_PATH,
    WORKFLOW_MANIFEST_PATH,
    ModelManifest,
    WorkflowManifest,
    parse_manifest_json,
)
from archiver.members import DIR, FILE, HARDLINK, SYMLINK, Entry

MAX_SMALL_FILE = 1024 * 1024  # manifests and YAML configs are read whole; larger ones are refused
MAX_LINK_DEPTH = 40  # links within links that Linux follows before giving up (ELOOP)


def _human(n: int) -> str:
    if n < 2**20:
        return f"{n} bytes"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


class EntryChecker:
    """Admits members one by one; refuses the first that breaks a rule."""

    def __init__(self, limits: Limits, packed_size: int) -> None:
        self.limits = limits
        self.packed_size = packed_size
        self.count = 0
        self.total = 0
        self.kinds: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.links: dict[str, str] = {}  # symlink -> its target
        self._folders: set[str] = set()

    def admit(self, entry: Entry) -> None:
        limits = self.limits
        self.count += 1
        if self.count > limits.max_entries:
            raise UnsafeArchiveError(f"the archive has more than {limits.max_entries} entries")
        name = entry.name
        parents = [posixpath.dirname(name)]
        while parents[-1]:
            parents.append(posixpath.dirname(parents[-1]))
        for parent in parents[:-1]:
            if self.kinds.get(parent, DIR) != DIR:
                raise InvalidArchiveError(f"entry {name!r} lies under {parent!r}, which is not a folder")
        if name in self.kinds and not (entry.kind == DIR and self.kinds[name] == DIR):
            raise InvalidArchiveError(f"entry {name!r} appears twice in the archive")
        if entry.kind != DIR and name in self._folders:
            raise InvalidArchiveError(f"entry {name!r} is both a file and a folder")
        self.kinds[name] = entry.kind
        self._folders.update(parents[:-1])
        if entry.kind == FILE:
            self.sizes[name] = entry.size
            self._admit_size(entry)
        elif entry.kind == SYMLINK:
            self._admit_symlink(entry)
        elif entry.kind == HARDLINK:
            self._admit_hardlink(entry)

    def _admit_size(self, entry: Entry) -> None:
        limits = self.limits
        self.total += entry.size
        if self.total > limits.max_total_bytes:
            raise UnsafeArchiveError(f"the archive unpacks to more than the {_human(limits.max_total_bytes)} allowed")
        ratio = entry.size / max(entry.packed or 0, 1)
        if entry.packed is not None and entry.size > limits.ratio_min_bytes and ratio > limits.max_ratio:
            raise UnsafeArchiveError(
                f"entry {entry.name!r} expands {ratio:.0f} times "
                f"(more than {limits.max_ratio:.0f}): refusing a likely archive bomb"
            )
        self.check_ratio(self.total)

    def check_ratio(self, unpacked: int) -> None:
        """The whole archive: unpacked bytes so far against the archive's size on disk."""
        limits = self.limits
        if self.packed_size and unpacked > limits.ratio_min_bytes:
            ratio = unpacked / self.packed_size
            if ratio > limits.max_ratio:
                raise UnsafeArchiveError(
                    f"the archive expands {ratio:.0f} times (more than {limits.max_ratio:.0f}): "
                    "refusing a likely archive bomb"
                )

    def _admit_symlink(self, entry: Entry) -> None:
        target = entry.target or ""
        if not target or "\x00" in target:
            raise UnsafeArchiveError(f"symlink {entry.name!r} has no usable target")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(entry.name), target))
        if target.startswith(("/", "\\")) or resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(f"symlink {entry.name!r} points outside the archive: {target}")
        self.links[entry.name] = target

    def check_links(self) -> None:
        """Follow every symlink through the others, as the OS will once they all exist: none may leave
        the archive's folder or loop. Call it once every member is admitted.

        Each target alone was judged lexically by `admit`, which cannot see that ``s -> .`` turns
        ``a -> s/../x`` into a link to the destination's neighbour ``x``.
        """
        resolved: dict[str, str | None] = {}  # link -> where it leads ("" = the root); None while followed

        def follow(folder: str, rest: str, link: str, depth: int) -> str:
            path = folder
            for part in rest.split("/"):
                if part in ("", "."):
                    continue
                if part == "..":
                    if not path:
                        raise UnsafeArchiveError(f"symlink {link!r} points outside the archive: {self.links[link]}")
                    path = posixpath.dirname(path)
                    continue
                path = f"{path}/{part}" if path else part
                if path not in self.links:
                    continue
                if path in resolved:
                    if resolved[path] is None:
                        raise InvalidArchiveError(f"symlink {link!r} is part of a loop of links")
                    path = resolved[path] or ""
                    continue
                if depth >= MAX_LINK_DEPTH:
                    raise InvalidArchiveError(f"symlink {link!r} goes through more than {MAX_LINK_DEPTH} links")
                resolved[path] = None
                resolved[path] = follow(posixpath.dirname(path), self.links[path], link, depth + 1)
                path = resolved[path] or ""
            return path

        for link in self.links:
            follow("", link, link, 0)

    def _admit_hardlink(self, entry: Entry) -> None:
        target = entry.target or ""
        resolved = posixpath.normpath(target) if target else ""
        if not target or target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(f"hardlink {entry.name!r} points outside the archive: {target}")
        if self.kinds.get(resolved) != FILE:
            raise UnsafeArchiveError(
                f"hardlink {entry.name!r} points at {target!r}, which is not a file earlier in the archive"
            )
        # A link unpacks to a full copy of its target: it counts against the caps like one.
        self.sizes[entry.name] = self.sizes[resolved]
        self._admit_size(Entry(entry.name, FILE, size=self.sizes[resolved]))

    @property
    def names(self) -> set[str]:
        """Members that can be read as files: files and links."""
        return {n for n, k in self.kinds.items() if k != DIR}


Manifest = ModelManifest | WorkflowManifest
ReadSmall = Callable[[str], bytes | None]
"""Reads a member's bytes (at most MAX_SMALL_FILE), or returns None if it is not available."""


def load_yaml_safely(raw: bytes, name: str) -> object:
    """YAML from an archive, with the safe loader only: Python object tags are refused."""
    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidArchiveError(f"{name} is not UTF-8 text: {exc}") from None
    except yaml.constructor.ConstructorError as exc:
        raise UnsafeArchiveError(
            f"{name} uses a YAML tag that is not allowed (only plain YAML is loaded): {exc.problem}"
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidArchiveError(f"{name} is not valid YAML: {exc}") from None


def _read_required(read: ReadSmall, name: str) -> bytes:
    data = read(name)
    if data is None:
        raise InvalidArchiveError(f"{name} is larger than {MAX_SMALL_FILE} bytes or unreadable")
    return data


def validate_contents(names: set[str], read: ReadSmall, default_name: str) -> tuple[str, Manifest, list[str]]:
    """The archive's kind ("model"/"workflow"), its validated manifest, and warnings for a person."""
    warnings: list[str] = []
    if WORKFLOW_MANIFEST_PATH in names and MODEL_MANIFEST_PATH not in names:
        raw = _read_required(read, WORKFLOW_MANIFEST_PATH)
        wf = WorkflowManifest.from_dict(parse_manifest_json(raw, WORKFLOW_MANIFEST_PATH))
        _check_references(wf.referenced_files, names, WORKFLOW_MANIFEST_PATH)
        spec = load_yaml_safely(_read_required(read, wf.spec_file), wf.spec_file)
        if not isinstance(spec, dict):
            raise InvalidArchiveError(f"{wf.spec_file} must be a YAML mapping with 'models' and 'dag'")
        return "workflow", wf, warnings
    if MODEL_MANIFEST_PATH in names:
        raw = _read_required(read, MODEL_MANIFEST_PATH)
        manifest = ModelManifest.from_dict(parse_manifest_json(raw, MODEL_MANIFEST_PATH))
    else:
        manifest = ModelManifest.synthesize(default_name)
        warnings.append(f"no {MODEL_MANIFEST_PATH}: TorchServe's defaults apply (name {default_name}, version 1.0)")
    _check_references(manifest.referenced_files, names, MODEL_MANIFEST_PATH)
    module = manifest.handler_module
    if manifest.runtime != "LSP" and not manifest.synthesized:
        if module.endswith(".py") or "/" in module:
            _check_references({"handler": module}, names, MODEL_MANIFEST_PATH)
        elif f"{module}.py" not in names and not manifest.handler_is_builtin:
            warnings.append(
                f"handler {manifest.handler!r} is neither a built-in handler nor a file in the archive; "
                "it must be importable where the model runs"
            )
    if manifest.config_file:
        config = load_yaml_safely(_read_required(read, manifest.config_file), manifest.config_file)
        if config is not None and not isinstance(config, dict):
            raise InvalidArchiveError(f"{manifest.config_file} must be a YAML mapping of settings")
    return "model", manifest, warnings


def _check_references(refs: dict[str, str], names: set[str], where: str) -> None:
    for key, value in refs.items():
        if value not in names:
            raise InvalidArchiveError(f"{where} '{key}' names {value!r}, which is not in the archive")
