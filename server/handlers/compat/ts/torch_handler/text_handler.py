"""``ts.torch_handler.text_handler``: re-exports `server.handlers.text_handler`."""

from server.handlers.text_handler import (
    CONTRACTIONS_PATTERN,
    TextHandler,
)

__all__ = ["CONTRACTIONS_PATTERN", "TextHandler"]
