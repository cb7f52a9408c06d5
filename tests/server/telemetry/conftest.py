"""Helpers for the metrics tests: settings from a config.properties, a fake stats source, text parsing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.config import Settings, load_settings
from server.telemetry.metrics import ServerMetrics
from server.telemetry.system import GpuStats, SystemStats

HOST = "test-host"


def make_settings(tmp_path: Path, **props: Any) -> Settings:
    """Settings from a config.properties holding ``props`` (no GPU)."""
    lines = [f"{key}={value}" for key, value in props.items()]
    (tmp_path / "config.properties").write_text("\n".join(lines) + "\n")
    return load_settings(env={"CUDA_VISIBLE_DEVICES": ""}, cwd=tmp_path)


class FakeStats:
    """A `SystemStatsSource` that returns prepared samples (the last one repeats) and counts calls."""

    def __init__(self, *samples: SystemStats) -> None:
        self.samples = list(samples) or [SystemStats()]
        self.calls = 0
        self.closed = False

    def sample(self) -> SystemStats:
        self.calls += 1
        return self.samples[min(self.calls, len(self.samples)) - 1]

    def close(self) -> None:
        self.closed = True


FULL_SAMPLE = SystemStats(
    cpu_percent=12.5,
    memory_used_mb=1024.0,
    memory_available_mb=3072.0,
    memory_percent=25.0,
    disk_used_gb=40.0,
    disk_available_gb=60.0,
    disk_percent=40.0,
    gpus=(
        GpuStats(0, utilization_percent=50.0, memory_used_mb=2048.0, memory_total_mb=8192.0),
        GpuStats(1),  # every field N/A
    ),
)


@pytest.fixture
def make_metrics(tmp_path: Path) -> Callable[..., ServerMetrics]:
    """``make_metrics(stats=FakeStats(), **properties)``: a ServerMetrics with host name ``test-host``."""

    def make(stats: FakeStats | None = None, **props: Any) -> ServerMetrics:
        return ServerMetrics(make_settings(tmp_path, **props), hostname=HOST, stats_source=stats or FakeStats())

    return make


def families(metrics: ServerMetrics, names: list[str] | None = None) -> dict[str, Any]:
    """The rendered text, parsed back with prometheus-client: family name → family."""
    text = metrics.render(names).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(metrics: ServerMetrics, sample_name: str, **labels: str) -> float | None:
    """The value of the parsed sample with that name and exactly those labels (None: absent)."""
    text = metrics.render().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and sample.labels == labels:
                return sample.value
    return None
