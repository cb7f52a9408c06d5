"""``ts.handler_utils.timer``: re-exports `server.handlers.timer`."""

from server.handlers.timer import (
    timed,
)

__all__ = ["timed"]
