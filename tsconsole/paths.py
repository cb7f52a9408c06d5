"""Turn what a terminal pastes when files are dropped on it into paths.

Terminals spell a dropped file in many ways: ``'/a b/c.pth'`` (quoted), ``/a\\ b/c.pth`` (escaped),
``file:///a%20b/c.pth`` (a URI, sometimes ``file://localhost/…``), several of them separated by spaces
or newlines, with ``\\r\\n`` line ends on Windows, and ``"C:\\Models\\c.pth"`` there. This module
parses all of them. It imports nothing from Textual; only :func:`split_existing` touches the disk
(call it off the event loop).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

# A Windows drive path (``C:\``, ``C:/``) or UNC path (``\\server\share``): backslashes are separators there.
_WINDOWS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\[^\\\s])")
# Characters a backslash escapes inside double quotes (POSIX shell rules).
_DQ_ESCAPABLE = frozenset('"\\$`')
# Suffixes that make a bare relative word look like a file rather than prose.
_FILE_SUFFIX = re.compile(r"\.[A-Za-z0-9_-]{1,12}$")


def _tokens(line: str) -> tuple[list[str], bool]:
    """Shell-like words of one line, and whether the line used quotes or backslash escapes."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quoting = False
    i, n = 0, len(line)
    windows = False
    while i < n:
        c = line[i]
        if not in_word:
            if c.isspace():
                i += 1
                continue
            in_word = True
            rest = line[i + 1 :] if c in "'\"" else line[i:]
            windows = bool(_WINDOWS.match(rest))
        if c.isspace():
            words.append("".join(word))
            word, in_word = [], False
            i += 1
        elif c == "'" or (c == '"' and windows):
            quoting = True
            end = line.find(c, i + 1)
            if end < 0:  # an unbalanced quote: take the rest of the line literally
                end = n
            word.append(line[i + 1 : end])
            i = end + 1
        elif c == '"':
            quoting = True
            i += 1
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n and line[i + 1] in _DQ_ESCAPABLE:
                    i += 1
                word.append(line[i])
                i += 1
            i += 1
        elif c == "\\" and not windows:
            quoting = True
            if i + 1 < n:
                word.append(line[i + 1])
            i += 2
        else:
            word.append(c)
            i += 1
    if in_word:
        words.append("".join(word))
    return [w for w in words if w], quoting


def _from_uri(word: str) -> str:
    """``file:///a%20b`` and ``file://localhost/a`` -> ``/a b``; ``file:///C:/x`` -> ``C:/x``."""
    parts = urlsplit(word)
    path = unquote(parts.path)
    if re.match(r"^/[A-Za-z]:[/\\]", path):
        path = path[1:]
    elif parts.netloc and parts.netloc.lower() not in ("localhost", "127.0.0.1") and not path.startswith("/"):
        path = "/" + path
    return path


def _is_uri(word: str) -> bool:
    return word.lower().startswith("file:")


def _starts_a_path(word: str) -> bool:
    return word.startswith(("/", "~", "\\\\")) or _is_uri(word) or bool(_WINDOWS.match(word))


def _line_words(line: str) -> list[str]:
    words, quoting = _tokens(line)
    # An unquoted, unescaped line with spaces whose later words do not start a path is one path with
    # spaces in it (some terminals paste ``/home/me/My Models/x.pth`` as is).
    if not quoting and len(words) > 1 and _starts_a_path(words[0]) and not all(map(_starts_a_path, words[1:])):
        return [line.strip()]
    return words


def parse_pasted_paths(text: str) -> list[Path]:
    """Every path in pasted text, in order, without duplicates; ``~`` expanded, nothing checked on disk."""
    out: list[Path] = []
    seen: set[str] = set()
    for line in text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").split("\n"):
        if not line.strip():
            continue
        for word in _line_words(line):
            raw = _from_uri(word) if _is_uri(word) else word
            if not raw:
                continue
            if raw.startswith("~"):
                raw = str(Path(raw).expanduser())
            if raw not in seen:
                seen.add(raw)
                out.append(Path(raw))
    return out


def looks_like_paths(paths: Iterable[Path], text: str = "") -> bool:
    """Whether parsed words are plausibly dropped files rather than pasted prose.

    A file URI, an absolute path, or a single word with a file suffix counts; a paste of ordinary words
    (``hello world``) does not.
    """
    paths = list(paths)
    if not paths:
        return False
    if text and text.lstrip().lower().startswith("file:"):
        return True
    lone_file = len(paths) == 1 and bool(_FILE_SUFFIX.search(paths[0].name))
    return lone_file or all(p.is_absolute() or _WINDOWS.match(str(p)) for p in paths)


def paths_from_drop(text: str) -> list[Path]:
    """The paths of a drop, or ``[]`` when the pasted text does not look like paths at all."""
    paths = parse_pasted_paths(text)
    return paths if looks_like_paths(paths, text) else []


def split_existing(paths: Iterable[Path], text: str = "") -> tuple[list[Path], list[Path]]:
    """(paths that exist, paths that do not). Touches the disk: run it in a thread.

    When ``text`` is given and a pasted line, taken whole, names an existing file while its words do
    not, that line wins: a path with unescaped spaces.
    """
    found: list[Path] = []
    missing: list[Path] = []
    for path in paths:
        (found if path.exists() else missing).append(path)
    if missing and text:
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            whole = Path(line.strip().strip("'\"")).expanduser()
            if line.strip() and whole.exists() and whole not in found:
                words = {Path(w) for w in _tokens(line)[0]}
                missing = [m for m in missing if m not in words]
                found.append(whole)
    return found, missing


def join_paths(paths: Iterable[Path]) -> str:
    """How several paths are written in one text field: comma separated, as ``--extra-files`` takes them."""
    return ",".join(str(p) for p in paths)
