"""The archiver's error family.

`ArchiverError` is the root. Building archives raises `ArchiveInputError` with the same messages
torch-model-archiver prints for the same mistakes; reading archives raises `InvalidArchiveError`
(not an archive, truncated, bad manifest) or `UnsafeArchiveError` (path escapes, links pointing
outside, archive bombs).
"""


class ArchiverError(Exception):
    """Anything the archiver refuses, with a message meant for a person."""


class ArchiveInputError(ArchiverError):
    """The inputs given to build an archive are wrong (bad name, missing file, existing output)."""


class InvalidArchiveError(ArchiverError):
    """The file is not a usable archive: not a ZIP/tar.gz, truncated, or its manifest is wrong."""


class UnsafeArchiveError(InvalidArchiveError):
    """The archive tries to write outside its folder or to exhaust the disk or memory."""
