"""CPU seconds and peak RSS of a server's process tree over a window, sampled with psutil (4 Hz)."""

from __future__ import annotations

import os
import threading

import psutil


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class TreeMonitor:
    """The frontend is the tree's java process when there is one (TorchServe), else the root (tsconsole)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.root = psutil.Process(pid)
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> last user+system seconds
        self._frontend: tuple[int, float] | None = None
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self._thread.start()

    def sample(self) -> None:
        rss, cpu, frontend = 0, {}, None
        for proc in _tree(self.root):
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    times, rss = proc.cpu_times(), rss + proc.memory_info().rss
                    if proc.name() == "java" or (frontend is None and proc.pid == self.root.pid):
                        frontend = key
            except psutil.Error:
                continue
            cpu[key] = times.user + times.system
        with self._lock:
            self._cpu.update(cpu)
            self._frontend = frontend or self._frontend
            self._peak = max(self._peak, rss)

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def snapshot(self) -> tuple[dict[tuple[int, float], float], tuple[int, float] | None]:
        self.sample()
        with self._lock:
            return dict(self._cpu), self._frontend

    def begin(self) -> None:
        self._base, _ = self.snapshot()
        self._busy0 = _busy_cpu()
        with self._lock:
            self._peak = 0

    def end(self) -> dict[str, float]:
        cpu, frontend = self.snapshot()
        used = {key: value - self._base.get(key, 0.0) for key, value in cpu.items()}
        tree = sum(used.values())
        return {
            "tree_cpu_s": round(tree, 3),
            "frontend_cpu_s": round(used.get(frontend, 0.0) if frontend else 0.0, 3),
            "peak_rss_mb": round(self._peak / 2**20, 1),
            "machine_cpu_s": round(_busy_cpu() - self._busy0, 3),
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _busy_cpu() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)
