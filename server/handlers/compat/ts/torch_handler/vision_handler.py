"""``ts.torch_handler.vision_handler``: re-exports `server.handlers.vision_handler`."""

from server.handlers.vision_handler import (
    VisionHandler,
)

__all__ = ["VisionHandler"]
