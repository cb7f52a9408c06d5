"""The machine and software a run measured, stored with its results and printed in the report."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import psutil


def _cmd(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (proc.stdout + proc.stderr).strip().splitlines()[0] if proc.stdout + proc.stderr else "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_facts(torchserve: str | None) -> dict[str, str]:
    facts = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "cores": f"{psutil.cpu_count(logical=True)} logical, {psutil.cpu_count(logical=False)} physical",
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": metadata.version("torch"),
        "torchvision": metadata.version("torchvision"),
        "tsconsole": _cmd(["git", "describe", "--always", "--dirty"]),
        "wrk": _cmd(["wrk", "-v"]).split(" [")[0],
        "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if torchserve:
        python = str(Path(torchserve).parent / "python")
        code = "from importlib.metadata import version as v; print(v('torchserve'), v('torch'))"
        ts_version, _, ts_torch = _cmd([python, "-c", code]).partition(" ")
        facts |= {"torchserve": ts_version, "torchserve torch": ts_torch, "java": _cmd(["java", "-version"])}
    return facts
