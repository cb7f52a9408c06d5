"""Caps that stop archive bombs before they fill the disk."""

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Limits:
    """How much an archive may unpack to.

    max_total_bytes: all unpacked files together (large language models run to tens of GB).
    max_entries: members of the archive, folders and links included.
    max_ratio: unpacked size / packed size, for one ZIP member or for a whole tar.gz stream.
    ratio_min_bytes: the ratio is only judged past this many unpacked bytes, so small, very
        compressible files (a vocabulary, a config) are never refused for it.
    """

    max_total_bytes: int = 64 * GiB
    max_entries: int = 20_000
    max_ratio: float = 200.0
    ratio_min_bytes: int = 4 * MiB

    def __post_init__(self) -> None:
        if self.max_total_bytes <= 0 or self.max_entries <= 0 or self.max_ratio <= 1:
            raise ValueError("archive limits must be positive (and the ratio above 1)")


DEFAULT_LIMITS = Limits()
