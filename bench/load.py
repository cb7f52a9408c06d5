"""Closed-loop load with wrk (a C program, so the client costs the server little CPU): 1 thread, C connections."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

LUA = Path(__file__).resolve().parent / "post.lua"
INSTALL_HINT = "install wrk (Debian: apt-get install wrk)"


def wrk_path() -> str:
    path = shutil.which("wrk")
    if not path:
        raise SystemExit(f"wrk not found on PATH: {INSTALL_HINT}")
    return path


def parse_summary(stdout: str) -> dict[str, float | None]:
    """The WRK_SUMMARY line of post.lua as req/s, latency percentiles in ms and an error count."""
    match = re.search(r"^WRK_SUMMARY (\{.*\})$", stdout, re.M)
    if not match:
        raise ValueError(f"no WRK_SUMMARY line in wrk's output: {stdout[-500:]!r}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "duration_s": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 2) if seconds else 0.0,
        "errors": raw["errors"] + raw["non2xx"],
        # no completed request (every one slower than the window): no latency figures rather than zeros
        **{f"p{p}_ms": raw[f"p{p}_us"] / 1000 if raw["requests"] else None for p in (50, 90, 99)},
        "max_ms": raw["max_us"] / 1000 if raw["requests"] else None,
    }


def run_wrk(url: str, body: Path, content_type: str, connections: int, seconds: int) -> dict[str, float | None]:
    cmd = [wrk_path(), "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout=60s", "-s", str(LUA), url]
    env = dict(os.environ, BENCH_BODY=str(body), BENCH_CTYPE=content_type)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr[-500:]}")
    return parse_summary(proc.stdout)
