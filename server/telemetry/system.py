"""Host and GPU statistics: what TorchServe's system metrics collector reports (spec §3.3).

`SystemStatsSource` is the small interface the metrics collector (and the console) sample through;
`PsutilNvmlSource` is the real one: psutil for CPU, memory and disk, NVML (``pynvml``) for GPUs. It is
defensive in the way nvitop is: NVML is initialised once, on first use; a host without the library or
the driver simply has no GPUs; any single field that cannot be read is ``None`` ("N/A"), never an
exception. ``psutil.cpu_percent`` is primed when the source is created (its first call returns 0.0).

Sampling may block for a moment (disk, NVML): call `PsutilNvmlSource.sample` off the event loop.
This module imports neither aiohttp nor prometheus-client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import psutil

log = logging.getLogger(__name__)

MB = 1024 * 1024
GB = 1024 * 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class GpuStats:
    """One GPU as NVML sees it; every field may be None (not supported, not readable)."""

    index: int
    utilization_percent: float | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    name: str | None = None

    @property
    def memory_percent(self) -> float | None:
        if self.memory_used_mb is None or not self.memory_total_mb:
            return None
        return self.memory_used_mb / self.memory_total_mb * 100


@dataclass(frozen=True)
class SystemStats:
    """One sample of the host (TorchServe's units: MB for memory, GB for disk, percentages 0-100)."""

    cpu_percent: float | None = None
    memory_used_mb: float | None = None
    memory_available_mb: float | None = None
    memory_percent: float | None = None
    disk_used_gb: float | None = None
    disk_available_gb: float | None = None
    disk_percent: float | None = None
    gpus: tuple[GpuStats, ...] = ()
    timestamp: float = field(default_factory=time.time)


class SystemStatsSource(Protocol):
    """Where host statistics come from (injectable: the tests use a fake)."""

    def sample(self) -> SystemStats:
        """One sample now; must not raise for a missing device or an unreadable field."""
        ...

    def close(self) -> None:
        """Release what the source holds (NVML); sampling again afterwards is allowed."""
        ...


def _field(read: Callable[[], T]) -> T | None:
    try:
        return read()
    except Exception:
        return None


class PsutilNvmlSource:
    """psutil for the host, NVML for GPUs (``gpus=False``: never touch NVML). Thread-safe."""

    def __init__(self, *, gpus: bool = True, disk_path: str = "/") -> None:
        self.disk_path = disk_path
        self._gpus_wanted = gpus
        self._lock = threading.Lock()
        self._nvml: Any = None  # the pynvml module once initialised
        self._nvml_tried = False
        _field(lambda: psutil.cpu_percent(interval=None))  # prime: the first call always returns 0.0

    def sample(self) -> SystemStats:
        memory = _field(psutil.virtual_memory)
        disk = _field(lambda: psutil.disk_usage(self.disk_path))
        return SystemStats(
            cpu_percent=_field(lambda: float(psutil.cpu_percent(interval=None))),
            memory_used_mb=memory.used / MB if memory is not None else None,
            memory_available_mb=memory.available / MB if memory is not None else None,
            memory_percent=float(memory.percent) if memory is not None else None,
            disk_used_gb=disk.used / GB if disk is not None else None,
            disk_available_gb=disk.free / GB if disk is not None else None,
            disk_percent=float(disk.percent) if disk is not None else None,
            gpus=self._sample_gpus(),
        )

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                _field(self._nvml.nvmlShutdown)
            self._nvml = None
            self._nvml_tried = False

    # -- NVML ------------------------------------------------------------------------------------------

    def _init_nvml(self) -> Any:
        """The initialised pynvml module, or None (tried once: no library, no driver, no permission)."""
        if not self._nvml_tried:
            self._nvml_tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
            except Exception as exc:
                log.debug("NVML is not available, no GPU statistics: %s", exc)
            else:
                self._nvml = pynvml
        return self._nvml

    def _sample_gpus(self) -> tuple[GpuStats, ...]:
        if not self._gpus_wanted:
            return ()
        with self._lock:
            nvml = self._init_nvml()
            if nvml is None:
                return ()
            count = _field(nvml.nvmlDeviceGetCount) or 0
            gpus = []
            for index in range(count):
                handle = _field(lambda i=index: nvml.nvmlDeviceGetHandleByIndex(i))
                if handle is None:
                    gpus.append(GpuStats(index))
                    continue
                memory = _field(lambda h=handle: nvml.nvmlDeviceGetMemoryInfo(h))
                rates = _field(lambda h=handle: nvml.nvmlDeviceGetUtilizationRates(h))
                name = _field(lambda h=handle: nvml.nvmlDeviceGetName(h))
                gpus.append(
                    GpuStats(
                        index=index,
                        utilization_percent=_field(lambda r=rates: float(r.gpu)),
                        memory_used_mb=_field(lambda m=memory: m.used / MB),
                        memory_total_mb=_field(lambda m=memory: m.total / MB),
                        name=name.decode() if isinstance(name, bytes) else name,
                    )
                )
            return tuple(gpus)
