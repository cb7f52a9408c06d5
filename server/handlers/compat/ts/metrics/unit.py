"""``ts.metrics.unit``: re-exports `server.handlers.metrics`."""

from server.handlers.metrics import (
    Units,
)

__all__ = ["Units"]
