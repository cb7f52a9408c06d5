"""What the console polls, and the loop that polls it. Imports nothing from Textual.

* `fetch_models` gathers every model version (describe), its default version and request rates.
* `RateTracker` turns the metrics API's counters into requests/s and average latency between two polls.
* `SystemSnapshot` is ``/console/system`` parsed (a plain TorchServe has none: ``supported`` is False).
* `Poller` runs one fetch every ``interval`` seconds, never two at once (it reschedules after each
  completion), and can be paused or poked ("refresh now"). The app runs each poller in a named worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tsconsole.client import ApiError, Client

T = TypeVar("T")

Samples = Mapping[str, list[tuple[dict[str, str], float]]]

REQUESTS = "ts_inference_requests"
LATENCY = "ts_inference_latency_microseconds"


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
    return ModelsSnapshot(tuple(models), metrics_available=samples is not None)


class RateTracker:
    """Requests/s and average latency per model version, from counter deltas between two polls.

    TorchServe's frontend exposes ``ts_inference_requests_total`` and the *sum* of latencies
    (``ts_inference_latency_microseconds``), no histogram: an average is all that can be computed.
    Requests sent to a model without a version are labelled ``default``: they count for its default version.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, dict[tuple[str, str], list[float | None]]] | None = None

    @staticmethod
    def _totals(samples: Samples, defaults: Mapping[str, str]) -> dict[tuple[str, str], list[float | None]]:
        """(model, version) → [requests, latency µs or None when the server sent no latency sample]."""
        totals: dict[tuple[str, str], list[float | None]] = {}
        for index, family in enumerate((REQUESTS, LATENCY)):
            for labels, value in samples.get(family, []):
                name = labels.get("model_name", "")
                version = labels.get("model_version", "")
                if version == "default":
                    version = defaults.get(name, version)
                row = totals.setdefault((name, version), [0.0, None])
                row[index] = (row[index] or 0.0) + value
        return totals

    def apply(self, models: list[ModelVersion], samples: Samples | None) -> list[ModelVersion]:
        if samples is None:
            self._last = None
            return models
        now = self._clock()
        defaults = {m.name: m.version for m in models if m.is_default}
        totals = self._totals(samples, defaults)
        previous = self._last
        self._last = (now, totals)
        out = []
        for m in models:
            count, latency = totals.get((m.name, m.version), (0.0, None))
            rps: float | None = None
            avg: float | None = None
            if previous is not None and now > previous[0]:
                before_count, before_latency = previous[1].get((m.name, m.version), (0.0, None))
                delta = (count or 0.0) - (before_count or 0.0)
                if delta >= 0:
                    rps = delta / (now - previous[0])
                if delta > 0 and latency is not None and latency >= (before_latency or 0.0):
                    avg = (latency - (before_latency or 0.0)) / delta / 1000
            out.append(dataclasses.replace(m, requests_per_s=rps, latency_ms=avg))
        return out


# ---- system ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemSnapshot:
    """``/console/system``; ``supported`` False when the server has no such endpoint (plain TorchServe)."""

    supported: bool
    host: dict[str, Any] = field(default_factory=dict)
    gpus: tuple[dict[str, Any], ...] = ()
    gpu_status: str = "ok"
    workers: tuple[dict[str, Any], ...] = ()

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> SystemSnapshot:
        return cls(
            supported=True,
            host=dict(data.get("host") or {}),
            gpus=tuple(dict(g) for g in data.get("gpus") or []),
            gpu_status=str(data.get("gpuStatus") or "ok"),
            workers=tuple(dict(w) for w in data.get("workers") or []),
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
