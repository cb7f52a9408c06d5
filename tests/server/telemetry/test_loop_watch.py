"""LoopWatch: a blocked event loop is reported once, with where it blocked; an idle or awaiting loop is not."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import re
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import pytest

from server.telemetry.loop_watch import (
    LoopWatch,
    cpu_waits,
    is_idle,
    loop_host,
    stack_of,
    summarize,
    warn_threshold_ms,
)
from tests.server.telemetry.conftest import make_settings

try:
    import uvloop
except ImportError:  # a platform without uvloop's wheels: the server runs asyncio's loop there
    uvloop = None

THIS = "tests/server/telemetry/test_loop_watch.py"
# The server runs uvloop's loop (asyncio's with TSCONSOLE_LOOP=asyncio): uvloop's machinery has no Python frames.
LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(uvloop and uvloop.new_event_loop, id="uvloop", marks=pytest.mark.skipif(not uvloop, reason="uvloop")),
]


def run(new_loop, main):
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main())


def watch_around(callback, new_loop=asyncio.new_event_loop) -> LoopWatch:
    """A 100 ms watch on a fresh loop on which ``callback`` runs once, a tenth of a second in."""

    async def main() -> LoopWatch:
        watch = LoopWatch(100)
        watch.start()
        await asyncio.sleep(0.1)
        asyncio.get_running_loop().call_soon(callback)
        await asyncio.sleep(0.3)
        watch.stop()
        return watch

    return run(new_loop, main)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "server.loop" and r.levelno == logging.WARNING]


def blocker() -> None:
    time.sleep(0.3)


@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_blocking_callback_is_reported_once_with_where_it_blocked(new_loop, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="server.loop")
    watch = watch_around(blocker, new_loop)
    [message] = warnings(caplog)
    match = re.fullmatch(r"Event loop blocked for (\d+) ms at (.*)", message)
    assert match, message
    assert 250 <= int(match.group(1)) < 1000, message
    assert re.fullmatch(f"{THIS}:\\d+ in blocker", match.group(2)), message
    stats = watch.stats()
    assert stats.stalls == 1 and 250 <= stats.longest_ms < 1000


@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_blocking_coroutine_names_its_own_frames_innermost_first(new_loop, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="server.loop")

    def read_slowly() -> None:
        threading.Event().wait(0.25)  # the innermost frame is the library's

    async def handler() -> None:
        read_slowly()

    async def main() -> None:
        watch = LoopWatch(100)
        watch.start()
        await asyncio.sleep(0.05)
        await handler()
        await asyncio.sleep(0.05)
        watch.stop()

    run(new_loop, main)
    [message] = warnings(caplog)
    where = message.split(" at ", 1)[1]
    assert where.startswith("threading.py:"), where
    assert f"<- {THIS}:" in where and "in read_slowly <- " in where and "in handler <- " in where, where


def test_a_long_stall_is_reported_while_it_lasts_then_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="server.loop")

    def stuck() -> None:
        time.sleep(0.6)

    async def main() -> None:
        watch = LoopWatch(100, ongoing_s=0.25)
        watch.start()
        await asyncio.sleep(0.05)
        stuck()
        await asyncio.sleep(0.05)
        watch.stop()

    asyncio.run(main())
    so_far, final = warnings(caplog)
    assert re.fullmatch(f"Event loop blocked for \\d+ ms so far at {THIS}:\\d+ in stuck <- .*", so_far), so_far
    assert re.fullmatch(f"Event loop blocked for \\d+ ms at {THIS}:\\d+ in stuck <- .*", final), final


def holds_the_gil() -> None:
    ctypes.PyDLL(None).usleep(300_000)  # native code that keeps the GIL: the watchdog cannot look meanwhile


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libc's usleep through ctypes")
def test_a_call_holding_the_gil_is_reported_as_such_with_its_length(caplog: pytest.LogCaptureFixture) -> None:
    """The watchdog cannot look while native code holds the GIL; it looks as soon as it gets the GIL back. Which
    waiting thread gets it first is the OS's choice, so the first look may land in the call's frame or where the
    loop went on to (here: `stop`); either way the report says how long, and that the call before held the GIL."""
    caplog.set_level(logging.WARNING, logger="server.loop")
    watch_around(holds_the_gil)
    [message] = warnings(caplog)
    match = re.fullmatch(
        r"Event loop blocked for (\d+) ms at (.+) \(first seen (\d+) ms into it: the call just before held the GIL\)",
        message,
    )
    assert match, message
    assert 250 <= int(match.group(1)) < 1000 and 250 <= int(match.group(3)) <= int(match.group(1)), message
    assert f"{THIS}:" in match.group(2), message  # the callback, or the test's own frames the loop went on to


@pytest.mark.parametrize("new_loop", LOOPS)
def test_an_idle_loop_or_one_awaiting_sleeps_logs_nothing(new_loop, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="server.loop")

    async def main() -> LoopWatch:
        watch = LoopWatch(100)
        watch.start()
        await asyncio.sleep(0.4)  # idle
        await asyncio.gather(*(asyncio.sleep(0.3) for _ in range(50)))  # waiting, not blocked
        for _ in range(20):
            time.sleep(0.01)  # short blocks, well under the threshold
            await asyncio.sleep(0)
        watch.stop()
        return watch

    watch = run(new_loop, main)
    assert warnings(caplog) == []
    assert watch.stats().stalls == 0 and watch.stats().longest_ms == 0


def test_stop_is_prompt_and_idempotent() -> None:
    async def main() -> float:
        watch = LoopWatch(100)
        watch.start()
        await asyncio.sleep(0.05)
        started = time.monotonic()
        watch.stop()
        elapsed = time.monotonic() - started
        watch.stop()
        assert not any(t.name == "loop-watch" for t in threading.enumerate())
        return elapsed

    assert asyncio.run(main()) < 0.1


def test_off_when_the_threshold_is_zero() -> None:
    async def main() -> None:
        watch = LoopWatch(0)
        watch.start()
        assert not any(t.name == "loop-watch" for t in threading.enumerate())
        watch.stop()

    asyncio.run(main())


@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_loop_waiting_for_events_is_idle_and_one_in_a_blocking_call_is_not(new_loop) -> None:
    loop = new_loop()
    hosts: list[FrameType | None] = []
    done = loop.create_future()

    async def main() -> None:
        hosts.append(loop_host(sys._getframe()))
        await done

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not hosts and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # now waiting for events
        assert thread.ident is not None and hosts[0] is not None
        assert hosts[0].f_code.co_name == "run"  # threading.Thread.run: it runs the loop
        idle = stack_of(sys._current_frames()[thread.ident], hosts[0])
        assert is_idle(idle), idle
        loop.call_soon_threadsafe(blocker)
        time.sleep(0.1)
        busy = stack_of(sys._current_frames()[thread.ident], hosts[0])
        assert not is_idle(busy) and re.fullmatch(f"{THIS}:\\d+ in blocker", summarize(busy)), busy
    finally:
        loop.call_soon_threadsafe(done.set_result, None)
        thread.join(5)
        loop.close()


def test_the_threshold_comes_from_loop_stall_warn_ms(tmp_path: Path) -> None:
    assert warn_threshold_ms(make_settings(tmp_path)) == 200
    assert warn_threshold_ms(make_settings(tmp_path, loop_stall_warn_ms=100)) == 100
    assert warn_threshold_ms(make_settings(tmp_path, loop_stall_warn_ms=0)) == 0
    assert warn_threshold_ms(make_settings(tmp_path, loop_stall_warn_ms="soon")) == 200
    assert "loop_stall_warn_ms" not in make_settings(tmp_path, loop_stall_warn_ms=0).unknown_keys


@pytest.mark.skipif(not Path("/proc/thread-self/schedstat").exists(), reason="Linux schedstat")
def test_cpu_waits_reads_each_threads_time_waiting_for_a_cpu() -> None:
    me = threading.get_native_id()
    assert cpu_waits([me]).keys() == {me} and me in cpu_waits()
