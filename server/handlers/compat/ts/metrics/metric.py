"""``ts.metrics.metric``: re-exports `server.handlers.metrics`."""

from server.handlers.metrics import (
    Metric,
)

__all__ = ["Metric"]
