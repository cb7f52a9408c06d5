"""System metrics: the collector with a fake source, the real psutil source, and hosts without NVML."""

from __future__ import annotations

import asyncio
import sys
import types

import pytest

from server.telemetry.system import GpuStats, PsutilNvmlSource, SystemStats

from .conftest import FULL_SAMPLE, HOST, FakeStats, families, value


async def wait_for_calls(stats: FakeStats, n: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while stats.calls < n:
            await asyncio.sleep(0.005)


@pytest.mark.asyncio
async def test_the_collector_records_host_and_gpu_samples(make_metrics) -> None:
    stats = FakeStats(FULL_SAMPLE)
    metrics = make_metrics(stats, metrics_mode="prometheus")
    task = asyncio.create_task(metrics.run_system_collector(interval_s=0.01))
    try:
        await wait_for_calls(stats, 3)  # samples at once, then every interval
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    host = {"Level": "Host", "Hostname": HOST}
    assert value(metrics, "CPUUtilization", **host) == 12.5
    assert value(metrics, "MemoryUsed", **host) == 1024
    assert value(metrics, "MemoryAvailable", **host) == 3072
    assert value(metrics, "MemoryUtilization", **host) == 25
    assert value(metrics, "DiskUsage", **host) == 40
    assert value(metrics, "DiskAvailable", **host) == 60
    assert value(metrics, "DiskUtilization", **host) == 40
    gpu0 = {"Level": "Host", "DeviceId": "0", "Hostname": HOST}
    assert value(metrics, "GPUUtilization", **gpu0) == 50
    assert value(metrics, "GPUMemoryUsed", **gpu0) == 2048
    assert value(metrics, "GPUMemoryUtilization", **gpu0) == 25
    text = metrics.render().decode()
    assert 'GPUUtilization{Level="Host",DeviceId="0",Hostname="test-host",} 50.0\n' in text
    assert 'DeviceId="1"' not in text  # a GPU whose fields are all N/A gives no samples


@pytest.mark.asyncio
async def test_missing_fields_are_skipped_and_a_failing_sample_is_survived(make_metrics, caplog) -> None:
    class Flaky(FakeStats):
        def sample(self) -> SystemStats:
            self.calls += 1
            if self.calls == 1:
                raise OSError("disk vanished")
            return SystemStats(cpu_percent=3.0)

    stats = Flaky()
    metrics = make_metrics(stats, metrics_mode="prometheus")
    task = asyncio.create_task(metrics.run_system_collector(interval_s=0.01))
    try:
        await wait_for_calls(stats, 2)
        await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "System metrics collection failed" in caplog.text
    assert value(metrics, "CPUUtilization", Level="Host", Hostname=HOST) == 3
    assert families(metrics)["MemoryUsed"].samples == []


@pytest.mark.asyncio
async def test_disabled_system_metrics_never_sample(make_metrics) -> None:
    stats = FakeStats(FULL_SAMPLE)
    metrics = make_metrics(stats, metrics_mode="prometheus", disable_system_metrics="true")
    await asyncio.wait_for(metrics.run_system_collector(interval_s=0.01), timeout=1)
    assert stats.calls == 0


def test_the_interval_comes_from_metric_time_interval(make_metrics) -> None:
    assert make_metrics().interval_s == 60
    assert make_metrics(metric_time_interval="5").interval_s == 5
    assert make_metrics(metric_time_interval="soon").interval_s == 60


def test_log_mode_system_lines_follow_torchserves_collector_order(make_metrics, caplog) -> None:
    caplog.set_level("INFO")
    metrics = make_metrics()
    metrics.system_stats(FULL_SAMPLE)
    names = [r.getMessage().split(".")[0] for r in caplog.records if r.name == "TS_METRICS"]
    assert names == [
        "CPUUtilization", "DiskAvailable", "DiskUsage", "DiskUtilization", "GPUMemoryUtilization",
        "GPUMemoryUsed", "GPUUtilization", "MemoryAvailable", "MemoryUsed", "MemoryUtilization",
    ]  # fmt: skip
    gpu = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("GPUUtilization"))
    assert gpu.startswith("GPUUtilization.Percent:50.0|#Level:Host,DeviceId:0|#hostname:test-host,timestamp:")


def test_the_real_psutil_source() -> None:
    source = PsutilNvmlSource(gpus=True)  # whatever this host has: NVML or not, no exception
    try:
        stats = source.sample()
    finally:
        source.close()
    assert stats.cpu_percent is not None and 0 <= stats.cpu_percent <= 100
    assert stats.memory_used_mb is not None and stats.memory_used_mb > 0
    assert stats.memory_available_mb is not None and stats.memory_available_mb > 0
    assert stats.memory_percent is not None and 0 <= stats.memory_percent <= 100
    assert stats.disk_used_gb is not None and stats.disk_available_gb is not None
    assert stats.disk_percent is not None and 0 <= stats.disk_percent <= 100
    assert all(isinstance(gpu, GpuStats) for gpu in stats.gpus)


def _fake_nvml(monkeypatch: pytest.MonkeyPatch, **functions) -> types.SimpleNamespace:
    calls = types.SimpleNamespace(init=0)

    def init() -> None:
        calls.init += 1
        if "init_error" in functions:
            raise functions["init_error"]

    module = types.ModuleType("pynvml")
    module.nvmlInit = init
    module.nvmlShutdown = lambda: None
    for name, fn in functions.items():
        setattr(module, name, fn)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return calls


def test_without_nvml_there_are_no_gpus_and_no_errors(monkeypatch: pytest.MonkeyPatch, make_metrics) -> None:
    calls = _fake_nvml(monkeypatch, init_error=RuntimeError("NVML Shared Library Not Found"))
    source = PsutilNvmlSource()
    assert source.sample().gpus == ()
    assert source.sample().gpus == ()
    assert calls.init == 1  # tried once only

    monkeypatch.setitem(sys.modules, "pynvml", None)  # not even installed
    assert PsutilNvmlSource().sample().gpus == ()

    metrics = make_metrics(metrics_mode="prometheus")
    metrics.system_stats(PsutilNvmlSource().sample())
    assert families(metrics)["GPUUtilization"].samples == []
    assert families(metrics)["CPUUtilization"].samples != []


def test_every_gpu_field_may_be_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_supported(*args: object) -> None:
        raise RuntimeError("Not Supported")

    memory = types.SimpleNamespace(used=512 * 1024 * 1024, total=2048 * 1024 * 1024)
    _fake_nvml(
        monkeypatch,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: f"h{i}" if i == 0 else not_supported(),
        nvmlDeviceGetMemoryInfo=lambda h: memory,
        nvmlDeviceGetUtilizationRates=not_supported,
        nvmlDeviceGetName=lambda h: b"Fake GPU",
    )
    stats = PsutilNvmlSource().sample()
    assert stats.gpus == (
        GpuStats(0, utilization_percent=None, memory_used_mb=512.0, memory_total_mb=2048.0, name="Fake GPU"),
        GpuStats(1),
    )
    assert stats.gpus[0].memory_percent == 25.0 and stats.gpus[1].memory_percent is None
    assert PsutilNvmlSource(gpus=False).sample().gpus == ()
