"""``ts.torch_handler.object_detector``: re-exports `server.handlers.object_detector`."""

from server.handlers.object_detector import (
    ObjectDetector,
)

__all__ = ["ObjectDetector"]
