"""``ts.torch_handler.image_segmenter``: re-exports `server.handlers.image_segmenter`."""

from server.handlers.image_segmenter import (
    ImageSegmenter,
)

__all__ = ["ImageSegmenter"]
