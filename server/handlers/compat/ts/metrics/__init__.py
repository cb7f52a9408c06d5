"""``ts.metrics``: the metric types handlers import (see `server.handlers.metrics`)."""

from ts.metrics import caching_metric, dimension, metric, metric_cache_errors, metric_type_enum, unit

__all__ = ["caching_metric", "dimension", "metric", "metric_cache_errors", "metric_type_enum", "unit"]
