"""One measured run: fresh server, register, one checked request, warm-up (discarded), one window per
concurrency with wrk while psutil watches the server's process tree, stop."""

from __future__ import annotations

import json
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from bench.load import run_wrk
from bench.monitor import TreeMonitor, loadavg
from bench.servers import Kind, Server, http
from bench.workloads import Config, Workload


def check_response(workload: Workload, status: int, body: bytes) -> None:
    if status != 200:
        raise RuntimeError(f"warm request: HTTP {status} {body[:300]!r}")
    answer = json.loads(body)
    ok = isinstance(answer, int) if workload.name == "noop" else isinstance(answer, dict) and len(answer) == 5
    if not ok:
        raise RuntimeError(f"warm request: unexpected answer {str(answer)[:300]}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    kind: Kind, workload: Workload, config: Config, rep: int, paths: dict[str, Path], opts: Any, log: Any
) -> dict[str, Any]:
    label = f"{workload.name} [{config.label}] {kind.name} rep {rep}"
    record: dict[str, Any] = {"workload": workload.name, "config": config.label, "kind": kind.name, "rep": rep}
    workdir = opts.work / "servers" / f"{workload.name}-{config.label.replace(' ', '')}-{kind.name}-r{rep}"
    shutil.rmtree(workdir, ignore_errors=True)
    server, monitor, windows = Server(kind, workdir, paths["model_store"], opts.port_base), None, []
    body = paths[workload.body]
    try:
        server.start()
        monitor = TreeMonitor(server.proc.pid)  # type: ignore[union-attr]
        server.register(workload.name, config)
        url = f"{server.inference}/predictions/{workload.name}"
        t0 = time.perf_counter()
        check_response(workload, *http("POST", url, body.read_bytes(), workload.content_type))
        server.timings["first_response_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        log(f"{label}: ready {server.timings}")
        if opts.warmup:
            run_wrk(url, body, workload.content_type, max(workload.concurrencies), opts.warmup)
        for c in workload.concurrencies:
            load_before, client0 = loadavg(), _children_cpu()
            monitor.begin()
            result = run_wrk(url, body, workload.content_type, c, opts.duration or workload.duration_s)
            usage = monitor.end()
            foreign = usage.pop("machine_cpu_s") - usage["tree_cpu_s"] - (_children_cpu() - client0)
            window = {"concurrency": c, "loadavg_before": load_before, **result, **usage}
            window["foreign_cores"] = round(max(foreign, 0.0) / result["duration_s"], 2)
            windows.append(window)
            log(
                f"{label} c={c}: {result['rps']:.1f} req/s p50 {result['p50_ms']} p99 {result['p99_ms']} ms"
                f" errors {result['errors']} cpu {usage['tree_cpu_s']:.1f} s load {load_before}"
            )
    except Exception as exc:  # recorded in the report; the next run goes on
        record["error"] = f"{exc}"
        log(f"{label}: FAILED {exc}\n{server.log_tail()}")
    finally:
        if monitor:
            monitor.close()
        server.stop()
    if not opts.keep_workdirs and "error" not in record:
        shutil.rmtree(workdir, ignore_errors=True)
    return record | {"timings": server.timings, "windows": windows}
