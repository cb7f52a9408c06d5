"""What the console polls, and the loop that polls it. Imports nothing from Textual.

* `fetch_models` gathers every model version (describe), its default version and request rates.
* `RateTracker` turns the metrics API's counters into requests/s and average latency between two polls, and
  a tsconsole server's latency histogram into p50/p99 (`histogram_quantile` of the buckets' increase).
* `SystemSnapshot` is ``/console/system`` parsed (a plain TorchServe has none: ``supported`` is False), with
  the server's `Listeners` when it reports them.
* `Poller` runs one fetch every ``interval`` seconds, never two at once (it reschedules after each
  completion), and can be paused or poked ("refresh now"). The app runs each poller in a named worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tsconsole.client import ApiError, Client, Listeners

T = TypeVar("T")

Samples = Mapping[str, list[tuple[dict[str, str], float]]]

REQUESTS = "ts_inference_requests"
LATENCY = "ts_inference_latency_microseconds"
LATENCY_HISTOGRAM = "tsconsole_inference_latency_seconds"
"""A tsconsole server's own histogram (metrics_mode=prometheus): TorchServe has none."""
LATENCY_BUCKET = f"{LATENCY_HISTOGRAM}_bucket"


# ---- models ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, as the dashboard and the models screen show it."""

    name: str
    version: str
    is_default: bool
    min_workers: int
    max_workers: int
    batch_size: int
    max_batch_delay: int
    workers_ready: int
    workers_total: int
    queue: int
    url: str = ""
    describe: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    requests_per_s: float | None = None  # None: no metrics (not in prometheus mode)
    latency_ms: float | None = None  # average over the last poll interval; None: no request in it
    p50_ms: float | None = None  # percentiles over the last poll interval (tsconsole's latency histogram);
    p99_ms: float | None = None  # None: no request answered in it, or the server has no such histogram

    @property
    def key(self) -> str:
        return row_key(self.name, self.version)

    @property
    def status(self) -> str:
        if self.workers_total == 0:
            return "NO WORKERS" if self.min_workers == 0 else "LOADING"
        if self.workers_ready < self.workers_total:
            return "DEGRADED" if self.workers_ready else "LOADING"
        if self.workers_total < self.min_workers:
            return "SCALING"
        return "READY"


def row_key(name: str, version: str) -> str:
    return f"{name}/{version}"


def model_version(entry: Mapping[str, Any], default_version: str | None) -> ModelVersion:
    workers = entry.get("workers") or []
    queue = (entry.get("jobQueueStatus") or {}).get("pendingRequests", 0)
    return ModelVersion(
        name=str(entry.get("modelName", "")),
        version=str(entry.get("modelVersion", "")),
        is_default=entry.get("modelVersion") == default_version,
        min_workers=int(entry.get("minWorkers", 0) or 0),
        max_workers=int(entry.get("maxWorkers", 0) or 0),
        batch_size=int(entry.get("batchSize", 1) or 1),
        max_batch_delay=int(entry.get("maxBatchDelay", 0) or 0),
        workers_ready=sum(1 for w in workers if w.get("status") == "READY"),
        workers_total=len(workers),
        queue=int(queue or 0),
        url=str(entry.get("modelUrl", "")),
        describe=dict(entry),
    )


async def _describe_model(client: Client, name: str) -> list[ModelVersion]:
    """Every version of ``name``; [] when it went away between the list and the describe."""
    try:
        versions, default = await asyncio.gather(client.describe_all(name), client.describe(name))
    except ApiError as exc:
        if exc.status == 404:
            return []
        raise
    default_version = default[0].get("modelVersion") if default else None
    return [model_version(entry, default_version) for entry in versions]


@dataclass(frozen=True)
class ModelsSnapshot:
    models: tuple[ModelVersion, ...]
    metrics_available: bool  # the metrics API answered with Prometheus samples (metrics_mode=prometheus/legacy)
    taken: float = field(default_factory=time.monotonic)
    latency_histogram: bool = False  # the server exports tsconsole's latency histogram: p50/p99 are computed

    def get(self, key: str) -> ModelVersion | None:
        return next((m for m in self.models if m.key == key), None)


async def _metrics(client: Client) -> Samples | None:
    """The metrics API's samples, or None when it is off, unreachable or not in prometheus mode."""
    try:
        samples = await client.metrics()
    except Exception:  # the metrics API is optional: the models are shown without rates
        return None
    # log mode answers an empty page; prometheus (and legacy) mode always has some family
    return samples if samples else None


async def fetch_models(client: Client, rates: RateTracker | None = None) -> ModelsSnapshot:
    names = [m["modelName"] for m in await client.list_models()]
    described, samples = await asyncio.gather(
        asyncio.gather(*(_describe_model(client, n) for n in names)),
        _metrics(client),
    )
    models = [m for versions in described for m in versions]
    if rates is not None:
        models = rates.apply(models, samples)
    histogram = rates is not None and rates.latency_histogram
    return ModelsSnapshot(tuple(models), metrics_available=samples is not None, latency_histogram=histogram)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q``-quantile (0 ≤ q ≤ 1) of the observations in cumulative ``buckets`` (upper bound → count).

    As PromQL's ``histogram_quantile``: the rank ``q × count`` falls in a bucket, and the quantile is
    interpolated linearly inside it (the lowest bucket starts at 0); a rank in the +Inf bucket gives the
    highest finite upper bound. Counts that go down with the bound are raised to be monotonic. None when there
    is no observation, no +Inf bucket, or fewer than two buckets.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    bounds = sorted(b for b in buckets if not math.isnan(b))
    if len(bounds) < 2 or bounds[-1] != math.inf:
        return None
    counts: list[float] = []
    for bound in bounds:
        counts.append(max(buckets[bound], counts[-1] if counts else 0.0))
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start, below = (bounds[index - 1], counts[index - 1]) if index else (0.0, 0.0)
    inside = counts[index] - below
    if inside <= 0:
        return start
    return start + (bounds[index] - start) * (rank - below) / inside


def bucket_increase(now: Mapping[float, float], before: Mapping[float, float] | None) -> dict[float, float]:
    """What each cumulative bucket counted since ``before``: PromQL's ``increase`` between two samples.

    A bucket that went down was reset (the server restarted): all it counts now is new. A bucket ``before``
    did not have counted from 0.
    """
    before = before or {}
    out = {}
    for bound, count in now.items():
        previous = before.get(bound, 0.0)
        out[bound] = count - previous if count >= previous else count
    return out


@dataclass
class _Totals:
    """One model version's cumulative figures in one metrics page."""

    requests: float = 0.0
    latency_us: float | None = None  # None: the server sent no latency sample
    buckets: dict[float, float] = field(default_factory=dict)  # tsconsole's latency histogram: le (s) → count


class RateTracker:
    """Requests/s, average latency and p50/p99 per model version, from deltas between two polls.

    TorchServe's frontend exposes ``ts_inference_requests_total`` and the *sum* of latencies
    (``ts_inference_latency_microseconds``), no histogram: from those an average is all that can be computed.
    A tsconsole server in prometheus mode also exposes `LATENCY_HISTOGRAM`: p50/p99 of the requests answered
    between two polls come from the increase of its buckets. Its family is absent until the server answered a
    prediction; once seen, ``latency_histogram`` stays True (until the metrics API stops answering samples).
    Requests sent to a model without a version are labelled ``default``: they count for its default version.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, dict[tuple[str, str], _Totals]] | None = None
        self.latency_histogram = False

    @staticmethod
    def _totals(samples: Samples, defaults: Mapping[str, str]) -> dict[tuple[str, str], _Totals]:
        totals: dict[tuple[str, str], _Totals] = {}

        def row(labels: Mapping[str, str]) -> _Totals:
            name = labels.get("model_name", "")
            version = labels.get("model_version", "")
            if version == "default":
                version = defaults.get(name, version)
            return totals.setdefault((name, version), _Totals())

        for labels, value in samples.get(REQUESTS, []):
            row(labels).requests += value
        for labels, value in samples.get(LATENCY, []):
            totals_row = row(labels)
            totals_row.latency_us = (totals_row.latency_us or 0.0) + value
        for labels, value in samples.get(LATENCY_BUCKET, []):
            try:
                bound = float(labels.get("le", ""))
            except ValueError:
                continue
            buckets = row(labels).buckets
            buckets[bound] = buckets.get(bound, 0.0) + value
        return totals

    def apply(self, models: list[ModelVersion], samples: Samples | None) -> list[ModelVersion]:
        if samples is None:
            self._last = None
            self.latency_histogram = False
            return models
        now = self._clock()
        self.latency_histogram = self.latency_histogram or LATENCY_BUCKET in samples
        defaults = {m.name: m.version for m in models if m.is_default}
        totals = self._totals(samples, defaults)
        previous = self._last
        self._last = (now, totals)
        out = []
        for m in models:
            current = totals.get((m.name, m.version), _Totals())
            rps: float | None = None
            avg: float | None = None
            p50: float | None = None
            p99: float | None = None
            if previous is not None and now > previous[0]:
                before = previous[1].get((m.name, m.version), _Totals())
                delta = current.requests - before.requests
                if delta >= 0:
                    rps = delta / (now - previous[0])
                latency = current.latency_us
                if delta > 0 and latency is not None and latency >= (before.latency_us or 0.0):
                    avg = (latency - (before.latency_us or 0.0)) / delta / 1000
                if current.buckets:
                    increase = bucket_increase(current.buckets, before.buckets)
                    p50, p99 = (_ms(histogram_quantile(q, increase)) for q in (0.5, 0.99))
            out.append(dataclasses.replace(m, requests_per_s=rps, latency_ms=avg, p50_ms=p50, p99_ms=p99))
        return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# ---- system ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemSnapshot:
    """``/console/system``; ``supported`` False when the server has no such endpoint (plain TorchServe)."""

    supported: bool
    host: dict[str, Any] = field(default_factory=dict)
    gpus: tuple[dict[str, Any], ...] = ()
    gpu_status: str = "ok"
    workers: tuple[dict[str, Any], ...] = ()
    listeners: Listeners | None = None  # None: the server does not say (an older tsconsole server)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> SystemSnapshot:
        return cls(
            supported=True,
            host=dict(data.get("host") or {}),
            gpus=tuple(dict(g) for g in data.get("gpus") or []),
            gpu_status=str(data.get("gpuStatus") or "ok"),
            workers=tuple(dict(w) for w in data.get("workers") or []),
            listeners=Listeners.parse(data.get("listeners")),
        )


UNSUPPORTED = SystemSnapshot(supported=False)


async def fetch_system(client: Client) -> SystemSnapshot:
    try:
        return SystemSnapshot.parse(await client.system())
    except ApiError as exc:
        if exc.status in (404, 405):
            return UNSUPPORTED
        raise


# ---- the polling loop -----------------------------------------------------------------------------


class Poller(Generic[T]):
    """``fetch`` every ``interval`` seconds, one at a time; results and errors go to the callbacks.

    The next fetch is scheduled only after the previous one completed, so a slow server never piles
    requests up. ``paused`` stops the schedule (``poke`` still fetches once); ``poke`` fetches now.
    """

    def __init__(
        self,
        name: str,
        interval: float,
        fetch: Callable[[], Awaitable[T]],
        on_result: Callable[[T], object],
        on_error: Callable[[Exception], object],
    ) -> None:
        self.name = name
        self.interval = interval
        self.paused = False
        self.fetches = 0
        self._fetch = fetch
        self._on_result = on_result
        self._on_error = on_error
        self._poked = asyncio.Event()
        self._poked.set()  # the first fetch happens at once

    def poke(self) -> None:
        """Fetch now (also while paused)."""
        self._poked.set()

    async def run(self) -> None:
        while True:
            if self.paused and not self._poked.is_set():
                await self._poked.wait()
            self._poked.clear()
            await self.once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.interval)

    async def once(self) -> None:
        """One fetch; a failure, of the fetch or of showing its result, goes to ``on_error``, never further."""
        try:
            result = await self._fetch()
            self.fetches += 1
            self._on_result(result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._on_error(exc)
