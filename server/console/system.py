"""What ``/console/system`` reports: host CPU/memory/disk, per-GPU figures (NVML, injectable), per-worker
process figures, and where the server listens. Sampling blocks (psutil, NVML): call it off the event loop."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil

from server.config import Settings
from server.runtime.pool import WorkerInfo
from server.telemetry.system import GB, MB, PsutilNvmlSource, SystemStats, SystemStatsSource


@dataclass
class GpuDetails:
    """What NVML tells beyond `GpuStats`: per-GPU temperature (°C) and power (W), GPU memory per pid."""

    temperature: dict[int, float] = field(default_factory=dict)
    power: dict[int, float] = field(default_factory=dict)
    process_memory: dict[int, int] = field(default_factory=dict)  # pid -> bytes


class GpuProbe(Protocol):
    """The console's extra GPU readings (injectable: tests give a fake)."""

    def status(self) -> str:
        """Why there is no GPU, as a plain sentence (asked only when the stats source reports none)."""
        ...

    def details(self, indices: list[int]) -> GpuDetails:
        """Temperature, power and per-process memory of the GPUs at these NVML indices; never raises."""
        ...

    def close(self) -> None: ...


def _nvml_reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "Shared Library Not Found" in text or "Library Not Found" in text:
        return "no NVIDIA driver (libnvidia-ml is not installed)"
    if "Driver Not Loaded" in text:
        return "the NVIDIA driver is not loaded"
    return text


class NvmlProbe:
    """NVML (``pynvml``), initialised once on first use; every failure is a None or a reason, not an error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None
        self._reason: str | None = None  # set once NVML was tried and is unusable

    def _init(self) -> Any:
        if self._nvml is None and self._reason is None:
            try:
                import pynvml
            except ImportError:
                self._reason = "NVML is not available: the nvidia-ml-py package is not installed"
                return None
            try:
                pynvml.nvmlInit()
            except Exception as exc:
                self._reason = f"NVML is not available: {_nvml_reason(exc)}"
            else:
                self._nvml = pynvml
        return self._nvml

    def status(self) -> str:
        with self._lock:
            nvml = self._init()
            if nvml is None:
                return self._reason or "NVML is not available"
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except Exception as exc:
                return f"NVML cannot count the GPUs: {_nvml_reason(exc)}"
            if count == 0:
                return "NVML found no GPU on this host"
            return f"NVML sees {count} GPU(s) but the statistics source reports none"

    def details(self, indices: list[int]) -> GpuDetails:
        out = GpuDetails()
        with self._lock:
            nvml = self._init()
            if nvml is None:
                return out
            for index in indices:
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                except Exception:
                    continue
                with contextlib.suppress(Exception):
                    out.temperature[index] = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
                with contextlib.suppress(Exception):
                    out.power[index] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW -> W
                on_device: dict[int, int] = {}  # a process may be listed as compute and as graphics
                for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                    with contextlib.suppress(Exception):
                        for proc in getattr(nvml, getter)(handle):
                            used = getattr(proc, "usedGpuMemory", None)
                            if isinstance(used, int) and 0 <= used < 1 << 62:  # None / a sentinel: unknown
                                on_device[proc.pid] = max(on_device.get(proc.pid, 0), used)
                for pid, used in on_device.items():
                    out.process_memory[pid] = out.process_memory.get(pid, 0) + used
        return out

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                with contextlib.suppress(Exception):
                    self._nvml.nvmlShutdown()
            self._nvml = None
            self._reason = None


def _bytes(value: float | None, unit: int) -> int | None:
    return None if value is None else round(value * unit)


@dataclass(frozen=True)
class WorkerRef:
    model: str
    version: str
    info: WorkerInfo


class SystemSampler:
    """One ``/console/system`` document. Thread-safe; `sample` blocks (call it off the event loop).

    Per-process CPU % needs a primed `psutil.Process` (its first ``cpu_percent`` call returns 0.0): the
    processes are kept by pid between samples, so a worker's first sample has ``cpuPercent: null`` and every
    later one the percentage since the previous sample (100 = one core).
    """

    def __init__(self, source: SystemStatsSource | None = None, gpu_probe: GpuProbe | None = None) -> None:
        self._owns_source = source is None
        self.source: SystemStatsSource = source if source is not None else PsutilNvmlSource(gpus=True)
        self._owns_probe = gpu_probe is None
        self.probe: GpuProbe = gpu_probe if gpu_probe is not None else NvmlProbe()
        self._procs: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self._status: str | None = None  # the probe's reason, asked once

    def sample(self, workers: list[WorkerRef]) -> dict[str, Any]:
        stats: SystemStats = self.source.sample()
        disk_path = getattr(self.source, "disk_path", "/")
        memory_total = _try(lambda: psutil.virtual_memory().total)
        disk_total = _try(lambda: psutil.disk_usage(disk_path).total)
        host = {
            "cpuPercent": stats.cpu_percent,
            "cpuCount": psutil.cpu_count() or os.cpu_count() or 1,
            "memoryUsed": _bytes(stats.memory_used_mb, MB),
            "memoryTotal": memory_total,
            "memoryPercent": stats.memory_percent,
            "diskUsed": _bytes(stats.disk_used_gb, GB),
            "diskTotal": disk_total,
        }
        details = self.probe.details([g.index for g in stats.gpus]) if stats.gpus else GpuDetails()
        gpus = [
            {
                "id": g.index,
                "name": g.name,
                "utilization": g.utilization_percent,
                "memoryUsed": _bytes(g.memory_used_mb, MB),
                "memoryTotal": _bytes(g.memory_total_mb, MB),
                "temperature": details.temperature.get(g.index),
                "power": details.power.get(g.index),
            }
            for g in stats.gpus
        ]
        if gpus:
            status = "ok"
        else:
            if self._status is None:
                self._status = self.probe.status()
            status = self._status
        return {"host": host, "gpus": gpus, "gpuStatus": status, "workers": self._workers(workers, details)}

    def _workers(self, workers: list[WorkerRef], details: GpuDetails) -> list[dict[str, Any]]:
        out = []
        with self._lock:
            live: set[int] = set()
            for ref in workers:
                pid = ref.info.pid
                cpu = rss = None
                if pid is not None:
                    live.add(pid)
                    cpu, rss = self._process(pid)
                out.append(
                    {
                        "model": ref.model,
                        "version": ref.version,
                        "id": str(ref.info.id),
                        "pid": pid,
                        "status": ref.info.status,
                        "cpuPercent": cpu,
                        "rss": rss,
                        "gpu": ref.info.gpu,
                        "gpuMemory": details.process_memory.get(pid) if pid is not None else None,
                    }
                )
            for gone in set(self._procs) - live:
                del self._procs[gone]
        return out

    def _process(self, pid: int) -> tuple[float | None, int | None]:
        proc = self._procs.get(pid)
        try:
            if proc is None or not proc.is_running():  # is_running also catches a reused pid
                proc = psutil.Process(pid)
                self._procs[pid] = proc
                with proc.oneshot():
                    proc.cpu_percent(interval=None)  # prime
                    return None, proc.memory_info().rss
            with proc.oneshot():
                return float(proc.cpu_percent(interval=None)), proc.memory_info().rss
        except psutil.Error:
            self._procs.pop(pid, None)
            return None, None

    def close(self) -> None:
        if self._owns_source:
            self.source.close()
        if self._owns_probe:
            self.probe.close()


def _try(read: Any) -> Any:
    try:
        return read()
    except Exception:
        return None


def listeners(settings: Settings) -> dict[str, str | None]:
    """The ``listeners`` of ``/console/system``: REST URLs (``metrics`` None when its API is off), gRPC targets."""
    return {
        "inference": settings.inference_address.url,
        "management": settings.management_address.url,
        "metrics": settings.metrics_address.url if settings.enable_metrics_api else None,
        "grpc_inference": settings.grpc_inference_address.target,
        "grpc_management": settings.grpc_management_address.target,
    }
