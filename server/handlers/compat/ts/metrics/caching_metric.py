"""``ts.metrics.caching_metric``: re-exports `server.handlers.metrics`."""

from server.handlers.metrics import (
    CachingMetric,
)

__all__ = ["CachingMetric"]
