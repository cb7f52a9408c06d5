"""Archive member names: the one place that decides whether a name stays inside its archive."""

import re

from archiver.errors import UnsafeArchiveError

_DRIVE = re.compile(r"^[A-Za-z]:")


def _escape_problem(name: str) -> str | None:
    """Why ``name`` could leave its archive (NUL byte, absolute, ``..``), or None."""
    if "\x00" in name:
        return "has a NUL byte in its name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "is an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "climbs out of the archive with '..'"
    return None


def escapes(name: str) -> bool:
    """Whether ``name`` is absolute or has a ``..`` component (``.`` and empty components are fine)."""
    return _escape_problem(name) is not None


def check_raw_name(name: str, *, what: str = "entry") -> None:
    """Refuse a name as stored (a tar.gz member before its top folder is stripped, say) that escapes."""
    if problem := _escape_problem(name):
        raise UnsafeArchiveError(f"{what} {name!r} {problem}")


def member_parts(name: str, *, what: str = "entry") -> tuple[str, ...]:
    """Split an archive member name into safe path components.

    Refuses absolute names (``/x``, ``\\x``, ``C:x``), any ``..`` component, NUL bytes and empty
    names. Backslashes count as separators, so a name made on Windows cannot climb out either.
    ``.`` and empty components are dropped.
    """
    check_raw_name(name, what=what)
    parts = tuple(p for p in re.split(r"[/\\]", name) if p not in ("", "."))
    if not parts:
        raise UnsafeArchiveError(f"{what} {name!r} is not a file name")
    return parts


def member_name(name: str, *, what: str = "entry") -> str:
    """The canonical ``a/b/c`` spelling of a safe member name."""
    return "/".join(member_parts(name, what=what))
