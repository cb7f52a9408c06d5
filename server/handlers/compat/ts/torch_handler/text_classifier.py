"""``ts.torch_handler.text_classifier``: re-exports `server.handlers.text_classifier`."""

from server.handlers.text_classifier import (
    TextClassifier,
)

__all__ = ["TextClassifier"]
