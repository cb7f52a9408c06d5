"""SVG snapshots of the dashboard and the models screen at 120x40, with known data (no server, no clock).

The pollers are stopped before the data is fed in, so each snapshot shows exactly the figures below.
Update after a deliberate change of the look: ``pytest tests/tsconsole/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from tsconsole.app import ConsoleApp
from tsconsole.client import Endpoints
from tsconsole.pollers import ModelsSnapshot, SystemSnapshot, model_version

SIZE = (120, 40)
ADDRESS = "http://127.0.0.1:9"  # the discard port: nothing answers, and the pollers are stopped at once


def describe(name: str, version: str, workers: int, *, minimum: int = 1, queue: int = 0) -> dict:
    return {
        "modelName": name,
        "modelVersion": version,
        "modelUrl": f"{name}.mar",
        "runtime": "python",
        "deviceType": "cpu",
        "minWorkers": minimum,
        "maxWorkers": max(minimum, workers),
        "batchSize": 8,
        "maxBatchDelay": 50,
        "responseTimeout": 120,
        "startupTimeout": 120,
        "loadedAtStartup": True,
        "workers": [
            {"id": str(9000 + i), "status": "READY", "pid": 4100 + i, "memoryUsage": 300 * 2**20, "gpuUsage": "N/A"}
            for i in range(workers)
        ],
        "jobQueueStatus": {"remainingCapacity": 100 - queue, "pendingRequests": queue},
    }


def models_snapshot() -> ModelsSnapshot:
    import dataclasses

    rows = [
        (describe("digits", "1.0", 2), "1.0", 12.5, 3.2),
        (describe("digits", "2.0", 1), "1.0", 0.0, None),
        (describe("resnet", "1.0", 0, minimum=0), "1.0", 0.0, None),
        (describe("bert", "3.1", 1, queue=4), "3.1", 40.0, 18.75),
    ]
    models = tuple(
        dataclasses.replace(model_version(entry, default), requests_per_s=rps, latency_ms=ms)
        for entry, default, rps, ms in rows
    )
    return ModelsSnapshot(models, metrics_available=True, taken=0.0)


def system_snapshot(step: int) -> SystemSnapshot:
    return SystemSnapshot.parse(
        {
            "host": {
                "cpuPercent": 10 + (step * 7) % 60,
                "cpuCount": 16,
                "memoryUsed": (20 + step % 5) * 2**30,
                "memoryTotal": 64 * 2**30,
                "memoryPercent": (20 + step % 5) / 64 * 100,
                "diskUsed": 200 * 2**30,
                "diskTotal": 1000 * 2**30,
            },
            "gpus": [
                {
                    "id": 0,
                    "name": "NVIDIA H100 80GB HBM3",
                    "utilization": (step * 13) % 100,
                    "memoryUsed": (10 + step) * 2**30,
                    "memoryTotal": 80 * 2**30,
                    "temperature": 40 + step % 10,
                    "power": 120.0 + step * 3,
                }
            ],
            "gpuStatus": "ok",
            "workers": [
                {"model": "digits", "version": "1.0", "id": "9000", "pid": 4100, "status": "READY",
                 "cpuPercent": 12.0, "rss": 310 * 2**20, "gpu": 0, "gpuMemory": 900 * 2**20},
                {"model": "digits", "version": "1.0", "id": "9001", "pid": 4101, "status": "READY",
                 "cpuPercent": 9.0, "rss": 305 * 2**20, "gpu": 0, "gpuMemory": 880 * 2**20},
                {"model": "bert", "version": "3.1", "id": "9002", "pid": 4102, "status": "READY",
                 "cpuPercent": 95.5, "rss": 1200 * 2**20, "gpu": 0, "gpuMemory": 4 * 2**30},
            ],
        }
    )  # fmt: skip


async def feed(pilot) -> None:
    app: ConsoleApp = pilot.app
    app.workers.cancel_group(app, "pollers")
    await pilot.pause()
    app.problem = None
    app.clear_notifications()
    for step in range(30):
        app.system = system_snapshot(step)
    app.models = models_snapshot()
    await pilot.pause()
    await pilot.pause()


def frozen_app(**kwargs) -> ConsoleApp:
    return ConsoleApp(Endpoints(ADDRESS, ADDRESS, ADDRESS), offer_start=False, **kwargs)


def test_dashboard_snapshot(snap_compare) -> None:
    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=feed)


def test_models_screen_snapshot(snap_compare) -> None:
    async def models_screen(pilot) -> None:
        await pilot.press("m")
        await feed(pilot)
        await pilot.press("down", "down")  # digits 2.0: not the default version
        await pilot.pause()

    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=models_screen)


def test_read_only_models_screen_snapshot(snap_compare) -> None:
    async def models_screen(pilot) -> None:
        await pilot.press("m")
        await feed(pilot)

    assert snap_compare(frozen_app(read_only=True), terminal_size=SIZE, run_before=models_screen)
