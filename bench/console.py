"""python -m bench.console [--models N] [--lines-per-s R]: how the console keeps up with a big, busy server.

A real server gets N models (the noop archive under N names, no workers) while a feeder appends R lines a
second to its ts_log.log. The console runs under Textual's Pilot, as a person would use it:

* key presses while the Logs screen follows the flood: `p` (pause refreshing) until the app has acted on it;
* screen switches while the flood goes on: `m` (Models) and `d` (Dashboard, N rows) until the screen is up;
* the server's CPU for a while with the console connected and idle, then without it: what the console adds.

Prints a markdown table (the targets of issue 10: a key press takes effect within 100 ms; the idle console
adds at most 1% of a core to the server). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench import assets
from bench.monitor import TreeMonitor
from bench.servers import Server, http, tsconsole_kind

SIZE = (160, 50)
IDLE_S = 10.0


def feed(log: Path, rate: int, stop: threading.Event) -> None:
    """Append ``rate`` log4j-shaped lines a second to ``log`` (in 10 ms batches) until ``stop``."""
    batch, n = max(1, rate // 100), 0
    with log.open("a") as f:
        next_at = time.monotonic()
        while not stop.is_set():
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            f.write(
                "".join(f"{stamp},000 [INFO ] feeder bench.console - line {n + i} of the flood\n" for i in range(batch))
            )
            f.flush()
            n += batch
            next_at += 0.01
            time.sleep(max(0.0, next_at - time.monotonic()))


async def timed(pilot, key: str, done: Callable[[], bool], timeout: float = 10.0) -> float:
    """Milliseconds from pressing ``key`` until ``done()`` holds (watched from a task of its own: Pilot's
    `press` also waits for the screen to settle, which is not what a person waits for)."""
    t0 = time.perf_counter()

    async def effect() -> float:
        while not done():
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"key {key!r} had no effect within {timeout} s")
            await asyncio.sleep(0.001)
        return (time.perf_counter() - t0) * 1000

    watch = asyncio.create_task(effect())
    await pilot.press(key)
    return await watch


def server_cpu(monitor: TreeMonitor, seconds: float) -> float:
    """The server's CPU (its process tree) over ``seconds``, in percent of one core."""
    monitor.begin()
    time.sleep(seconds)
    return 100 * monitor.end()["tree_cpu_s"] / seconds


async def drive(
    server: Server, monitor: TreeMonitor, flood_stop: threading.Event, models: int, presses: int
) -> dict[str, list[float] | float]:
    from tsconsole.app import ConsoleApp
    from tsconsole.client import Endpoints
    from tsconsole.screens.dashboard import DashboardScreen
    from tsconsole.screens.logs import LogsScreen
    from tsconsole.screens.models import ModelsScreen
    from tsconsole.widgets.keyed_table import KeyedTable

    endpoints = Endpoints(server.inference, server.management, server.metrics)
    app = ConsoleApp(endpoints, offer_start=False, cwd=server.workdir)
    out: dict[str, list[float] | float] = {}
    async with app.run_test(size=SIZE) as pilot:
        deadline = time.monotonic() + 60
        while not (
            isinstance(app.screen, DashboardScreen) and len(app.screen.query_one("#models", KeyedTable).keys) >= models
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not list {models} models within 60 s")
            await pilot.pause(0.05)
        await timed(pilot, "l", lambda: isinstance(app.screen, LogsScreen))
        await pilot.pause(1.0)  # the follow streams are up and flooded
        pause_ms = []
        for i in range(presses):
            paused = i % 2 == 0  # what the press makes it
            pause_ms.append(await timed(pilot, "p", lambda paused=paused: app.paused == paused))
        out["pause key, logs screen following the flood"] = pause_ms
        await timed(pilot, "escape", lambda: not isinstance(app.screen, LogsScreen))
        switch_ms = []
        for _ in range(presses // 2):
            switch_ms.append(await timed(pilot, "m", lambda: isinstance(app.screen, ModelsScreen)))
            switch_ms.append(await timed(pilot, "d", lambda: isinstance(app.screen, DashboardScreen)))
        out[f"screen switch (Models / Dashboard with {models} rows)"] = switch_ms
        if app.paused:
            await pilot.press("p")
        flood_stop.set()  # idle from here: no key presses, no new log lines
        await pilot.pause(1.0)
        idle = "server CPU with the console idle, % of a core"
        out[idle] = await asyncio.to_thread(server_cpu, monitor, IDLE_S)
    out["server CPU without the console, % of a core"] = await asyncio.to_thread(server_cpu, monitor, IDLE_S)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=int, default=200)
    p.add_argument("--lines-per-s", type=int, default=5000)
    p.add_argument("--presses", type=int, default=20)
    opts = p.parse_args(sys.argv[1:] if argv is None else argv)
    work = Path(tempfile.mkdtemp(prefix="tsc-console-bench-"))
    paths = assets.build(work, ["noop"])
    server = Server(tsconsole_kind(), work / "server", paths["model_store"], 19600)
    stop = threading.Event()
    feeder: threading.Thread | None = None
    try:
        server.start()
        for i in range(opts.models):
            status, body = http(
                "POST", f"{server.management}/models?url=noop.mar&model_name=m{i:03d}&initial_workers=0"
            )
            if status != 200:
                raise RuntimeError(f"register m{i:03d}: HTTP {status} {body[:200]!r}")
        feeder = threading.Thread(target=feed, args=(work / "server" / "logs" / "ts_log.log", opts.lines_per_s, stop))
        feeder.start()
        monitor = TreeMonitor(server.proc.pid)  # type: ignore[union-attr]
        try:
            results = asyncio.run(drive(server, monitor, stop, opts.models, opts.presses))
        finally:
            monitor.close()
    finally:
        stop.set()
        if feeder is not None:
            feeder.join()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{opts.models} models, {opts.lines_per_s} log lines/s appended to ts_log.log, {SIZE[0]}x{SIZE[1]} terminal\n"
    )
    print("| measure | median | max |")
    print("|---|---|---|")
    for name, value in results.items():
        if isinstance(value, list):
            print(f"| {name}, ms | {statistics.median(value):.0f} | {max(value):.0f} |")
        else:
            print(f"| {name} | {value:.1f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
