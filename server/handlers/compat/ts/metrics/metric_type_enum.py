"""``ts.metrics.metric_type_enum``: re-exports `server.handlers.metrics`."""

from server.handlers.metrics import (
    MetricTypes,
)

__all__ = ["MetricTypes"]
