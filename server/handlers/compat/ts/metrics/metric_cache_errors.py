"""``ts.metrics.metric_cache_errors``: re-exports `server.handlers.metrics`."""

from server.handlers.metrics import (
    GeneralMetricsCacheError,
    MetricsCacheKeyError,
    MetricsCacheTypeError,
    MetricsCacheValueError,
)

__all__ = ["GeneralMetricsCacheError", "MetricsCacheKeyError", "MetricsCacheTypeError", "MetricsCacheValueError"]
