"""``ts.handler_utils.text_utils``: the torchtext pieces the text handlers need, without torchtext.

`get_tokenizer("basic_english")` lowercases, spaces out ``' . , ( ) ! ?``, drops ``"``, turns
``<br />``, ``;`` and ``:`` into spaces and splits on whitespace. `ngrams_iterator` yields the tokens,
then their 2-grams, ... n-grams joined by a space. `VocabLookup` maps tokens to indices from whatever
``source_vocab.pt`` holds (see its docstring).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

_BASIC_ENGLISH_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\'", " '  "),
        (r"\"", ""),
        (r"\.", " . "),
        (r"<br \/>", " "),
        (r",", " , "),
        (r"\(", " ( "),
        (r"\)", " ) "),
        (r"\!", " ! "),
        (r"\?", " ? "),
        (r"\;", " "),
        (r"\:", " "),
        (r"\s+", " "),
    )
]


def _basic_english(line: str) -> list[str]:
    line = line.lower()
    for pattern, replacement in _BASIC_ENGLISH_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def _split(line: str) -> list[str]:
    return line.split()


def get_tokenizer(
    tokenizer: str | Callable[[str], list[str]] | None, language: str = "en"
) -> Callable[[str], list[str]]:
    """``None`` → whitespace split; ``"basic_english"`` → torchtext's basic English rules; a callable → itself."""
    if tokenizer is None:
        return _split
    if callable(tokenizer):
        return tokenizer
    if tokenizer == "basic_english":
        if language != "en":
            raise ValueError("Basic normalization is only available for English (en)")
        return _basic_english
    raise ValueError(f"Tokenizer {tokenizer!r} is not available without torchtext")


def ngrams_iterator(token_list: Sequence[str], ngrams: int) -> Iterator[str]:
    """The tokens, then every run of 2..ngrams consecutive tokens joined by a space."""
    yield from token_list
    for n in range(2, ngrams + 1):
        for start in range(len(token_list) - n + 1):
            yield " ".join(token_list[start : start + n])


class VocabLookup:
    """Token → index over the object loaded from ``source_vocab.pt``.

    Accepted: a mapping ``{token: index}``; an object with ``get_stoi()`` (torchtext ``Vocab``, including
    ``get_default_index()`` when it has one); any object with ``__getitem__(token)`` (legacy torchtext
    vocab with ``stoi``/``unk`` behaviour). For a plain mapping an unknown token gets the index of
    ``<unk>`` if present, else 0.
    """

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab
        self._stoi: Mapping[str, int] | None = None
        self._default: int | None = None
        if isinstance(vocab, Mapping):
            self._stoi = vocab
        elif hasattr(vocab, "get_stoi"):
            self._stoi = vocab.get_stoi()
            if hasattr(vocab, "get_default_index"):
                self._default = vocab.get_default_index()
        elif hasattr(vocab, "stoi") and isinstance(vocab.stoi, Mapping):
            self._stoi = vocab.stoi
        elif not hasattr(vocab, "__getitem__"):
            raise TypeError(
                f"source vocab of type {type(vocab).__name__} is not supported: "
                "use a dict {token: index} or an object with get_stoi() or __getitem__"
            )
        if self._stoi is not None and self._default is None:
            self._default = self._stoi.get("<unk>", 0)

    def __getitem__(self, token: str) -> int:
        if self._stoi is None:
            return int(self.vocab[token])
        index = self._stoi.get(token)
        return int(index if index is not None else self._default or 0)

    def __len__(self) -> int:
        if self._stoi is not None:
            return len(self._stoi)
        return len(self.vocab)

    def __getattr__(self, name: str) -> Any:
        # Anything else (get_stoi, lookup_indices, ...) is the wrapped vocab's.
        if name == "vocab":
            raise AttributeError(name)
        return getattr(self.vocab, name)
