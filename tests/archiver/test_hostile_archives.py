"""Hostile and broken archives, crafted by hand: each must be refused by both inspect and extract.

Every refusal is checked three ways: the error class, a message that names the problem, and that
nothing was left behind (no destination, no hidden ``.partial`` folder, no file written outside).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import struct
import subprocess
import sys
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from archiver import (
    ArchiverError,
    InvalidArchiveError,
    Limits,
    UnsafeArchiveError,
    extract_archive,
    inspect_archive,
)
from archiver.extract import _inside

MiB = 1024 * 1024
MANIFEST = "MAR-INF/MANIFEST.json"
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------------
# Crafting archives


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Hardlink:
    target: str  # tar: the linked member's full name, as stored (top folder included)


@dataclass(frozen=True)
class Fifo:
    pass


Spec = bytes | str | Symlink | Hardlink | Fifo
Members = list[tuple[str, Spec]]


def _data(spec: bytes | str) -> bytes:
    return spec.encode() if isinstance(spec, str) else spec


def make_zip(path: Path, members: Members, *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A ZIP with exactly these member names (no sanitizing); ``Symlink`` makes a unix symlink."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is what some tests want
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, spec in members:
                info = zipfile.ZipInfo(name, date_time=(2024, 11, 26, 10, 59, 39))
                info.compress_type = compression
                if isinstance(spec, Symlink):
                    info.create_system = 3
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    zf.writestr(info, spec.target)
                else:
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    zf.writestr(info, _data(spec))  # type: ignore[arg-type]
    return path


def make_tgz(path: Path, members: Members, *, top: str | None = "m") -> Path:
    """A tar.gz; with ``top``, every name is put under ``top/`` (and the folder itself comes first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        if top:
            folder = tarfile.TarInfo(top)
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(folder)
        for name, spec in members:
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.mode = 0o644
            if isinstance(spec, Symlink):
                info.type, info.linkname = tarfile.SYMTYPE, spec.target
                tf.addfile(info)
            elif isinstance(spec, Hardlink):
                info.type, info.linkname = tarfile.LNKTYPE, spec.target
                tf.addfile(info)
            elif isinstance(spec, Fifo):
                info.type = tarfile.FIFOTYPE
                tf.addfile(info)
            else:
                data = _data(spec)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def make_folder(path: Path, members: Members) -> Path:
    for name, spec in members:
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, Symlink):
            target.symlink_to(spec.target)
        else:
            target.write_bytes(_data(spec))  # type: ignore[arg-type]
    return path


def make(fmt: str, tmp_path: Path, members: Members) -> Path:
    """``src/m.mar``, ``src/m.tar.gz`` or the folder ``src/m`` under ``tmp_path``."""
    if fmt == "folder":
        return make_folder(tmp_path / "src" / "m", members)
    if fmt == "zip":
        return make_zip(tmp_path / "src" / "m.mar", members)
    return make_tgz(tmp_path / "src" / "m.tar.gz", members)


def manifest(drop: tuple[str, ...] = (), **model: object) -> bytes:
    """A valid model manifest; keyword arguments change ``model`` keys, ``drop`` removes them."""
    section: dict[str, object] = {
        "modelName": "m",
        "serializedFile": "model.pt",
        "handler": "image_classifier",
        "modelVersion": "1.0",
    }
    section.update(model)
    for key in drop:
        section.pop(key)
    data = {"createdOn": "26/11/2024 10:59:39", "runtime": "python", "model": section}
    data["archiverVersion"] = "0.12.0"
    return json.dumps(data, indent=2).encode()


WEIGHTS = bytes(range(256)) * 16


def good(*extra: tuple[str, Spec], **model: object) -> Members:
    """The members of a well-formed model archive, then ``extra`` (hostile ones go last, so that files
    have already been written when extraction fails)."""
    return [(MANIFEST, manifest(**model)), ("model.pt", WEIGHTS), *extra]


# ---------------------------------------------------------------------------------------------------------
# Running an operation and checking that nothing was left behind


OPS = ["inspect", "extract"]


def dest_of(tmp_path: Path) -> Path:
    return tmp_path / "store" / "m"


def run(op: str, archive: Path, tmp_path: Path, limits: Limits | None = None):
    kwargs = {"limits": limits} if limits else {}
    if op == "inspect":
        return inspect_archive(archive, **kwargs)
    return extract_archive(archive, dest_of(tmp_path), **kwargs)


def tree(root: Path) -> dict[str, bytes | str | None]:
    """Every path below ``root`` (links not followed): file bytes, link targets, None for folders."""
    out: dict[str, bytes | str | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                out[rel] = None
            else:
                out[rel] = path.read_bytes()
    return out


def assert_refused(
    op: str,
    archive: Path,
    tmp_path: Path,
    error: type[Exception],
    match: str,
    *,
    limits: Limits | None = None,
    exact: bool = True,
) -> ArchiverError:
    """``op`` raises ``error`` (exactly, unless ``exact`` is False) whose message contains ``match``,
    and the whole of ``tmp_path`` is unchanged: no destination, no ``.partial`` folder, no escapee."""
    (tmp_path / "store").mkdir(exist_ok=True)
    before = tree(tmp_path)
    with pytest.raises(ArchiverError) as caught:
        run(op, archive, tmp_path, limits)
    exc = caught.value
    assert isinstance(exc, error), f"{type(exc).__name__}: {exc}"
    if exact:
        assert type(exc) is error, f"{type(exc).__name__} instead of {error.__name__}: {exc}"
    assert match in str(exc), f"{match!r} not in {str(exc)!r}"
    assert not os.path.lexists(dest_of(tmp_path))
    assert tree(tmp_path) == before
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "store" / "evil.txt").exists()
    return exc


@pytest.fixture(params=OPS)
def op(request) -> str:
    return request.param


# ---------------------------------------------------------------------------------------------------------
# Positive controls: the same helpers build archives that are accepted


EXPECTED = ["MAR-INF/MANIFEST.json", "latest", "model.pt"]


@pytest.mark.parametrize("fmt", ["zip", "tgz", "folder"])
def test_well_formed_archive_inspects_and_extracts(tmp_path: Path, fmt: str) -> None:
    members = good(("latest", Symlink("model.pt")))
    archive = make(fmt, tmp_path, members)

    info = inspect_archive(archive)
    assert info.format == {"folder": "directory"}.get(fmt, fmt)
    assert info.kind == "model" and info.manifest.model_name == "m"
    assert sorted(e.name for e in info.files) == EXPECTED

    dest = dest_of(tmp_path)
    extracted = extract_archive(archive, dest)
    assert sorted(e.name for e in extracted.files) == EXPECTED
    assert (dest / "model.pt").read_bytes() == WEIGHTS
    assert json.loads((dest / MANIFEST).read_bytes())["model"]["modelName"] == "m"
    # The link inside the archive is kept as a working link.
    assert (dest / "latest").is_symlink() and os.readlink(dest / "latest") == "model.pt"
    assert (dest / "latest").read_bytes() == WEIGHTS
    assert sorted(os.listdir(dest.parent)) == ["m"]  # no .partial folder left over


# ---------------------------------------------------------------------------------------------------------
# Names that climb out


def test_inside_is_not_a_string_prefix() -> None:
    assert not _inside(Path("/store/m"), Path("/store/m2"))
    assert not _inside(Path("/store/m"), Path("/store"))
    assert _inside(Path("/store/m"), Path("/store/m/x"))
    assert _inside(Path("/store/m"), Path("/store/m"))


ESCAPING_NAMES = [
    ("../evil.txt", "climbs out of the archive with '..'"),
    ("a/../../evil.txt", "climbs out of the archive with '..'"),
    ("..\\evil.txt", "climbs out of the archive with '..'"),
    ("C:/evil.txt", "is an absolute path"),
    ("ABS", "is an absolute path"),  # replaced by an absolute path under tmp_path
]


@pytest.mark.parametrize(("name", "message"), ESCAPING_NAMES)
def test_zip_entry_escaping_by_name(tmp_path: Path, op: str, name: str, message: str) -> None:
    name = str(tmp_path / "evil.txt") if name == "ABS" else name
    archive = make_zip(tmp_path / "src" / "m.mar", good((name, b"pwned")))
    assert_refused(op, archive, tmp_path, UnsafeArchiveError, message)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.txt", "climbs out of the archive with '..'"),
        ("m/../../evil.txt", "climbs out of the archive with '..'"),
        ("m/..\\..\\evil.txt", "climbs out of the archive with '..'"),
        ("C:/evil.txt", "is an absolute path"),
        ("ABS", "is an absolute path"),
    ],
)
def test_tgz_entry_escaping_by_name(tmp_path: Path, op: str, name: str, message: str) -> None:
    name = str(tmp_path / "evil.txt") if name == "ABS" else name
    members = [(f"m/{n}", data) for n, data in good()] + [(name, b"pwned")]
    archive = make_tgz(tmp_path / "src" / "m.tar.gz", members, top=None)
    assert_refused(op, archive, tmp_path, UnsafeArchiveError, message)


# ---------------------------------------------------------------------------------------------------------
# Links that point outside


@pytest.mark.parametrize("target", ["ABS", "../../outside", "../outside"])
@pytest.mark.parametrize("fmt", ["zip", "tgz", "folder"])
def test_symlink_pointing_outside(tmp_path: Path, op: str, fmt: str, target: str) -> None:
    target = str(tmp_path / "outside") if target == "ABS" else target
    archive = make(fmt, tmp_path, good(("link", Symlink(target))))
    assert_refused(op, archive, tmp_path, UnsafeArchiveError, "symlink 'link' points outside the archive")


def test_tgz_hardlink_pointing_outside(tmp_path: Path, op: str) -> None:
    (tmp_path / "x").write_bytes(b"secret")
    archive = make_tgz(tmp_path / "src" / "m.tar.gz", good(("link", Hardlink("../x"))))
    assert_refused(op, archive, tmp_path, UnsafeArchiveError, "hardlink 'link' points outside the archive")


def test_tgz_hardlink_climbing_inside_the_top_folder(tmp_path: Path, op: str) -> None:
    archive = make_tgz(tmp_path / "src" / "m.tar.gz", good(("link", Hardlink("m/../../x"))))
    assert_refused(op, archive, tmp_path, UnsafeArchiveError, "hardlink 'link' points outside the archive")


def test_tgz_hardlink_to_a_missing_member(tmp_path: Path, op: str) -> None:
    archive = make_tgz(tmp_path / "src" / "m.tar.gz", good(("link", Hardlink("m/nowhere.pt"))))
    assert_refused(op, archive, tmp_path, UnsafeArchiveError, "which is not a file earlier in the archive")


@pytest.mark.parametrize("target", ["s/../m2/secret.txt", "s/../m2"])
@pytest.mark.parametrize("fmt", ["zip", "tgz", "folder"])
def test_symlink_chain_escaping_to_a_sibling(tmp_path: Path, op: str, fmt: str, target: str) -> None:
    """``a -> s/../m2/...`` reads as inside, but ``s -> .`` makes ``s/..`` the destination's parent."""
    sibling = tmp_path / "store" / "m2"
    sibling.mkdir(parents=True)
    (sibling / "secret.txt").write_bytes(b"the neighbour's weights")
    archive = make(fmt, tmp_path, good(("s", Symlink(".")), ("a", Symlink(target))))
    assert_refused(op, archive, tmp_path, UnsafeArchiveError, "symlink 'a' points outside the archive")
    assert (sibling / "secret.txt").read_bytes() == b"the neighbour's weights"
    assert os.listdir(sibling) == ["secret.txt"]


@pytest.mark.parametrize("fmt", ["zip", "tgz", "folder"])
def test_symlink_loop_is_refused_cleanly(tmp_path: Path, op: str, fmt: str) -> None:
    archive = make(fmt, tmp_path, good(("a", Symlink("b")), ("b", Symlink("a"))))
    assert_refused(op, archive, tmp_path, InvalidArchiveError, "symlink 'a' is part of a loop")


@pytest.mark.parametrize("fmt", ["zip", "tgz"])
def test_symlink_chain_longer_than_the_os_follows(tmp_path: Path, op: str, fmt: str) -> None:
    chain = [(f"l{i}", Symlink(f"l{i + 1}")) for i in range(60)] + [("l60", Symlink("model.pt"))]
    archive = make(fmt, tmp_path, good(*chain))
    assert_refused(op, archive, tmp_path, InvalidArchiveError, "goes through more than 40 links")


@pytest.mark.parametrize("fmt", ["zip", "tgz", "folder"])
def test_symlink_pointing_inside_is_accepted(tmp_path: Path, fmt: str) -> None:
    links = {"latest": "model.pt", "sub/deeper.pt": "../model.pt", "d": "sub", "via_d": "d/../model.pt"}
    archive = make(fmt, tmp_path, good(*[(name, Symlink(target)) for name, target in links.items()]))
    names = sorted(e.name for e in inspect_archive(archive).files)
    assert names == sorted(["MAR-INF/MANIFEST.json", "model.pt", *links])
    dest = dest_of(tmp_path)
    extract_archive(archive, dest)
    for link, target in links.items():
        if link == "d":
            assert (dest / "d").is_symlink() and (dest / "d" / "deeper.pt").read_bytes() == WEIGHTS
            continue
        assert (dest / link).is_symlink() and os.readlink(dest / link) == target
        assert (dest / link).read_bytes() == WEIGHTS


# ---------------------------------------------------------------------------------------------------------
# Archive bombs


ZEROS = bytes(8 * MiB)
BOMB_LIMITS = Limits(ratio_min_bytes=1 * MiB, max_ratio=100)


def test_zip_member_expanding_too_much(tmp_path: Path, op: str) -> None:
    archive = make_zip(tmp_path / "src" / "m.mar", [(MANIFEST, manifest()), ("model.pt", ZEROS)])
    exc = assert_refused(op, archive, tmp_path, UnsafeArchiveError, "archive bomb", limits=BOMB_LIMITS)
    assert "entry 'model.pt' expands" in str(exc)


def test_tgz_expanding_too_much(tmp_path: Path, op: str) -> None:
    archive = make_tgz(tmp_path / "src" / "m.tar.gz", [(MANIFEST, manifest()), ("model.pt", ZEROS)])
    exc = assert_refused(op, archive, tmp_path, UnsafeArchiveError, "archive bomb", limits=BOMB_LIMITS)
    assert "the archive expands" in str(exc)


@pytest.mark.parametrize("fmt", ["zip", "tgz"])
def test_total_size_cap(tmp_path: Path, op: str, fmt: str) -> None:
    archive = make(fmt, tmp_path, [(MANIFEST, manifest()), ("model.pt", os.urandom(2000))])
    exc = assert_refused(
        op, archive, tmp_path, UnsafeArchiveError, "unpacks to more than", limits=Limits(max_total_bytes=1000)
    )
    assert "1000 bytes" in str(exc)


@pytest.mark.parametrize("fmt", ["zip", "tgz"])
def test_entry_count_cap(tmp_path: Path, op: str, fmt: str) -> None:
    members = good(*[(f"extra/{i}.txt", b"x") for i in range(10)])
    archive = make(fmt, tmp_path, members)
    assert_refused(op, archive, tmp_path, UnsafeArchiveError, "more than 5 entries", limits=Limits(max_entries=5))


def test_tgz_hardlinks_count_as_copies(tmp_path: Path, op: str) -> None:
    links = [(f"copy{i}.pt", Hardlink("m/model.pt")) for i in range(50)]
    archive = make_tgz(
        tmp_path / "src" / "m.tar.gz", [(MANIFEST, manifest()), ("model.pt", os.urandom(100_000)), *links]
    )
    assert_refused(
        op, archive, tmp_path, UnsafeArchiveError, "unpacks to more than", limits=Limits(max_total_bytes=10**6)
    )
    # The same archive passes when the cap allows the copies: the links are what tipped it over.
    assert len(inspect_archive(archive, limits=Limits(max_total_bytes=10**7)).files) == 52


def _patch_zip_size(archive: Path, member: str, size: int) -> None:
    """Overwrite the uncompressed size of ``member`` in its local header and its central directory entry."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        local = zf.getinfo(member).header_offset
    assert data[local : local + 4] == b"PK\x03\x04"
    struct.pack_into("<I", data, local + 22, size)
    central = data.rfind(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_len] == member.encode():
            struct.pack_into("<I", data, central + 24, size)
            break
        central = data.rfind(b"PK\x01\x02", 0, central)
    else:
        raise AssertionError(f"{member} not in the central directory")
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo(member).file_size == size


def test_zip_whose_headers_lie_about_the_size(tmp_path: Path) -> None:
    """Only unpacking can tell: 64 KiB of zeros packs small enough to claim 4 KiB. Nothing is left."""
    archive = make_zip(tmp_path / "src" / "m.mar", [(MANIFEST, manifest()), ("model.pt", bytes(64 * 1024))])
    _patch_zip_size(archive, "model.pt", 4096)
    exc = assert_refused("extract", archive, tmp_path, InvalidArchiveError, "is truncated or corrupt")
    assert "Bad CRC-32 for file 'model.pt'" in str(exc)


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_zip_whose_headers_lie_impossibly(tmp_path: Path, op: str, compression: int) -> None:
    """64 KiB of random bytes cannot unpack to 1000: the headers alone show the lie."""
    members = [(MANIFEST, manifest()), ("model.pt", os.urandom(64 * 1024))]
    archive = make_zip(tmp_path / "src" / "m.mar", members, compression=compression)
    _patch_zip_size(archive, "model.pt", 1000)
    assert_refused(op, archive, tmp_path, UnsafeArchiveError, "entry 'model.pt' has lying headers")


# ---------------------------------------------------------------------------------------------------------
# Special files and duplicates


def test_tgz_fifo_member(tmp_path: Path, op: str) -> None:
    archive = make_tgz(tmp_path / "src" / "m.tar.gz", good(("pipe", Fifo())))
    assert_refused(op, archive, tmp_path, UnsafeArchiveError, "is a device, FIFO or other special file")


def test_zip_duplicate_member(tmp_path: Path, op: str) -> None:
    archive = make_zip(tmp_path / "src" / "m.mar", good(("model.pt", b"other weights")))
    assert_refused(op, archive, tmp_path, InvalidArchiveError, "'model.pt' appears twice")


# ---------------------------------------------------------------------------------------------------------
# Not archives, or broken ones


def _truncated_zip(tmp_path: Path) -> Path:
    archive = make_zip(tmp_path / "src" / "m.mar", good(("big.bin", os.urandom(64 * 1024))))
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    return archive


def _truncated_tgz(tmp_path: Path, fraction: float = 0.5) -> Path:
    archive = make_tgz(tmp_path / "src" / "m.tar.gz", good(("big.bin", os.urandom(64 * 1024))))
    archive.write_bytes(archive.read_bytes()[: int(archive.stat().st_size * fraction)])
    return archive


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


BROKEN = {
    "mar cut in half": (_truncated_zip, "is truncated or corrupt"),
    "tar.gz cut in half": (_truncated_tgz, "is truncated or corrupt"),
    "empty file": (lambda t: _file(t, "m.mar", b""), "is not an archive"),
    "text file": (lambda t: _file(t, "m.mar", b"just some notes\n" * 10), "is not an archive"),
    "png": (lambda t: _file(t, "m.mar", b"\x89PNG\r\n\x1a\n" + os.urandom(2048)), "is not an archive"),
    "gzip, not tar": (lambda t: _file(t, "m.tar.gz", gzip.compress(b"x" * 5000)), "is truncated or corrupt"),
    "PK, then junk": (lambda t: _file(t, "m.mar", b"PK\x03\x04" + os.urandom(500)), "is truncated or corrupt"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_file(tmp_path: Path, op: str, case: str) -> None:
    build, message = BROKEN[case]
    assert_refused(op, build(tmp_path), tmp_path, InvalidArchiveError, message)


@pytest.mark.parametrize("fraction", [0.2, 0.35, 0.6, 0.8, 0.95, 0.99])
def test_tgz_truncated_anywhere(tmp_path: Path, op: str, fraction: float) -> None:
    """Wherever the cut falls (in a header, in a member's data, in the gzip trailer), it is noticed."""
    assert_refused(op, _truncated_tgz(tmp_path, fraction), tmp_path, InvalidArchiveError, "truncated or corrupt")


def _tgz_bytes(tmp_path: Path) -> bytes:
    return make_tgz(tmp_path / "src" / "m.tar.gz", good(("big.bin", os.urandom(64 * 1024)))).read_bytes()


def _flip_middle(raw: bytes) -> bytes:
    """Random data is stored uncompressed inside deflate, so the flipped byte still decompresses."""
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF
    return bytes(flipped)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:-8], "Compressed file ended before the end-of-stream marker"),
        (lambda raw: raw[:-3], "Compressed file ended before the end-of-stream marker"),
        (_flip_middle, "CRC check failed"),
        (lambda raw: raw + b"junk", "Not a gzipped file"),
    ],
    ids=["no gzip trailer", "half a trailer", "flipped byte", "trailing junk"],
)
def test_tgz_damage_tarfile_alone_would_miss(tmp_path: Path, op: str, damage, message: str) -> None:
    """The tar inside is whole, only the gzip stream's end or checksum shows the damage."""
    archive = tmp_path / "src" / "m.tar.gz"
    archive.write_bytes(damage(_tgz_bytes(tmp_path)))
    exc = assert_refused(op, archive, tmp_path, InvalidArchiveError, "is truncated or corrupt")
    assert message in str(exc)


# ---------------------------------------------------------------------------------------------------------
# Manifests


def _manifest_case(raw: bytes, *extra: tuple[str, Spec]) -> Members:
    return [(MANIFEST, raw), ("model.pt", WEIGHTS), *extra]


def _json(data: object) -> bytes:
    return json.dumps(data).encode()


MANIFEST_CASES = {
    "not JSON": (b"{'model': 1", InvalidArchiveError, "is not valid JSON"),
    "a JSON list": (b'[{"model": {}}]', InvalidArchiveError, "must hold a JSON object"),
    "no model": (_json({"runtime": "python"}), InvalidArchiveError, "has no 'model' section"),
    "no modelName": (manifest(drop=("modelName",)), InvalidArchiveError, "has no 'modelName'"),
    "no modelVersion": (manifest(drop=("modelVersion",)), InvalidArchiveError, "has no 'modelVersion'"),
    "no handler": (manifest(drop=("handler",)), InvalidArchiveError, "has no 'handler'"),
    "runtime java": (
        json.dumps({**json.loads(manifest()), "runtime": "java"}).encode(),
        InvalidArchiveError,
        "runtime 'java' is not one of",
    ),
    "serializedFile climbs": (
        manifest(serializedFile="../../etc/passwd"),
        UnsafeArchiveError,
        "'serializedFile' '../../etc/passwd' climbs out of the archive",
    ),
    "serializedFile absolute": (
        manifest(serializedFile="/etc/passwd"),
        UnsafeArchiveError,
        "'serializedFile' '/etc/passwd' is an absolute path",
    ),
    "serializedFile missing": (
        manifest(serializedFile="weights.pt"),
        InvalidArchiveError,
        "'serializedFile' names 'weights.pt', which is not in the archive",
    ),
    "handler file missing": (
        manifest(handler="evil.py"),
        InvalidArchiveError,
        "'handler' names 'evil.py', which is not in the archive",
    ),
}


@pytest.mark.parametrize("case", MANIFEST_CASES)
@pytest.mark.parametrize("fmt", ["zip", "tgz"])
def test_bad_model_manifest(tmp_path: Path, op: str, fmt: str, case: str) -> None:
    raw, error, message = MANIFEST_CASES[case]
    archive = make(fmt, tmp_path, _manifest_case(raw))
    exc = assert_refused(op, archive, tmp_path, error, message)
    assert "MANIFEST.json" in str(exc)


def test_workflow_manifest_without_archiver_version(tmp_path: Path, op: str) -> None:
    raw = _json(
        {
            "createdOn": "26/11/2024 10:59:39",
            "workflow": {"workflowName": "wf", "specFile": "spec.yaml", "handler": "handler.py"},
        }
    )
    members: Members = [
        ("WAR-INF/MANIFEST.json", raw),
        ("spec.yaml", b"models: {}\ndag: {}\n"),
        ("handler.py", b""),
    ]
    archive = make_zip(tmp_path / "src" / "wf.war", members)
    assert_refused(op, archive, tmp_path, InvalidArchiveError, "WAR-INF/MANIFEST.json has no 'archiverVersion'")


# ---------------------------------------------------------------------------------------------------------
# YAML config files


@pytest.mark.parametrize("fmt", ["zip", "tgz"])
def test_yaml_python_tag_is_refused_and_never_run(tmp_path: Path, op: str, fmt: str) -> None:
    marker = tmp_path / "pwned"
    config = f'!!python/object/apply:os.system ["touch {marker}"]\n'.encode()
    members = good(("model-config.yaml", config), configFile="model-config.yaml")
    archive = make(fmt, tmp_path, members)
    exc = assert_refused(op, archive, tmp_path, UnsafeArchiveError, "python/object/apply:os.system")
    assert "model-config.yaml uses a YAML tag that is not allowed" in str(exc)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["zip", "tgz"])
def test_yaml_that_is_not_a_mapping(tmp_path: Path, op: str, fmt: str) -> None:
    members = good(("model-config.yaml", b"- batchSize: 4\n- maxWorkers: 2\n"), configFile="model-config.yaml")
    archive = make(fmt, tmp_path, members)
    assert_refused(op, archive, tmp_path, InvalidArchiveError, "must be a YAML mapping")


# ---------------------------------------------------------------------------------------------------------
# The command line


def test_cli_inspect_reports_the_problem(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.mar", good(("../evil.txt", b"pwned")))
    result = subprocess.run(
        [sys.executable, "-m", "tsconsole", "archive", "--inspect", str(archive)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR - ")]
    assert errors and "'../evil.txt' climbs out of the archive with '..'" in errors[0], result.stderr
    assert result.stdout == ""
    assert not (tmp_path.parent / "evil.txt").exists()
