"""``ts.context``: re-exports `server.handlers.context`."""

from server.handlers.context import Context, RequestProcessor

__all__ = ["Context", "RequestProcessor"]
