"""python -m bench [--workloads noop,resnet18] [--reps N] [--duration S] [--quick] [--torchserve PATH]"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from bench import assets
from bench.facts import machine_facts
from bench.load import wrk_path
from bench.report import render
from bench.runner import measure
from bench.servers import torchserve_kind, tsconsole_kind
from bench.workloads import select

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--workloads", default="noop,resnet18", help="comma-separated: noop, resnet18")
    p.add_argument("--reps", type=int, default=3, help="repetitions of every configuration (default 3)")
    p.add_argument("--duration", type=int, default=0, help="seconds per window (default: the workload's)")
    p.add_argument("--warmup", type=int, default=5, help="seconds of discarded load before the windows")
    p.add_argument("--quick", action="store_true", help="1 rep, 5 s windows, 2 s warm-up: checks the harness")
    p.add_argument("--torchserve", metavar="PATH", help="a torchserve executable (in its own venv) to compare with")
    p.add_argument("--prometheus", action="store_true", help="also run tsconsole with metrics_mode=prometheus")
    p.add_argument("--port-base", type=int, default=19300, help="first port tried (a free block of 8 is used)")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "work", help="assets and workdirs")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json", help="raw results")
    p.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md", help="the markdown report")
    p.add_argument("--keep-workdirs", action="store_true", help="keep each server's workdir and logs")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.reps, opts.duration, opts.warmup = 1, opts.duration or 5, min(opts.warmup, 2)
    return opts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_args(argv)
    wrk_path()
    workloads = select(opts.workloads)
    kinds = [tsconsole_kind()]
    if opts.prometheus:
        kinds.append(tsconsole_kind("tsconsole-prometheus", metrics_mode="prometheus"))
    if opts.torchserve:
        kinds.append(torchserve_kind(opts.torchserve))

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    opts.work = opts.work.resolve()
    log(f"building assets in {opts.work}")
    paths = assets.build(opts.work, [w.name for w in workloads])
    results = {
        "command": shlex.join(["python", "-m", "bench", *argv]),
        "facts": machine_facts(opts.torchserve),
        "kinds": [k.name for k in kinds],
        "workloads": [w.name for w in workloads],
        "reps": opts.reps,
        "warmup": opts.warmup,
        "durations": {w.name: opts.duration or w.duration_s for w in workloads},
        "records": [],
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    for workload in workloads:
        for config in workload.configs:
            for rep in range(1, opts.reps + 1):
                shift = (rep - 1) % len(kinds)  # A B, then B A, ...: drift hits every kind alike
                for kind in kinds[shift:] + kinds[:shift]:
                    results["records"].append(measure(kind, workload, config, rep, paths, opts, log))
                    opts.out.write_text(json.dumps(results, indent=1))
    opts.report.parent.mkdir(parents=True, exist_ok=True)
    opts.report.write_text(render(results))
    log(f"wrote {opts.report} and {opts.out}")
    print(opts.report.read_text())
    return 1 if any("error" in r for r in results["records"]) else 0


if __name__ == "__main__":
    sys.exit(main())
