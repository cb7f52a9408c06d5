"""``ts.handler_utils.text_utils``: re-exports `server.handlers.text_utils`."""

from server.handlers.text_utils import (
    get_tokenizer,
    ngrams_iterator,
)

__all__ = ["get_tokenizer", "ngrams_iterator"]
