"""Event-loop stall detection: says when, for how long and WHERE something blocked the frontend's loop.

A heartbeat task on the loop stamps the time every `TICK_S`; a daemon watchdog thread looks at the stamp
four times per threshold. While the heartbeat is overdue, it samples the loop thread's Python stack
(``sys._current_frames()``) every half tick. A sample in the loop's own machinery (asyncio's selector, or the frame that
runs the loop when that machinery is native, as uvloop's is) finds the loop idle: it was due to run but its
process was not given a CPU in time, so that time does not count; neither does the time (Linux schedstat)
the loop thread, or the other thread that waited longest (it may hold the GIL), spent ready to run but
waiting for a CPU. A stall whose remaining part reaches the threshold is counted and, when the heartbeat
runs again, logged once as a WARNING on ``server.loop`` (so in ts_log.log):

    Event loop blocked for 153 ms at server/models/store.py:88 in discard <- server/api/console.py:140 in upload

The place is the first busy sample, summarised to the innermost frames of this repository (after the
innermost frame itself when that is a library's). A loop blocked for good is reported while it lasts too.
Config: ``loop_stall_warn_ms`` (default 200; 0 turns the watch off).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from server.config import Settings

log = logging.getLogger("server.loop")
CONFIG_KEY = "loop_stall_warn_ms"
DEFAULT_WARN_MS = 200.0
TICK_S = 0.02  # how often the heartbeat stamps the time (at most; a fifth of the threshold when that is less)
ONGOING_S = 5.0  # a stall still going on after this long (or twice the threshold) is reported while it lasts
OWN_FRAMES = 3  # this repository's frames in a report
ROOT = Path(__file__).resolve().parents[2]
_OWN_PREFIX = str(ROOT) + "/"
_NOT_OWN = ("/.venv/", "/site-packages/")
_LIB_DIRS = sorted({p + "/" for k, p in sysconfig.get_paths().items() if k.endswith(("stdlib", "lib"))}, key=len)[::-1]
# asyncio's loop machinery: a sample whose innermost frame is one of these finds the loop between callbacks.
_IDLE = {("selectors.py", "select"), ("selector_events.py", "_process_events")}
_BASE_EVENTS = os.sep + os.path.join("asyncio", "base_events.py")
_LOOP_MACHINERY = (_BASE_EVENTS, os.sep + os.path.join("asyncio", "events.py"))
_SUSPENDABLE = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR

Place = tuple[str, int, str]  # file name, line, function


@dataclass(frozen=True)
class LoopStats:
    stalls: int = 0
    longest_ms: float = 0.0


def warn_threshold_ms(settings: Settings) -> float:
    """``loop_stall_warn_ms``: a positive number of milliseconds, 0 for off (anything else: the default)."""
    raw = (settings.get(CONFIG_KEY) or "").strip()
    with contextlib.suppress(ValueError):
        if raw and float(raw) == 0:
            return 0.0
    return settings.positive(CONFIG_KEY, DEFAULT_WARN_MS)


def _is_own(filename: str) -> bool:
    return filename.startswith(_OWN_PREFIX) and not any(part in filename for part in _NOT_OWN)


def _short(filename: str) -> str:
    """A repository file relative to the root; a library's from its package (``asyncio/events.py``)."""
    if _is_own(filename):
        return filename[len(_OWN_PREFIX) :]
    for folder in _LIB_DIRS:
        if filename.startswith(folder):
            return filename[len(folder) :]
    return "/".join(Path(filename).parts[-2:])


def _place(place: Place) -> str:
    return f"{_short(place[0])}:{place[1]} in {place[2]}"


def loop_host(frame: FrameType | None) -> FrameType | None:
    """The frame that runs the event loop, outward from ``frame`` (one running on the loop): past coroutines
    and asyncio's loop machinery (uvloop's is C, with no frames), e.g. ``asyncio.Runner.run``."""
    while frame is not None and (
        frame.f_code.co_flags & _SUSPENDABLE or frame.f_code.co_filename.endswith(_LOOP_MACHINERY)
    ):
        frame = frame.f_back
    return frame


def stack_of(frame: FrameType | None, host: FrameType | None = None) -> list[Place]:
    """The places of ``frame`` and its callers, innermost first, up to the loop's ``_run_once`` or its ``host``
    (what runs the loop says nothing about a stall)."""
    places: list[Place] = []
    while frame is not None and frame is not host:
        code = frame.f_code
        if code.co_name == "_run_once" and code.co_filename.endswith(_BASE_EVENTS):
            break
        places.append((code.co_filename, frame.f_lineno or 0, code.co_name))
        frame = frame.f_back
    return places


def is_idle(stack: list[Place]) -> bool:
    """True when the loop is in its own machinery: waiting for events or between callbacks (an empty stack:
    the innermost frame is `loop_host`, or asyncio's ``_run_once``)."""
    return not stack or (Path(stack[0][0]).name, stack[0][2]) in _IDLE


def summarize(stack: list[Place]) -> str:
    """``file:line in function <- ...``: the innermost few of this repository's frames (inside the loop's
    callback), after the innermost frame when that is a library's; the innermost three when none is ours."""
    own = [place for place in stack if _is_own(place[0])][:OWN_FRAMES]
    if not own:
        return " <- ".join(_place(place) for place in stack[:OWN_FRAMES]) or "(unknown)"
    return " <- ".join(_place(place) for place in (own if stack[0] == own[0] else [stack[0], *own]))


def cpu_waits(threads: list[int] | None = None) -> dict[int, int]:
    """Nanoseconds each of ``threads`` (default: every thread of this process, by native id) has spent
    ready to run but waiting for a CPU (Linux schedstat; empty elsewhere)."""
    waits: dict[int, int] = {}
    if threads is None:
        try:
            threads = [int(tid) for tid in os.listdir("/proc/self/task")]
        except OSError:
            return waits
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                waits[tid] = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return waits


@dataclass
class _Stall:
    due: float  # when the late heartbeat should have run
    checked: float  # the previous sample's time (or `due`)
    loop_wait: dict[int, int]  # the loop thread's `cpu_waits` before the stall
    waits: dict[int, int]  # every thread's, once the stall is a quarter of the threshold long
    busy_s: float = 0.0  # time up to samples that found the loop running code
    idle_s: float = 0.0  # time up to samples that found it between callbacks
    where: str | None = None  # the first busy sample, summarised
    seen_after: float = 0.0  # how long into the stall that sample came
    next_report: float = 0.0  # when to log it while it goes on (set by the watchdog; inf: logged)

    def sample(self, now: float, stack: list[Place] | None) -> None:
        span, self.checked = max(0.0, now - self.checked), now
        if stack is None or is_idle(stack):
            self.idle_s += span
            return
        self.busy_s += span
        if self.where is None:
            self.where, self.seen_after = summarize(stack), now - self.due

    def place(self, threshold_s: float) -> str:
        """Where the loop was; a first look long into the stall means the watchdog could not run before: a
        call that held the GIL (native code, a process spawn) blocked the loop and returned just before."""
        if self.seen_after < threshold_s / 2:
            return str(self.where)
        return f"{self.where} (first seen {self.seen_after * 1000:.0f} ms into it: the call just before held the GIL)"

    def busy_part_s(self, duration_s: float) -> float:
        """How much of ``duration_s`` the loop spent running (or blocked in) code, by the samples' shares."""
        sampled = self.busy_s + self.idle_s
        return duration_s * self.busy_s / sampled if sampled else 0.0

    def cpu_wait_s(self, loop_tid: int, watch_tid: int) -> float:
        """How long the loop thread, and the other thread that waited longest (it may have held the GIL),
        were ready to run but kept waiting for a CPU since the stall began (a busy host, not blocking code)."""
        now = cpu_waits() if self.waits else cpu_waits([loop_tid])
        loop = now.get(loop_tid, 0) - self.loop_wait.get(loop_tid, now.get(loop_tid, 0))
        others = (ns - self.waits.get(tid, ns) for tid, ns in now.items() if tid not in (loop_tid, watch_tid))
        return (loop + max(others, default=0)) / 1e9


class LoopWatch:
    """Logs event-loop stalls longer than ``threshold_ms`` (0: does nothing); `start` on the loop, `stop` at the end."""

    def __init__(self, threshold_ms: float, *, ongoing_s: float = ONGOING_S) -> None:
        self.threshold_ms = threshold_ms
        self.tick_s = min(TICK_S, threshold_ms / 1000 / 5)  # a stall is measured from the beat it delays
        self.poll_s = self.tick_s / 2
        self.ongoing_s = ongoing_s
        self._beat = 0.0  # when the heartbeat last ran (time.monotonic)
        self._loop_thread = 0  # threading.get_ident() of the loop's thread
        self._loop_tid = 0  # its native id
        self._host: FrameType | None = None  # the frame that runs the loop (`loop_host`)
        self._watch_tid = 0
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._stats = LoopStats()

    @classmethod
    def from_settings(cls, settings: Settings) -> LoopWatch:
        return cls(warn_threshold_ms(settings))

    def start(self) -> None:
        """Watch the running loop (call this on it); does nothing when off or already started."""
        if self.threshold_ms <= 0 or self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop_thread, self._loop_tid = threading.get_ident(), threading.get_native_id()
        self._host = loop_host(sys._getframe(1))
        self._beat = time.monotonic()
        self._stopping.clear()
        self._task = loop.create_task(self._heartbeat(), name="loop-watch heartbeat")
        self._thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._thread.start()
        log.info("Watching the event loop: stalls over %.0f ms are logged", self.threshold_ms)

    def stop(self) -> None:
        """Stop the heartbeat and the watchdog thread (joined); idempotent."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._host = None

    def stats(self) -> LoopStats:
        """How many stalls were logged, and the longest one."""
        with self._lock:
            return self._stats

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(self.tick_s)

    def _sample(self) -> list[Place] | None:
        frame = sys._current_frames().get(self._loop_thread)
        return stack_of(frame, self._host) if frame is not None else None

    def _watch(self) -> None:
        threshold_s = self.threshold_ms / 1000
        ongoing_s = max(self.ongoing_s, 2 * threshold_s)
        self._watch_tid = threading.get_native_id()
        seen, loop_wait = self._beat, cpu_waits([self._loop_tid])
        stall: _Stall | None = None
        wait_s = self.poll_s
        while True:
            stopping = self._stopping.wait(wait_s)
            beat, now = self._beat, time.monotonic()
            if stopping:  # `stop` runs on the loop: a stall under way ends now
                if stall is not None:
                    self._finish(stall, (beat if beat != seen else now) - stall.due, threshold_s)
                return
            if beat != seen:  # the heartbeat ran again
                if stall is not None:
                    self._finish(stall, beat - stall.due, threshold_s)
                    stall = None
                seen, loop_wait = beat, cpu_waits([self._loop_tid])
            due = seen + self.tick_s
            if now - due < self.poll_s:  # on time, give or take a poll: look again in a quarter of the threshold
                wait_s = max(due + self.poll_s - now, threshold_s / 4)
                continue
            wait_s = self.poll_s
            if stall is None:
                stall = _Stall(due, due, loop_wait, {}, next_report=due + ongoing_s)
            if not stall.waits and now - due >= threshold_s / 4:  # worth a look at every thread
                stall.waits = cpu_waits()
            stall.sample(now, self._sample())
            if now >= stall.next_report:  # still blocked: say so now, it may never end
                if self._blocked(stall, now - due, threshold_s):
                    so_far, where = (now - due) * 1000, stall.place(threshold_s)
                    log.warning("Event loop blocked for %.0f ms so far at %s", so_far, where)
                    stall.next_report = math.inf
                else:
                    stall.next_report = now + 1.0

    def _blocked(self, stall: _Stall, duration_s: float, threshold_s: float) -> bool:
        busy = stall.busy_part_s(duration_s)
        if busy < threshold_s:
            return False
        waited = stall.cpu_wait_s(self._loop_tid, self._watch_tid)
        log.debug("Event loop late by %.0f ms: busy %.0f ms, waiting for a CPU %.0f ms at %s",
                  duration_s * 1000, busy * 1000, waited * 1000, stall.where)  # fmt: skip
        return busy - waited >= threshold_s

    def _finish(self, stall: _Stall, duration_s: float, threshold_s: float) -> None:
        if not self._blocked(stall, duration_s, threshold_s):
            return  # short, or the loop was idle, or its process was waiting for a CPU
        with self._lock:
            self._stats = LoopStats(self._stats.stalls + 1, max(self._stats.longest_ms, duration_s * 1000))
        log.warning("Event loop blocked for %.0f ms at %s", duration_s * 1000, stall.place(threshold_s))
