"""``ts.torch_handler.image_classifier``: re-exports `server.handlers.image_classifier`."""

from server.handlers.image_classifier import (
    ImageClassifier,
)

__all__ = ["ImageClassifier"]
