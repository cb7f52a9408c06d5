"""``ts.torch_handler.text_handler``: the text cleanup helpers and vocabulary loading of the text handlers.

Works without torchtext. Limits compared with TorchServe:

* the vocabulary (``source_vocab.pt`` in the model dir, or the manifest's ``sourceVocab``) is loaded with
  ``torch.load``; it must be a ``{token: index}`` mapping or an object with ``get_stoi()``/``__getitem__``
  whose class can be unpickled here. A torchtext ``Vocab`` pickle needs torchtext installed; without it,
  load fails with a clear error. Unknown tokens map to ``<unk>`` (or 0) for plain mappings.
* the tokenizer is a re-implementation of torchtext's ``basic_english`` (`server.handlers.text_utils`).
* the contraction table is this project's own list of common English contractions.
* explanations (Captum LayerIntegratedGradients over ``model.embedding``) need captum; without it an
  explain request fails with 503.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import string
import unicodedata
from abc import ABC
from typing import Any

import torch
import torch.nn.functional as F

from server.handlers.base_handler import BaseHandler
from server.handlers.context import Context
from server.handlers.contractions import CONTRACTION_MAP
from server.handlers.text_utils import VocabLookup, get_tokenizer
from server.handlers.util import CLEANUP_REGEX

logger = logging.getLogger(__name__)

CONTRACTIONS_PATTERN = re.compile(
    r"(?<![\w'])(" + "|".join(re.escape(k) for k in sorted(CONTRACTION_MAP, key=len, reverse=True)) + r")(?![\w'])",
    flags=re.IGNORECASE,
)
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def load_vocab(path: str) -> VocabLookup:
    try:
        vocab = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            vocab = torch.load(path, map_location="cpu", weights_only=False)
        except ModuleNotFoundError as e:
            raise RuntimeError(
                f"Cannot load the source vocab {os.path.basename(path)}: it needs module {e.name!r} "
                "(save a plain dict {token: index} instead)"
            ) from e
    return VocabLookup(vocab)


class TextHandler(BaseHandler, ABC):
    """Base class of the text handlers: vocabulary, tokenizer and text cleanup steps."""

    def __init__(self) -> None:
        super().__init__()
        self.source_vocab: VocabLookup | None = None
        self.tokenizer = get_tokenizer("basic_english")
        self.input_text: Any = None
        self.lig: Any = None

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        self.initialized = False
        model_dir = context.system_properties.get("model_dir") or ""
        configured = ((self.manifest or {}).get("model") or {}).get("sourceVocab")
        path = os.path.join(model_dir, configured) if configured else self.get_source_vocab_path(context)
        self.source_vocab = load_vocab(path)
        embedding = getattr(self.model, "embedding", None)
        if embedding is not None:
            try:
                from captum.attr import LayerIntegratedGradients
            except ImportError:
                pass
            else:
                self.lig = LayerIntegratedGradients(self.model, embedding)
        self.initialized = True

    def get_source_vocab_path(self, ctx: Context) -> str:
        path = os.path.join(ctx.system_properties.get("model_dir") or "", "source_vocab.pt")
        if os.path.isfile(path):
            return path
        raise FileNotFoundError(
            "Missing the source_vocab file. Refer default handler documentation for details on using text_handler."
        )

    # -- cleanup steps -------------------------------------------------------------------------------

    def _expand_contractions(self, text: str) -> str:
        """``I'd`` → ``I would``, ``don't`` → ``do not`` (first letter's case kept); then drops ``'``."""

        def expand(match: re.Match[str]) -> str:
            found = match.group(0)
            expansion = CONTRACTION_MAP.get(found.lower(), found)
            return found[0] + expansion[1:] if expansion else found

        return CONTRACTIONS_PATTERN.sub(expand, text).replace("'", "")

    def _remove_accented_characters(self, text: str) -> str:
        return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("utf-8", "ignore")

    def _remove_html_tags(self, text: str) -> str:
        return CLEANUP_REGEX.sub("", text)

    def _remove_punctuation(self, text: str) -> str:
        return text.translate(_PUNCTUATION)

    def _remove_puncutation(self, *args: Any, **kwargs: Any) -> str:
        """TorchServe's misspelled name, kept for handlers that call it."""
        return self._remove_punctuation(*args, **kwargs)

    def _tokenize(self, text: str) -> list[str]:
        return self.tokenizer(text)

    def get_word_token(self, input_tokens: list[str]) -> list[str]:
        """Tokens without the BPE space marker ``Ġ``."""
        return [token.replace("\u0120", "") for token in input_tokens]

    def summarize_attributions(self, attributions: torch.Tensor) -> torch.Tensor:
        attributions = F.softmax(attributions, dim=-1)
        attributions_sum = attributions.sum(dim=-1)
        return attributions / torch.norm(attributions_sum)
