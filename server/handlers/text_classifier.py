"""``ts.torch_handler.text_classifier``: bag-of-ngrams text classification (spec §6.6). No batching.

Only the first request of a batch is processed (as in TorchServe: a batch of more than one then fails
with ``number of batch response mismatched``). Its text (``data`` or ``body``; bytes decoded as UTF-8)
is cleaned (HTML removed, lowercased, contractions expanded, accents and punctuation removed),
tokenized with the ``basic_english`` rules, expanded to uni+bi-grams and looked up in the vocabulary.
The model is called as ``model(token_indices, offsets=[0])`` (an ``EmbeddingBag`` model); the answer is
one dict ``{label: probability}`` over all classes. See `server.handlers.text_handler` for the limits.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from server.handlers.text_handler import TextHandler
from server.handlers.text_utils import ngrams_iterator
from server.handlers.util import PredictionException, map_class_to_label

logger = logging.getLogger(__name__)


class TextClassifier(TextHandler):
    """Classifies one text per batch."""

    ngrams = 2

    def preprocess(self, data: list[dict[str, Any]]) -> tuple[torch.Tensor, list[str]]:
        row = data[0]
        text = row.get("data") or row.get("body")
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise PredictionException("text_classifier expects a text input", 400)
        text = self._remove_html_tags(text)
        text = text.lower()
        text = self._expand_contractions(text)
        text = self._remove_accented_characters(text)
        text = self._remove_punctuation(text)
        tokens = self._tokenize(text)
        assert self.source_vocab is not None, "initialize() loads the vocabulary"
        indices = [self.source_vocab[token] for token in ngrams_iterator(tokens, self.ngrams)]
        return torch.as_tensor(indices, dtype=torch.long, device=self.device), tokens

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        text_tensor, _ = data
        offsets = torch.as_tensor([0], device=self.device)
        return super().inference(text_tensor, offsets)

    def postprocess(self, data: torch.Tensor) -> list[dict[str, Any]]:
        probs = F.softmax(data, dim=-1)
        if probs.dim() == 1:
            probs = probs.unsqueeze(0)
        return map_class_to_label(probs.tolist(), self.mapping)

    def get_insights(self, text_preprocess: Any, raw_input: Any, target: Any = 0) -> Any:
        if self.lig is None:
            raise PredictionException("Explanations need the captum package, which is not installed", 503)
        from captum.attr import TokenReferenceBase

        text_tensor, all_tokens = text_preprocess
        offsets = torch.tensor([0], device=self.device)
        reference = TokenReferenceBase().generate_reference(text_tensor.shape[0], device=self.device).squeeze(0)
        attributions = self.lig.attribute(
            text_tensor,
            reference,
            additional_forward_args=(offsets),
            return_convergence_delta=False,
            target=target,
        )
        summary = self.summarize_attributions(attributions)
        return [{"importances": summary.tolist(), "words": self.get_word_token(all_tokens)}]
