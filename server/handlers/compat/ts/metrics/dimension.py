"""``ts.metrics.dimension``: re-exports `server.handlers.metrics`."""

from server.handlers.metrics import (
    Dimension,
)

__all__ = ["Dimension"]
