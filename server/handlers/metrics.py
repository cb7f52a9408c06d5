"""The worker's metrics cache (TorchServe's ``context.metrics``) and the small types handlers import.

Handlers record metrics with ``context.metrics.add_time(...)``, ``add_counter``, ``add_size``,
``add_percent``, ``add_metric`` or through a metric object from ``add_metric_to_cache``/``get_metric``.
Every accepted observation becomes a `MetricRecord` kept in `MetricsCache.records` (bounded); the worker
ships them with `MetricsCache.drain()`, e.g. as TorchServe ``[METRICS]`` log lines (`MetricRecord.log_line`).
"""

from __future__ import annotations

import enum
import logging
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

MAX_RECORDS = 10_000
"""Observations kept before the oldest are dropped (nobody drained them)."""

UNIT_NAMES: dict[str | None, str] = {
    "ms": "Milliseconds",
    "s": "Seconds",
    "percent": "Percent",
    "count": "Count",
    "MB": "Megabytes",
    "GB": "Gigabytes",
    "kB": "Kilobytes",
    "B": "Bytes",
    "": "unit",
    None: "unit",
}
"""Short unit names accepted by the add_* methods → the unit names TorchServe reports."""


class Units:
    """TorchServe's ``ts.metrics.unit.Units``: ``Units().units`` maps short names to reported names."""

    def __init__(self) -> None:
        self.units = dict(UNIT_NAMES)


class MetricTypes(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class Dimension:
    """One ``name:value`` dimension of a metric."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __str__(self) -> str:
        return f"{self.name}:{self.value}"

    def __repr__(self) -> str:
        return f"Dimension({self.name!r}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dimension) and (self.name, self.value) == (other.name, other.value)

    def __hash__(self) -> int:
        return hash((self.name, self.value))

    def to_dict(self) -> dict[str, str]:
        return {"Name": self.name, "Value": self.value}


class GeneralMetricsCacheError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(f"Generic error: {message}")


class MetricsCacheTypeError(TypeError):
    pass


class MetricsCacheValueError(ValueError):
    pass


class MetricsCacheKeyError(KeyError):
    pass


@dataclass(frozen=True)
class MetricRecord:
    """One accepted observation."""

    name: str
    unit: str  # the reported unit name, e.g. "Milliseconds"
    value: float
    dimensions: tuple[tuple[str, str], ...]
    metric_type: MetricTypes
    request_id: str | None
    timestamp: int  # seconds since the epoch

    def log_line(self, hostname: str | None = None) -> str:
        """The line a TorchServe worker logs for this observation (parsed by the frontend)."""
        dims = ",".join(f"{name}:{value}" for name, value in self.dimensions)
        host = hostname if hostname is not None else socket.gethostname()
        line = (
            f"[METRICS]{self.name}.{self.unit}:{self.value}|#{dims}|#type:{self.metric_type.name}"
            f"|#hostname:{host},{self.timestamp}"
        )
        return f"{line},{self.request_id}" if self.request_id else line


class CachingMetric:
    """A named metric with fixed dimension names; each update becomes a `MetricRecord` in its cache."""

    def __init__(
        self,
        metric_name: str,
        unit: str,
        dimension_names: list[str] | None = None,
        metric_type: MetricTypes = MetricTypes.COUNTER,
        cache: MetricsCache | None = None,
    ) -> None:
        self.metric_name = metric_name
        self.unit = UNIT_NAMES.get(unit, unit)
        self.dimension_names = list(dimension_names or [])
        self.metric_type = metric_type
        self._cache = cache

    def add_or_update(
        self, value: float, dimension_values: list[str] | None = None, request_id: str | None = ""
    ) -> None:
        values = list(dimension_values or [])
        if len(values) != len(self.dimension_names):
            logger.error(
                "[METRICS]Failed to update metric %s: dimension values %s do not match names %s",
                self.metric_name,
                values,
                self.dimension_names,
            )
            return
        if self.metric_type == MetricTypes.COUNTER and value < 0:
            logger.error("[METRICS]Failed to update metric %s: a counter cannot decrease", self.metric_name)
            return
        record = MetricRecord(
            name=self.metric_name,
            unit=self.unit,
            value=value,
            dimensions=tuple(zip(self.dimension_names, (str(v) for v in values), strict=True)),
            metric_type=self.metric_type,
            request_id=request_id or None,
            timestamp=int(time.time()),
        )
        if self._cache is not None:
            self._cache.records.append(record)

    def update(self, value: float, request_id: str | None = "", dimensions: list[Dimension] | None = None) -> None:
        """Older API: replaces the dimension names by those of ``dimensions``."""
        dims = list(dimensions or [])
        self.dimension_names = [d.name for d in dims]
        self.add_or_update(value, [d.value for d in dims], request_id)


class MetricsCache:
    """``context.metrics``: TorchServe's metrics cache API, recording into `records`."""

    def __init__(self, model_name: str | None = None, max_records: int = MAX_RECORDS) -> None:
        self.model_name = model_name
        self.request_ids: dict[int, str] | str | None = None
        self.cache: dict[MetricTypes, dict[str, CachingMetric]] = {}
        self.records: deque[MetricRecord] = deque(maxlen=max_records)

    # -- shipping ------------------------------------------------------------------------------------

    def drain(self) -> list[MetricRecord]:
        """Every record since the last drain, oldest first; the cache then holds none."""
        out = list(self.records)
        self.records.clear()
        return out

    # -- TorchServe API ------------------------------------------------------------------------------

    def set_request_ids(self, request_ids: dict[int, str] | str | None) -> None:
        self.request_ids = request_ids

    def _request_id(self, idx: int | None) -> str | None:
        ids = self.request_ids
        if isinstance(ids, dict):
            if idx is not None and idx in ids:
                return ids[idx]
            return ",".join(ids.values()) or None
        return ids

    def _dimensions(self, dimensions: Iterable[Dimension] | None, level: str = "Model") -> list[Dimension]:
        dims = list(dimensions or [])
        names = {d.name for d in dims}
        if level == "Model" and "ModelName" not in names:
            dims.append(Dimension("ModelName", str(self.model_name)))
        if "Level" not in names:
            dims.append(Dimension("Level", level))
        return dims

    def _record(
        self,
        name: str,
        value: float,
        unit: str,
        idx: int | None,
        dimensions: Iterable[Dimension] | None,
        metric_type: MetricTypes,
        level: str = "Model",
    ) -> None:
        dims = self._dimensions(dimensions, level)
        metric = self._get_or_add_metric(name, unit, dims, metric_type)
        request_id = self._request_id(idx) if level == "Model" else None
        metric.add_or_update(value, [d.value for d in dims], request_id)

    def _get_or_add_metric(
        self, name: str, unit: str, dims: list[Dimension], metric_type: MetricTypes
    ) -> CachingMetric:
        try:
            metric = self.get_metric(name, metric_type)
        except MetricsCacheKeyError:
            return self.add_metric_to_cache(name, unit, [d.name for d in dims], metric_type)
        if metric.dimension_names != [d.name for d in dims]:
            metric.dimension_names = [d.name for d in dims]
        return metric

    def add_metric(
        self,
        name: str,
        value: float,
        unit: str,
        idx: int | None = None,
        dimensions: list[Dimension] | None = None,
        metric_type: MetricTypes = MetricTypes.COUNTER,
    ) -> None:
        self._record(name, value, unit, idx, dimensions, metric_type)

    def add_counter(
        self, name: str, value: float, idx: int | None = None, dimensions: list[Dimension] | None = None
    ) -> None:
        self._record(name, value, "count", idx, dimensions, MetricTypes.COUNTER)

    def add_time(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        unit: str = "ms",
        dimensions: list[Dimension] | None = None,
        metric_type: MetricTypes = MetricTypes.GAUGE,
    ) -> None:
        if unit not in ("ms", "s"):
            raise MetricsCacheValueError("the unit for a timed metric should be one of ['ms', 's']")
        self._record(name, value, unit, idx, dimensions, metric_type)

    def add_size(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        unit: str = "MB",
        dimensions: list[Dimension] | None = None,
        metric_type: MetricTypes = MetricTypes.GAUGE,
    ) -> None:
        if unit not in ("MB", "kB", "GB", "B"):
            raise ValueError("The unit for size based metric is one of ['MB','kB', 'GB', 'B']")
        self._record(name, value, unit, idx, dimensions, metric_type)

    def add_percent(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        dimensions: list[Dimension] | None = None,
        metric_type: MetricTypes = MetricTypes.GAUGE,
    ) -> None:
        self._record(name, value, "percent", idx, dimensions, metric_type)

    def add_error(self, name: str, value: float, dimensions: list[Dimension] | None = None) -> None:
        self._record(name, value, "", None, dimensions, MetricTypes.COUNTER, level="Error")

    def add_metric_to_cache(
        self,
        metric_name: str,
        unit: str,
        dimension_names: list[str] | None = None,
        metric_type: MetricTypes = MetricTypes.COUNTER,
    ) -> CachingMetric:
        if not isinstance(metric_name, str):
            raise MetricsCacheTypeError("`metric_name` must be a str")
        if not isinstance(unit, str):
            raise MetricsCacheTypeError("`unit` must be a str")
        if not isinstance(metric_type, MetricTypes):
            raise MetricsCacheTypeError("`metric_type` must be a MetricTypes enum")
        if dimension_names is not None and not isinstance(dimension_names, list):
            raise MetricsCacheTypeError("`dimension_names` should be a list of dimension name strings")
        metric = CachingMetric(metric_name, unit, dimension_names, metric_type, cache=self)
        self.cache.setdefault(metric_type, {})[metric_name] = metric
        return metric

    def get_metric(self, metric_name: str, metric_type: MetricTypes = MetricTypes.COUNTER) -> CachingMetric:
        try:
            return self.cache[metric_type][metric_name]
        except KeyError:
            raise MetricsCacheKeyError(
                f"Metric of type '{metric_type}' and name '{metric_name}' doesn't exist"
            ) from None

    def cache_keys(self) -> list[str]:
        return [f"{mtype.value}:{name}" for mtype, metrics in self.cache.items() for name in metrics]


class Metric:
    """TorchServe's older ``ts.metrics.metric.Metric`` value object (kept for handlers that build one)."""

    def __init__(
        self,
        name: str,
        value: float,
        unit: str,
        dimensions: list[Dimension],
        request_id: str | None = None,
        metric_method: Any = None,
    ) -> None:
        self.name = name
        self.value = value
        self.unit = UNIT_NAMES.get(unit, unit)
        self.dimensions = list(dimensions)
        self.request_id = request_id
        self.metric_method = metric_method
        self.metric_type = MetricTypes.COUNTER

    def update(self, value: float) -> None:
        self.value = value

    def reset(self) -> None:
        self.value = 0

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.dimensions)
        line = f"{self.name}.{self.unit}:{self.value}|#{dims}|#hostname:{socket.gethostname()},{int(time.time())}"
        return f"{line},{self.request_id}" if self.request_id else line

    def to_dict(self) -> dict[str, Any]:
        return {
            "MetricName": self.name,
            "Value": self.value,
            "Unit": self.unit,
            "Dimensions": self.dimensions,
            "Timestamp": int(time.time()),
            "HostName": socket.gethostname(),
            "RequestId": self.request_id,
        }
