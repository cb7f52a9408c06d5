"""TorchServe's metrics (spec §3): the frontend's and the models' metrics, as Prometheus families or log lines.

One `ServerMetrics` per server, built from the settings:

* ``metrics_mode`` (spec §3.2): ``log`` (default; also any unknown value) writes every frontend metric as a
  line on the ``TS_METRICS`` logger (``ts_metrics.log``) and every backend metric on ``MODEL_METRICS``
  (``model_metrics.log``), in TorchServe's line formats (spec §9), and /metrics is empty; ``prometheus``
  keeps them all in this object's private `CollectorRegistry`; ``legacy`` keeps only the three ``ts_*``
  counters in Prometheus and logs the rest.
* ``metrics_config``: a TorchServe ``metrics.yaml`` (``ts_metrics`` / ``model_metrics``, each with
  ``counter`` / ``gauge`` / ``histogram`` lists of ``{name, unit, dimensions}``); without one, the built-in
  set equal to TorchServe's ``ts/configs/metrics.yaml``. A ``Hostname`` dimension is appended to every model
  metric. A file that cannot be read or is invalid is logged, and then no metric is declared (as TorchServe).
* ``model_metrics_auto_detect=true``: a backend metric not declared is registered when first seen (its
  dimensions as printed, plus ``Hostname``); otherwise such lines are ignored.
* ``disable_system_metrics`` / ``metric_time_interval`` (s, default 60): `run_system_collector`.

The frontend reports through cheap, non-blocking calls: `http_response`, `inference_request`, `inference`,
`queue_time`, `worker_thread_time`, `worker_loaded`, and `backend_line` for each ``[METRICS]`` line a
worker prints. A metric that is not declared is silently not recorded, as in TorchServe.

`render` writes the registry in the Prometheus text format 0.0.4 as TorchServe's Java ``simpleclient``
0.9.0 does: family names exactly as declared (a counter is never given a ``_total`` suffix and has no
``_created`` series), labels in declaration order with the trailing comma, values as Java doubles
(``1.0``, ``1.2345678E7``), histograms with the client's default buckets. prometheus-client's own
``generate_latest`` cannot do this (it appends ``_total`` to every counter family and sorts labels), so the
families are collected from the registry and written by `exposition_004`.

tsconsole's addition (``prometheus`` mode only; not in ``log`` or ``legacy`` mode): one family TorchServe does
not have, `LATENCY_HISTOGRAM` ``tsconsole_inference_latency_seconds``, a histogram of the end-to-end latency
of each answered prediction in seconds, with the labels and label values of ``ts_inference_requests_total``
(``model_name``, ``model_version`` as in the URL or ``default``, ``hostname``) and buckets suited to inference
(`LATENCY_BUCKETS`, +Inf added). TorchServe only exports the latency *sum*; from this family a client can
compute percentiles (the console shows p50/p99 per model version). It is written in the same format
(``_bucket{...,le="0.005",}``, ``_count``, ``_sum``), after TorchServe's families, can be selected with
``name[]=`` (its name or its ``_bucket`` / ``_count`` / ``_sum`` names), and appears only once a prediction
was answered, so an idle server's page is TorchServe's exactly. It is not in `ServerMetrics.prometheus_names`
(TorchServe's families). TorchServe's own clients ignore a family they do not know. A ``metrics.yaml`` that
declares a metric of that name keeps it (a warning is logged, and tsconsole's family is not added).

A second addition, in every mode: `CANCELLED_COUNTER` ``tsconsole_cancelled_requests`` (labels ``model_name``,
``model_version``, ``stage``, ``hostname``) counts inference requests whose client went away: ``stage`` is
``queued`` when the request left the queue before reaching a worker, ``in_flight`` when a worker had it and its
answer was dropped. In ``log`` mode each one is a ``ts_metrics.log`` line.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from server.telemetry.logs import MODEL_METRICS, TS_METRICS, emit_line
from server.telemetry.system import PsutilNvmlSource, SystemStats, SystemStatsSource

if TYPE_CHECKING:
    from server.config import Settings

__all__ = [
    "CONTENT_TYPE_004",
    "DEFAULT_METRICS_YAML",
    "LATENCY_BUCKETS",
    "LATENCY_HISTOGRAM",
    "BackendMetric",
    "MetricMode",
    "MetricSpec",
    "MetricsConfig",
    "MetricsConfigError",
    "ServerMetrics",
    "exposition_004",
    "is_metrics_line",
    "java_double",
    "parse_metric_line",
]

log = logging.getLogger(__name__)

CONTENT_TYPE_004 = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_INTERVAL_S = 60.0
LEGACY_METRICS = frozenset(
    {"ts_inference_requests_total", "ts_inference_latency_microseconds", "ts_queue_latency_microseconds"}
)
HISTOGRAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""simpleclient's default histogram buckets (+Inf is added)."""
LATENCY_HISTOGRAM = "tsconsole_inference_latency_seconds"
"""tsconsole's own family: each answered prediction's latency, in seconds (see the module docstring)."""
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""`LATENCY_HISTOGRAM`'s bucket upper bounds in seconds (+Inf is added): 1 ms to a minute."""
LATENCY_HELP = "tsconsole addition, not a TorchServe metric: latency of each answered inference request in seconds"
CANCELLED_COUNTER = "tsconsole_cancelled_requests"
CANCELLED_HELP = (
    "tsconsole addition, not a TorchServe metric: inference requests whose client went away (disconnected, "
    "cancelled, or past its deadline); stage is queued (it never reached a worker) or in_flight (answer dropped)"
)
KINDS = ("counter", "gauge", "histogram")

DEFAULT_METRICS_YAML = """\
dimensions:
  - &model_name "ModelName"
  - &worker_name "WorkerName"
  - &level "Level"
  - &device_id "DeviceId"
  - &hostname "Hostname"

ts_metrics:
  counter:
    - name: Requests2XX
      unit: Count
      dimensions: [*level, *hostname]
    - name: Requests4XX
      unit: Count
      dimensions: [*level, *hostname]
    - name: Requests5XX
      unit: Count
      dimensions: [*level, *hostname]
    - name: ts_inference_requests_total
      unit: Count
      dimensions: ["model_name", "model_version", "hostname"]
    - name: ts_inference_latency_microseconds
      unit: Microseconds
      dimensions: ["model_name", "model_version", "hostname"]
    - name: ts_queue_latency_microseconds
      unit: Microseconds
      dimensions: ["model_name", "model_version", "hostname"]

  gauge:
    - name: QueueTime
      unit: Milliseconds
      dimensions: [*level, *hostname]
    - name: WorkerThreadTime
      unit: Milliseconds
      dimensions: [*level, *hostname]
    - name: WorkerLoadTime
      unit: Milliseconds
      dimensions: [*worker_name, *level, *hostname]
    - name: CPUUtilization
      unit: Percent
      dimensions: [*level, *hostname]
    - name: MemoryUsed
      unit: Megabytes
      dimensions: [*level, *hostname]
    - name: MemoryAvailable
      unit: Megabytes
      dimensions: [*level, *hostname]
    - name: MemoryUtilization
      unit: Percent
      dimensions: [*level, *hostname]
    - name: DiskUsage
      unit: Gigabytes
      dimensions: [*level, *hostname]
    - name: DiskUtilization
      unit: Percent
      dimensions: [*level, *hostname]
    - name: DiskAvailable
      unit: Gigabytes
      dimensions: [*level, *hostname]
    - name: GPUMemoryUtilization
      unit: Percent
      dimensions: [*level, *device_id, *hostname]
    - name: GPUMemoryUsed
      unit: Megabytes
      dimensions: [*level, *device_id, *hostname]
    - name: GPUUtilization
      unit: Percent
      dimensions: [*level, *device_id, *hostname]

model_metrics:
  # Dimension "Hostname" is automatically added for model metrics in the backend
  gauge:
    - name: HandlerTime
      unit: ms
      dimensions: [*model_name, *level]
    - name: PredictionTime
      unit: ms
      dimensions: [*model_name, *level]
"""
"""TorchServe 0.12.0's ``ts/configs/metrics.yaml``, the set used when ``metrics_config`` is not given."""


# -- number formatting -----------------------------------------------------------------------------------


def java_double(value: float) -> str:
    """Java's ``Double.toString``: ``1.0``, ``82.93``, ``1.2345678E7``, ``1.0E-4``, ``NaN``, ``Infinity``."""
    v = float(value)
    if 1e-3 <= v < 1e7:  # the usual case first (False for NaN): see below
        return repr(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0:
        return "-0.0" if math.copysign(1.0, v) < 0 else "0.0"
    sign = "-" if v < 0 else ""
    a = abs(v)
    if 1e-3 <= a < 1e7:  # Python's shortest repr is plain decimal here, with ".0" on whole numbers: Java's form
        return sign + repr(a)
    shortest = Decimal(repr(a)).normalize()
    digits = "".join(map(str, shortest.as_tuple().digits))
    exponent = len(digits) - 1 + int(shortest.as_tuple().exponent)
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exponent}"


def _go_double(value: float) -> str:
    """simpleclient's ``doubleToGoString``: ``+Inf``, ``-Inf``, ``NaN``, else a Java double."""
    v = float(value)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return java_double(v)


# -- the metrics configuration ---------------------------------------------------------------------------


class MetricsConfigError(Exception):
    """The metrics.yaml cannot be used."""


@dataclass(frozen=True)
class MetricSpec:
    """One declared metric: its name, unit, dimension (label) names in order, and kind."""

    name: str
    unit: str
    dimensions: tuple[str, ...]
    kind: str  # "counter", "gauge" or "histogram"


@dataclass(frozen=True)
class MetricsConfig:
    """The declared frontend (``ts_metrics``) and backend (``model_metrics``, ``Hostname`` appended) metrics."""

    ts_metrics: tuple[MetricSpec, ...] = ()
    model_metrics: tuple[MetricSpec, ...] = ()

    @classmethod
    def parse(cls, data: Any, source: str = "metrics.yaml") -> MetricsConfig:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise MetricsConfigError(f"{source}: the metrics configuration must be a YAML mapping")
        return cls(
            ts_metrics=cls._section(data.get("ts_metrics"), source, "ts_metrics", ()),
            model_metrics=cls._section(data.get("model_metrics"), source, "model_metrics", ("Hostname",)),
        )

    @classmethod
    def load(cls, path: str | Path) -> MetricsConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise MetricsConfigError(f"{path}: {exc}") from None
        return cls.parse(data, str(path))

    @classmethod
    def default(cls) -> MetricsConfig:
        return cls.parse(yaml.safe_load(DEFAULT_METRICS_YAML), "the built-in metrics.yaml")

    @staticmethod
    def _section(section: Any, source: str, key: str, extra: tuple[str, ...]) -> tuple[MetricSpec, ...]:
        if section is None:
            return ()
        if not isinstance(section, dict):
            raise MetricsConfigError(f"{source}: {key} must be a mapping of counter/gauge/histogram lists")
        specs: list[MetricSpec] = []
        for kind in KINDS:
            entries = section.get(kind) or []
            if not isinstance(entries, list):
                raise MetricsConfigError(f"{source}: {key}.{kind} must be a list")
            for entry in entries:
                if not isinstance(entry, dict):
                    raise MetricsConfigError(f"{source}: {key}.{kind}: {entry!r} is not a mapping")
                name, unit, dims = entry.get("name"), entry.get("unit"), entry.get("dimensions") or []
                if not name or not isinstance(name, str):
                    raise MetricsConfigError(f"{source}: Metric name cannot be empty. {entry}")
                if unit is None or str(unit) == "":
                    raise MetricsConfigError(f"{source}: Metric unit cannot be empty. {entry}")
                if not isinstance(dims, list):
                    raise MetricsConfigError(f"{source}: {key}.{kind} {name}: dimensions must be a list")
                specs.append(MetricSpec(name, str(unit), tuple(str(d) for d in dims) + extra, kind))
        return tuple(specs)


class MetricMode(enum.Enum):
    LOG = "log"
    PROMETHEUS = "prometheus"
    LEGACY = "legacy"

    @classmethod
    def parse(cls, value: str | None) -> MetricMode:
        """Case and white space do not matter; anything unknown is ``log`` (with an error logged)."""
        text = re.sub(r"\s", "", value or "log").lower()
        try:
            return cls(text)
        except ValueError:
            log.error('Configured metrics mode "%s" not supported. Defaulting to "LOG" mode', value)
            return cls.LOG


# -- backend metric lines ----------------------------------------------------------------------------------

_METRICS_PREFIX = re.compile(r"(?:INFO > )?\[METRICS\]")
_METRIC_LINE = re.compile(
    r"\s*([\w\s]+)\.([\w\s]+):([0-9\-+,.eE]+)\|#([^|]*)(\|#type:([^|,]+))?\|#hostname:([^,]+),([^,]+)(,(.*))?",
    re.ASCII,
)


@dataclass(frozen=True)
class BackendMetric:
    """A parsed worker metric line (values kept as printed)."""

    name: str
    unit: str
    value: str
    dimensions: tuple[tuple[str, str], ...]
    kind: str | None  # "counter" / "gauge" / "histogram" from ``#type:``; None for the untyped variant
    hostname: str
    timestamp: str
    request_id: str | None


def is_metrics_line(line: str) -> bool:
    """A worker output line that carries a metric (``[METRICS]...`` or ``INFO > [METRICS]...``)."""
    return _METRICS_PREFIX.match(line) is not None


def parse_metric_line(line: str) -> BackendMetric | None:
    """Parse ``[METRICS]Name.Unit:value|#Dim:val,...|#type:GAUGE|#hostname:h,<epoch>[,<request ids>]``.

    The ``[METRICS]`` prefix (optionally after ``INFO > ``) and the ``|#type:`` part may be absent (the older
    ``ts.metrics.metric.Metric`` prints none). Dimensions that are not exactly ``name:value`` are dropped,
    as TorchServe does. None when the line is not a metric.
    """
    prefix = _METRICS_PREFIX.match(line)
    body = line[prefix.end() :] if prefix else line
    match = _METRIC_LINE.fullmatch(body.rstrip("\r\n"))
    if match is None:
        return None
    dims: list[tuple[str, str]] = []
    for item in match.group(4).split(","):
        pair = item.split(":")
        if len(pair) == 2:
            dims.append((pair[0], pair[1]))
    kind = match.group(6)
    return BackendMetric(
        name=match.group(1),
        unit=match.group(2),
        value=match.group(3),
        dimensions=tuple(dims),
        kind=kind.strip().lower() if kind else None,
        hostname=match.group(7),
        timestamp=match.group(8),
        request_id=match.group(10),
    )


# -- sinks: where one declared metric goes --------------------------------------------------------------


class _Sink(Protocol):
    def frontend(self, values: Sequence[str], value: float) -> None: ...

    def backend(self, values: Sequence[str], request_id: str | None, value: float) -> None: ...


class _Family:
    """One Prometheus family: the value of each child (label values → value), thread-safe.

    A histogram counts into ``buckets`` (upper bounds, ascending; +Inf is added).
    """

    def __init__(
        self, spec: MetricSpec, *, buckets: Sequence[float] = HISTOGRAM_BUCKETS, help: str | None = None
    ) -> None:
        self.spec = spec
        self.help = help if help is not None else f"Torchserve prometheus {spec.kind} metric with unit: {spec.unit}"
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], float] = {}
        self._histograms: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., count, sum

    def frontend(self, values: Sequence[str], value: float) -> None:
        key = tuple(values)
        if len(key) != len(self.spec.dimensions):
            raise ValueError(f"Incorrect number of labels: {list(key)} for {list(self.spec.dimensions)}")
        with self._lock:
            if self.spec.kind == "counter":
                if value < 0:
                    raise ValueError("Amount to increment must be non-negative.")
                self._values[key] = self._values.get(key, 0.0) + value
            elif self.spec.kind == "gauge":
                self._values[key] = value
            else:
                state = self._histograms.setdefault(key, [0.0] * (len(self.buckets) + 2))
                for i, bound in enumerate(self.buckets):
                    if value <= bound:
                        state[i] += 1
                state[-2] += 1
                state[-1] += value

    def backend(self, values: Sequence[str], request_id: str | None, value: float) -> None:
        self.frontend(values, value)

    def has_samples(self) -> bool:
        with self._lock:
            return bool(self._values or self._histograms)

    def collect(self) -> Metric:
        spec = self.spec
        family = Metric(spec.name, self.help, spec.kind)
        with self._lock:
            values = list(self._values.items())
            histograms = [(key, list(state)) for key, state in self._histograms.items()]
        for key, value in values:
            family.add_sample(spec.name, dict(zip(spec.dimensions, key, strict=True)), value)
        for key, state in histograms:
            labels = dict(zip(spec.dimensions, key, strict=True))
            for bound, count in zip(self.buckets, state, strict=False):
                family.add_sample(f"{spec.name}_bucket", {**labels, "le": _go_double(bound)}, count)
            family.add_sample(f"{spec.name}_bucket", {**labels, "le": "+Inf"}, state[-2])
            family.add_sample(f"{spec.name}_count", labels, state[-2])
            family.add_sample(f"{spec.name}_sum", labels, state[-1])
        return family


class _LogSink:
    """TorchServe's ``LogMetric``: one line per update; the last dimension value is the host name.

    A line is ``<name>.<unit>:<value>|#<dims>|#hostname:<host>,[requestID:<id>,]timestamp:<epoch s>``; the part
    after the value depends on the dimension values only, so it is rendered once per set of values (a few per
    model) and kept."""

    MAX_CACHED = 4096  # distinct sets of dimension values kept rendered (beyond that: rendered per line)

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self._head = f"{spec.name}.{spec.unit}:"
        self._tails: dict[tuple[str, ...], str] = {}

    def _tail(self, values: Sequence[str]) -> str:
        key = tuple(values)
        tail = self._tails.get(key)
        if tail is None:
            names = self.spec.dimensions
            count = min(len(names) - 1, len(values) - 1)
            dims = ",".join(f"{names[i]}:{values[i]}" for i in range(count))
            tail = f"|#{dims}|#hostname:{values[-1] if values else ''},"
            if len(self._tails) < self.MAX_CACHED:
                self._tails[key] = tail
        return tail

    def frontend(self, values: Sequence[str], value: float) -> None:
        emit_line(TS_METRICS, f"{self._head}{java_double(value)}{self._tail(values)}timestamp:{int(time.time())}")

    def backend(self, values: Sequence[str], request_id: str | None, value: float) -> None:
        rid = request_id if request_id is not None else "null"  # Java's string of a missing id
        line = f"{self._head}{java_double(value)}{self._tail(values)}requestID:{rid},timestamp:{int(time.time())}"
        emit_line(MODEL_METRICS, line)


class _RegistryCollector(Collector):
    """Yields the Prometheus families of one `ServerMetrics`, in registration order."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()

    def add(self, family: _Family) -> bool:
        with self._lock:
            if family.spec.name in self._families:
                return False
            self._families[family.spec.name] = family
            return True

    def names(self) -> list[str]:
        with self._lock:
            return list(self._families)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = list(self._families.values())
        for family in families:
            yield family.collect()


class _AddedCollector(Collector):
    """tsconsole's own families (`LATENCY_HISTOGRAM`), after TorchServe's, each once it has a sample."""

    def __init__(self) -> None:
        self.families: list[_Family] = []

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            if family.has_samples():
                yield family.collect()


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _family_names(family: Metric) -> set[str]:
    """The names ``name[]=`` may use to select a family (simpleclient's collector names)."""
    if family.type == "histogram":
        return {family.name, f"{family.name}_bucket", f"{family.name}_count", f"{family.name}_sum"}
    return {family.name}


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition_004(families: Iterable[Metric], names: Sequence[str] | None = None) -> bytes:
    """Prometheus text 0.0.4 as simpleclient 0.9.0's ``TextFormat.write004`` writes it.

    ``names`` (``?name[]=``) keeps only the families selected by one of them (all when empty).
    """
    wanted = set(names or ())
    out: list[str] = []
    for family in families:
        if wanted and not (wanted & _family_names(family)):
            continue
        kind = "untyped" if family.type == "unknown" else family.type
        out.append(f"# HELP {family.name} {_escape_help(family.documentation)}\n")
        out.append(f"# TYPE {family.name} {kind}\n")
        for sample in family.samples:
            labels = "".join(f'{key}="{_escape_label(str(value))}",' for key, value in sample.labels.items())
            out.append(f"{sample.name}{{{labels}}}" if labels else sample.name)
            out.append(f" {_go_double(sample.value)}\n")
    return "".join(out).encode("utf-8")


# -- the server's metrics ----------------------------------------------------------------------------------


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


class ServerMetrics:
    """TorchServe's metrics for one server (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        hostname: str | None = None,
        stats_source: SystemStatsSource | None = None,
    ) -> None:
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.mode = MetricMode.parse(settings.get("metrics_mode", "log"))
        self.auto_detect = _bool(settings.get("model_metrics_auto_detect"))
        self.system_metrics_disabled = _bool(settings.get("disable_system_metrics"))
        self.interval_s = self._interval(settings.get("metric_time_interval"))
        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = _RegistryCollector()
        self.registry.register(self._collector)
        self._added = _AddedCollector()
        self.registry.register(self._added)
        self._latency: _Family | None = None  # tsconsole's LATENCY_HISTOGRAM (prometheus mode)
        self._cancelled: _Sink | None = None  # tsconsole's CANCELLED_COUNTER
        self._frontend: dict[str, _Sink] = {}
        self._backend: dict[str, _Sink] = {}
        self._rejected: set[str] = set()  # auto-detected names that could not be registered (logged once)
        self._host_dims = ("Host", self.hostname)
        self._gpu_count = int(getattr(settings, "number_of_gpu", 0) or 0)
        self._owns_source = stats_source is None
        self._stats_source = stats_source
        if stats_source is None and not self.system_metrics_disabled:
            self._stats_source = PsutilNvmlSource(gpus=self._gpu_count > 0)
        if settings.get("system_metrics_cmd"):
            log.warning("system_metrics_cmd is not supported; the built-in system metrics collector is used")

        path = settings.get("metrics_config")
        try:
            self.config = MetricsConfig.load(path) if path else MetricsConfig.default()
        except MetricsConfigError as exc:
            log.error("Failed to load metrics configuration: %s", exc)
            self.config = MetricsConfig()
        else:
            if path:
                log.info("Successfully loaded metrics configuration from %s", path)
        for spec in self.config.ts_metrics:
            self._add(self._frontend, spec)
        for spec in self.config.model_metrics:
            self._add(self._backend, spec)
        self._add_latency_histogram()
        self._add_cancelled_counter()

    @staticmethod
    def _interval(value: str | None) -> float:
        if value is None or not value.strip():
            return DEFAULT_INTERVAL_S
        try:
            interval = float(value)
        except ValueError:
            interval = 0
        if interval <= 0:
            log.warning("metric_time_interval %r is not a positive number of seconds; using 60", value)
            return DEFAULT_INTERVAL_S
        return interval

    def _add_latency_histogram(self) -> None:
        """tsconsole's `LATENCY_HISTOGRAM`, in prometheus mode only (see the module docstring)."""
        if self.mode is not MetricMode.PROMETHEUS:
            return
        if LATENCY_HISTOGRAM in self._collector.names():
            log.warning("The metrics configuration declares %s: tsconsole's own family is not added", LATENCY_HISTOGRAM)
            return
        spec = MetricSpec(LATENCY_HISTOGRAM, "Seconds", ("model_name", "model_version", "hostname"), "histogram")
        family = _Family(spec, buckets=LATENCY_BUCKETS, help=LATENCY_HELP)
        self._added.families.append(family)
        self._latency = family

    def _add_cancelled_counter(self) -> None:
        """tsconsole's `CANCELLED_COUNTER`: a Prometheus family, or ``ts_metrics.log`` lines in log mode."""
        spec = MetricSpec(CANCELLED_COUNTER, "Count", ("model_name", "model_version", "stage", "hostname"), "counter")
        if self.mode is not MetricMode.PROMETHEUS:
            self._cancelled = _LogSink(spec)
            return
        if CANCELLED_COUNTER in self._collector.names():
            log.warning("The metrics configuration declares %s: tsconsole's own family is not added", CANCELLED_COUNTER)
            return
        family = _Family(spec, help=CANCELLED_HELP)
        self._added.families.append(family)
        self._cancelled = family

    def _add(self, sinks: dict[str, _Sink], spec: MetricSpec) -> _Sink | None:
        """Build a declared (or auto-detected) metric as TorchServe's ``MetricBuilder`` does."""
        if self.mode is MetricMode.LOG or (self.mode is MetricMode.LEGACY and spec.name not in LEGACY_METRICS):
            sink: _Sink = _LogSink(spec)
        else:
            if self.mode is MetricMode.LEGACY:
                spec = MetricSpec(spec.name, spec.unit, spec.dimensions, "counter")
            reserved = {"le"} if spec.kind == "histogram" else set()
            bad = [n for n in spec.dimensions if not _LABEL_NAME.fullmatch(n) or n.startswith("__") or n in reserved]
            if not _METRIC_NAME.fullmatch(spec.name) or bad:
                log.error("Cannot register the Prometheus metric %s with labels %s", spec.name, list(spec.dimensions))
                return None
            family = _Family(spec)
            if self._latency is not None and spec.name == LATENCY_HISTOGRAM:  # an auto-detected worker metric
                log.error("Cannot register the Prometheus metric %s: the name is already registered", spec.name)
                return None
            if not self._collector.add(family):
                log.error("Cannot register the Prometheus metric %s: the name is already registered", spec.name)
                return None
            sink = family
        sinks[spec.name] = sink
        return sink

    # -- frontend metrics ------------------------------------------------------------------------------

    def _front(self, name: str, values: Sequence[str], value: float) -> None:
        sink = self._frontend.get(name)
        if sink is None:
            return
        try:
            sink.frontend(values, value)
        except Exception as exc:
            log.error("Failed to update frontend metric %s: %s", name, exc)

    def http_response(self, status: int) -> None:
        """One HTTP response written: ``Requests2XX`` (200-299), ``Requests4XX`` (400-499), else ``Requests5XX``."""
        if 200 <= status < 300:
            name = "Requests2XX"
        elif 400 <= status < 500:
            name = "Requests4XX"
        else:
            name = "Requests5XX"
        self._front(name, self._host_dims, 1.0)

    def inference_request(self, model: str, version_label: str) -> None:
        """A prediction request was accepted for ``model`` (``ts_inference_requests_total``)."""
        self._front("ts_inference_requests_total", (model, version_label, self.hostname), 1.0)

    def inference(self, model: str, version_label: str, latency_us: float, queue_us: float) -> None:
        """A prediction was answered: its end-to-end and queue latencies, accumulated (microseconds).

        In prometheus mode the latency is also observed, in seconds, by tsconsole's `LATENCY_HISTOGRAM`.
        """
        values = (model, version_label, self.hostname)
        self._front("ts_inference_latency_microseconds", values, latency_us)
        self._front("ts_queue_latency_microseconds", values, queue_us)
        if self._latency is not None:
            try:
                self._latency.frontend(values, latency_us / 1_000_000)
            except Exception as exc:
                log.error("Failed to update frontend metric %s: %s", LATENCY_HISTOGRAM, exc)

    def cancelled(self, model: str, version_label: str, *, queued: bool) -> None:
        """A request's client went away: while it was queued (it never reached a worker) or in flight."""
        if self._cancelled is None:
            return
        stage = "queued" if queued else "in_flight"
        try:
            self._cancelled.frontend((model, version_label, stage, self.hostname), 1.0)
        except Exception as exc:
            log.error("Failed to update frontend metric %s: %s", CANCELLED_COUNTER, exc)

    def queue_time(self, ms: float) -> None:
        """``QueueTime``: how long one job waited in its model's queue."""
        self._front("QueueTime", self._host_dims, ms)

    def worker_thread_time(self, ms: float) -> None:
        """``WorkerThreadTime``: frontend time of one batch, the time waiting for the worker excluded."""
        self._front("WorkerThreadTime", self._host_dims, ms)

    def worker_loaded(self, worker_name: str, ms: float) -> None:
        """``WorkerLoadTime`` of ``worker_name`` (``W-9000-resnet18_1.0``)."""
        self._front("WorkerLoadTime", (worker_name, *self._host_dims), ms)

    # -- backend metrics -------------------------------------------------------------------------------

    def backend_line(self, line: str) -> bool:
        """Record one ``[METRICS]`` line of a worker; False (and an error logged) when it does not parse."""
        parsed = parse_metric_line(line)
        if parsed is None:
            log.error('Failed to parse metrics line: "%s".', line)
            return False
        sink = self._backend.get(parsed.name)
        if sink is None:
            if not self.auto_detect or parsed.name in self._rejected:
                return True
            log.info("Registering auto detected backend metric: %s", parsed.name)
            dims = (*(name for name, _ in parsed.dimensions), "Hostname")
            spec = MetricSpec(parsed.name, parsed.unit, dims, parsed.kind if parsed.kind in KINDS else "gauge")
            sink = self._add(self._backend, spec)
            if sink is None:
                self._rejected.add(parsed.name)
                return True
        values = [value for _, value in parsed.dimensions]
        values.append(parsed.hostname)
        try:
            sink.backend(values, parsed.request_id, float(parsed.value))
        except Exception as exc:
            log.error("Failed to update backend metric %s: %s", parsed.name, exc)
        return True

    # -- system metrics --------------------------------------------------------------------------------

    def system_stats(self, stats: SystemStats) -> None:
        """Record one host sample (TorchServe's collector order: CPU, disk, GPU, memory)."""
        host = self._host_dims
        for name, value in (
            ("CPUUtilization", stats.cpu_percent),
            ("DiskAvailable", stats.disk_available_gb),
            ("DiskUsage", stats.disk_used_gb),
            ("DiskUtilization", stats.disk_percent),
        ):
            if value is not None:
                self._front(name, host, value)
        for gpu in stats.gpus:
            dims = ("Host", str(gpu.index), self.hostname)
            for name, value in (
                ("GPUMemoryUtilization", gpu.memory_percent),
                ("GPUMemoryUsed", gpu.memory_used_mb),
            ):
                if value is not None:
                    self._front(name, dims, value)
        for gpu in stats.gpus:
            if gpu.utilization_percent is not None:
                self._front("GPUUtilization", ("Host", str(gpu.index), self.hostname), gpu.utilization_percent)
        for name, value in (
            ("MemoryAvailable", stats.memory_available_mb),
            ("MemoryUsed", stats.memory_used_mb),
            ("MemoryUtilization", stats.memory_percent),
        ):
            if value is not None:
                self._front(name, host, value)

    async def run_system_collector(self, interval_s: float | None = None) -> None:
        """Sample the host now and then every ``interval_s`` (default ``metric_time_interval``) until cancelled.

        Returns at once when ``disable_system_metrics=true``. Sampling runs in a thread; a failing sample is
        logged and skipped.
        """
        source = self._stats_source
        if self.system_metrics_disabled or source is None:
            return
        interval = self.interval_s if interval_s is None else interval_s
        while True:
            try:
                stats = await asyncio.to_thread(source.sample)
            except Exception:
                log.exception("System metrics collection failed")
            else:
                self.system_stats(stats)
            await asyncio.sleep(interval)

    def close(self) -> None:
        """Release the stats source this object created (NVML)."""
        if self._owns_source and self._stats_source is not None:
            self._stats_source.close()

    # -- exposition ------------------------------------------------------------------------------------

    @property
    def prometheus_names(self) -> list[str]:
        """TorchServe's families /metrics shows, in order (tsconsole's `LATENCY_HISTOGRAM` comes after them)."""
        return self._collector.names()

    def render(self, names: Sequence[str] | None = None) -> bytes:
        """The registry as Prometheus text 0.0.4 (`CONTENT_TYPE_004`); ``names`` filters families."""
        return exposition_004(self.registry.collect(), names)
