"""How the console writes numbers: every figure may be missing ("N/A"), never an exception."""

from __future__ import annotations

DASH = "–"


def number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def size(value: object) -> str:
    """Bytes as B/KiB/MiB/GiB/TiB."""
    n = number(value)
    if n is None:
        return "N/A"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def percent(value: object) -> str:
    n = number(value)
    return "N/A" if n is None else f"{n:.0f}%"


def used_of(used: object, total: object) -> str:
    if number(used) is None and number(total) is None:
        return "N/A"
    return f"{size(used)} / {size(total)}"


def rate(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def millis(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def unit(value: object, suffix: str, digits: int = 0) -> str:
    n = number(value)
    return "N/A" if n is None else f"{n:.{digits}f} {suffix}"
