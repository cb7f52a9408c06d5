"""Archive member names: the one place that decides whether a name stays inside its archive."""

import re

from archiver.errors import UnsafeArchiveError

_DRIVE = re.compile(r"^[A-Za-z]:")


def member_parts(name: str, *, what: str = "entry") -> tuple[str, ...]:
    """Split an archive member name into safe path components.

    Refuses absolute names (``/x``, ``\\x``, ``C:x``), any ``..`` component, NUL bytes and empty
    names. Backslashes count as separators, so a name made on Windows cannot climb out either.
    ``.`` and empty components are dropped.
    """
    if "\x00" in name:
        raise UnsafeArchiveError(f"{what} {name!r} has a NUL byte in its name")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UnsafeArchiveError(f"{what} {name!r} is an absolute path")
    parts = tuple(p for p in re.split(r"[/\\]", name) if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{what} {name!r} climbs out of the archive with '..'")
    if not parts:
        raise UnsafeArchiveError(f"{what} {name!r} is not a file name")
    return parts


def member_name(name: str, *, what: str = "entry") -> str:
    """The canonical ``a/b/c`` spelling of a safe member name."""
    return "/".join(member_parts(name, what=what))
