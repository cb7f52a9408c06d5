"""``ts.torch_handler.base_handler``: re-exports `server.handlers.base_handler`."""

from server.handlers.base_handler import (
    BaseHandler,
)

__all__ = ["BaseHandler"]
