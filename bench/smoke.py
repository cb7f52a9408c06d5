"""python -m bench.smoke [--update]: a fast check (CI runs it) that the request path has not become grossly slower.

Absolute speed depends on the machine, so tsconsole is measured against a yardstick in the same run: a bare
aiohttp server answering the same POST (the HTTP floor of one Python process). One client (this process,
closed loop, CONNECTIONS connections) loads each in turn, twice, for a few seconds; the best window of each
counts. What is compared is tsconsole's noop throughput (1 worker, batch 1, default metrics and logs) as a
fraction of the floor's, against the fraction recorded in bench/smoke_baseline.json: below half of it (x2
slower) fails, and so does any error. Nothing else is judged: this guards against gross regressions, the
figures live in docs/benchmarks.md (`make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from bench import assets
from bench.servers import Server, free_block, http, tsconsole_kind
from bench.workloads import Config

BASELINE = Path(__file__).resolve().parent / "smoke_baseline.json"
CONNECTIONS = 16
WINDOW_S = 3.0
WARMUP_S = 1.0
ROUNDS = 2
TOLERANCE = 2.0  # fail when tsconsole's share of the floor is this many times below the baseline's

FLOOR_SERVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def answer(request):
        return web.json_response(len(await request.read()))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, loop=loop)
    """
)


@dataclass(frozen=True)
class Window:
    requests: int
    errors: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def load(url: str, body: bytes, seconds: float, connections: int = CONNECTIONS) -> Window:
    """Closed loop: ``connections`` clients each posting ``body`` again as soon as the answer is in."""
    import aiohttp

    done = errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                try:
                    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        if r.status == 200:
                            done += 1
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(connections)))
        return Window(done, errors, time.perf_counter() - t0)


def window(url: str, body: bytes) -> Window:
    """One measured window after a short warm-up."""
    asyncio.run(load(url, body, WARMUP_S))
    return asyncio.run(load(url, body, WINDOW_S))


def verdict(share: float, baseline: float, errors: int) -> tuple[bool, str]:
    """Pass/fail and why: ``share`` (tsconsole / floor now) against ``baseline`` (the recorded share)."""
    if errors:
        return False, f"{errors} request(s) failed"
    if share * TOLERANCE < baseline:
        return False, f"tsconsole reaches {share:.3f} of the floor, under half the baseline {baseline:.3f}"
    return True, f"tsconsole reaches {share:.3f} of the floor (baseline {baseline:.3f}, fails below {baseline / 2:.3f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.smoke", description=__doc__.split("\n\n")[0])
    p.add_argument("--update", action="store_true", help="record this run's share as the new baseline")
    opts = p.parse_args(sys.argv[1:] if argv is None else argv)
    work = Path(tempfile.mkdtemp(prefix="tsc-smoke-"))
    paths = assets.build(work, ["noop"])
    body = paths["noop.json"].read_bytes()
    port = free_block(19500, 1)
    floor_proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(port)])
    server = Server(tsconsole_kind(), work / "server", paths["model_store"], 19510)
    floor: list[Window] = []
    ours: list[Window] = []
    try:
        floor_url = f"http://127.0.0.1:{port}/predictions/noop"
        for _ in range(100):
            if http("POST", floor_url, body, "application/json", timeout=2)[0] == 200:
                break
            time.sleep(0.1)
        server.start()
        server.register("noop", Config(1))
        our_url = f"{server.inference}/predictions/noop"
        for _ in range(ROUNDS):
            floor.append(window(floor_url, body))
            ours.append(window(our_url, body))
    finally:
        server.stop()
        floor_proc.terminate()
        floor_proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    top_floor, top_ours = max(w.rps for w in floor), max(w.rps for w in ours)
    share = top_ours / top_floor
    print(f"floor {top_floor:.0f} req/s, tsconsole {top_ours:.0f} req/s ({CONNECTIONS} connections, best of {ROUNDS})")
    print(f"tsconsole start to /ping {server.timings.get('start_to_ping_s')} s, "
          f"register to READY {server.timings.get('register_to_ready_s')} s")  # fmt: skip
    if opts.update:
        recorded = {"share_of_floor": round(share, 3), "recorded": time.strftime("%Y-%m-%d")}
        BASELINE.write_text(json.dumps(recorded) + "\n")
        print(f"baseline recorded: {share:.3f}")
        return 0
    ok, why = verdict(share, json.loads(BASELINE.read_text())["share_of_floor"], sum(w.errors for w in ours))
    print(("smoke benchmark passed: " if ok else "smoke benchmark FAILED: ") + why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
