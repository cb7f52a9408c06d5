"""Raw results (one record per server run) to docs/benchmarks.md: medians over repetitions, spreads, ratios."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from bench.workloads import WORKLOADS

ANCHOR = "torchserve"


def median_spread(values: list[float]) -> tuple[float, float, float] | None:
    """(median, min, max), or None for no values."""
    return (statistics.median(values), min(values), max(values)) if values else None


def ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours and theirs else "-"


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _one_line(text: str, limit: int = 400) -> str:
    text = " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit] + " ..."


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def cells(records: list[dict[str, Any]]) -> dict[tuple[str, str, int, str], dict[str, Any]]:
    """(workload, config, concurrency, kind) -> the windows of every repetition, summarised."""
    grouped: dict[tuple[str, str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        for w in rec["windows"]:
            grouped[rec["workload"], rec["config"], w["concurrency"], rec["kind"]].append(w)
    out = {}
    for key, ws in grouped.items():
        per_req = [(w["frontend_cpu_s"], w["tree_cpu_s"], w["requests"]) for w in ws if w["requests"]]
        out[key] = {
            "n": len(ws),
            "rps": median_spread([w["rps"] for w in ws]),
            "p50": _median([w["p50_ms"] for w in ws]),
            "p99": _median([w["p99_ms"] for w in ws]),
            "errors": sum(w["errors"] for w in ws),
            "frontend_ms": statistics.median(1000 * f / n for f, _, n in per_req) if per_req else None,
            "tree_ms": statistics.median(1000 * t / n for _, t, n in per_req) if per_req else None,
            "rss": max(w["peak_rss_mb"] for w in ws),
            "load": statistics.median(w["loadavg_before"] for w in ws),
            "foreign": statistics.median(w["foreign_cores"] for w in ws),
        }
    return out


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(results: dict[str, Any], workload: str) -> list[str]:
    summary, kinds = cells(results["records"]), results["kinds"]
    head = ["config", "c", "server", "req/s median (min-max)", "p50 ms", "p99 ms", "errors"]
    head += ["CPU ms/req frontend / all", "peak RSS MB", "load / foreign"]
    anchor = ANCHOR in kinds
    head += ["req/s vs TorchServe", "p99 vs TorchServe"] if anchor else []
    lines = [_row(head), _row(["---"] * len(head))]
    for config, c in dict.fromkeys(k[1:3] for k in summary if k[0] == workload):  # in the order they ran
        ts = summary.get((workload, config, c, ANCHOR))
        for kind in kinds:
            if not (cell := summary.get((workload, config, c, kind))):
                continue
            med, lo, hi = cell["rps"]
            rps = f"{med:.1f}" + (f" ({lo:.1f}-{hi:.1f})" if cell["n"] > 1 else "")
            row = [config, c, kind, rps, _fmt(cell["p50"]), _fmt(cell["p99"])]
            row += [cell["errors"], f"{_fmt(cell['frontend_ms'], 2)} / {_fmt(cell['tree_ms'], 2)}"]
            row += [f"{cell['rss']:.0f}", f"{cell['load']:.1f} / {cell['foreign']:.2f}"]
            if anchor:
                compare = ts and kind != ANCHOR
                row += [ratio(med, ts["rps"][0]), ratio(cell["p99"], ts["p99"])] if compare else ["", ""]
            lines.append(_row(row))
    return lines


def _timings(results: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | config | server | runs | start to /ping s | register to READY s | first response ms |",
        "|---|---|---|---|---|---|---|",
    ]
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in results["records"]:
        grouped[rec["workload"], rec["config"], rec["kind"]].append(rec)
    for (workload, config, kind), recs in grouped.items():
        failed = sum("error" in r for r in recs)
        row = f"| {workload} | {config} | {kind} | {len(recs)}" + (f" ({failed} failed)" if failed else "")
        for key in ("start_to_ping_s", "register_to_ready_s", "first_response_ms"):
            values = [r["timings"][key] for r in recs if key in r["timings"]]
            spread = median_spread(values)
            d = 0 if key.endswith("_ms") else 2
            row += " | -" if spread is None else f" | {spread[0]:.{d}f}"
            row += f" ({spread[1]:.{d}f}-{spread[2]:.{d}f})" if len(values) > 1 else ""
        lines.append(row + " |")
    return lines


def render(results: dict[str, Any]) -> str:
    facts, kinds = results["facts"], results["kinds"]
    loads = [w["loadavg_before"] for r in results["records"] for w in r["windows"]]
    out = [
        "# Benchmarks: tsconsole side by side with TorchServe",
        "",
        f"Written by `make bench` on {facts['date']}. Command: `{results['command']}`.",
        "Reproduce with `make bench` (see the README's Benchmarks section); the raw figures are in "
        "`bench/results/latest.json`. Where a request's time goes, and what changed it: "
        "[performance.md](performance.md).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in facts.items()),
        "",
        f"Servers: {', '.join(kinds)}; {results['reps']} repetition(s), kinds alternating inside each repetition. "
        f"Each run starts a fresh server, registers the model through the management API (synchronous), "
        f"checks one request, runs {results['warmup']} s of wrk warm-up at the highest concurrency (discarded) "
        "and then one wrk window per concurrency (1 thread, c connections, closed loop).",
        "",
        "Cells are the median over repetitions (with the min-max spread of req/s when there are several). "
        "CPU ms/req is server CPU time per request: the frontend process (tsconsole's server process, "
        "TorchServe's JVM) and the whole process tree (workers included). *load* is the 1-minute load average "
        "before the window; *foreign* is the CPU other processes on the machine used during the window, in cores.",
    ]
    if loads:
        busy = max(loads) > int(facts["cores"].split()[0])
        out += [
            "",
            f"**Machine load:** the load average before the windows ranged {min(loads):.1f}-{max(loads):.1f} "
            f"(median {statistics.median(loads):.1f}) on {facts['cores']} cores"
            + (": the machine was busy with other work, so these figures are noisy." if busy else "."),
        ]
    for name in results["workloads"]:
        about = f"{WORKLOADS[name].about}. Windows of {results['durations'][name]} s."
        out += ["", f"## {name}", "", about, "", *_table(results, name)]
    out += [
        "",
        "## Start and model load",
        "",
        "Median (min-max) over runs; seconds from the server's start to /ping 200, from the register call to every "
        "worker READY, and the first (checked) request's latency.",
        "",
        *_timings(results),
    ]
    errors = [r for r in results["records"] if "error" in r]
    if errors:
        out += ["", "## Failed runs", ""]
        out += [
            f"- {r['workload']} [{r['config']}] {r['kind']} rep {r['rep']}: {_one_line(r['error'])}" for r in errors
        ]
    return "\n".join(out) + "\n"
