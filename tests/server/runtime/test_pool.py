"""WorkerPool end to end: real worker processes, real Unix sockets, the echo test service."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from server.errors import RequestTimeout, ServiceUnavailable, WorkerDied, WorkerError, no_worker
from server.runtime.messages import Response
from server.runtime.pool import CoreShare, WorkerPool, WorkerStatus

from .conftest import make_request

NO_WORKER_TEXT = (
    'Model "m" has no worker to serve inference request. Please use scale workers API to add workers. '
    "If this is a sequence inference, please check if it is closed, or expired; "
    "or exceeds maxSequenceJobQueueSize"
)


def body(response: Response) -> dict[str, Any]:
    return json.loads(response.body)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def eventually(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
@pytest.mark.parametrize("handler", ["echo", "reverse"])
async def test_every_response_reaches_its_own_request_under_load(make_pool, handler: str) -> None:
    pool: WorkerPool = make_pool(handler=handler, batch_size=8, max_batch_delay_ms=50, job_queue_size=256)
    await pool.scale(2)
    assert [w.status for w in pool.workers()] == [WorkerStatus.READY] * 2

    n = 200
    requests = [make_request(f"req-{i}", f"payload-{i}-ü") for i in range(n)]
    responses = await asyncio.gather(*(pool.predict(r) for r in requests))
    for i, response in enumerate(responses):
        assert response.request_id == f"req-{i}"
        assert response.status == 200
        assert response.content_type == "application/json"
        data = body(response)
        assert data["id"] == f"req-{i}"
        assert data["input"] == f"payload-{i}-ü"
        assert data["headers"] == [["x-test", f"req-{i}"]]
    batch_sizes = [body(r)["batch"] for r in responses]
    assert max(batch_sizes) == 8  # batches really formed ...
    assert all(1 <= b <= 8 for b in batch_sizes)  # ... and never beyond batch_size
    assert {body(r)["pid"] for r in responses} == {w.pid for w in pool.workers()}  # both workers served
    assert pool.queue_depth == 0


@pytest.mark.asyncio
async def test_max_batch_delay_flushes_a_partial_batch(make_pool) -> None:
    pool: WorkerPool = make_pool(batch_size=8, max_batch_delay_ms=300)
    await pool.scale(1)
    start = time.monotonic()
    responses = await asyncio.gather(*(pool.predict(make_request(f"r{i}", "x")) for i in range(3)))
    elapsed = time.monotonic() - start
    assert [body(r)["batch"] for r in responses] == [3, 3, 3]
    assert 0.28 <= elapsed < 3


@pytest.mark.asyncio
async def test_a_full_batch_does_not_wait_for_the_delay(make_pool) -> None:
    pool: WorkerPool = make_pool(batch_size=4, max_batch_delay_ms=20_000)
    await pool.scale(1)
    start = time.monotonic()
    responses = await asyncio.gather(*(pool.predict(make_request(f"r{i}", "x")) for i in range(4)))
    assert time.monotonic() - start < 5
    assert [body(r)["batch"] for r in responses] == [4, 4, 4, 4]


@pytest.mark.asyncio
async def test_no_workers_is_503_with_torchserve_text(make_pool) -> None:
    pool: WorkerPool = make_pool()
    with pytest.raises(ServiceUnavailable) as info:
        await pool.predict(make_request("r"))
    assert info.value.status == 503
    assert info.value.message == NO_WORKER_TEXT
    assert info.value.body()["type"] == "ServiceUnavailableException"
    with pytest.raises(ServiceUnavailable) as info:
        await pool.predict(make_request("r"), url_version="1.0")
    assert info.value.message == no_worker("m", "1.0").message
    assert info.value.message.startswith('Model "m" Version 1.0" has no worker')

    await pool.scale(1)
    assert body(await pool.predict(make_request("r", "ok")))["input"] == "ok"
    await pool.scale(0)
    assert pool.workers() == []
    with pytest.raises(ServiceUnavailable):
        await pool.predict(make_request("r"))


@pytest.mark.asyncio
async def test_queue_full_is_503(make_pool) -> None:
    pool: WorkerPool = make_pool(job_queue_size=2)
    await pool.scale(1)
    busy = asyncio.create_task(pool.predict(make_request("busy", "sleep:1")))
    await eventually(lambda: pool.queue_depth == 0 and not busy.done())
    await asyncio.sleep(0.05)
    queued = [asyncio.create_task(pool.predict(make_request(f"q{i}", "x"))) for i in range(2)]
    await eventually(lambda: pool.queue_depth == 2)
    with pytest.raises(ServiceUnavailable) as info:
        await pool.predict(make_request("overflow"))
    assert info.value.status == 503 and info.value.message == NO_WORKER_TEXT
    assert [body(r)["id"] for r in await asyncio.gather(busy, *queued)] == ["busy", "q0", "q1"]


@pytest.mark.asyncio
async def test_a_cancelled_request_leaves_the_queue(make_pool) -> None:
    pool: WorkerPool = make_pool(job_queue_size=1)
    await pool.scale(1)
    busy = asyncio.create_task(pool.predict(make_request("busy", "sleep:0.5")))
    await eventually(lambda: pool.queue_depth == 0)
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(pool.predict(make_request("gone", "x")))
    await eventually(lambda: pool.queue_depth == 1)
    waiting.cancel()
    await eventually(lambda: pool.queue_depth == 0)
    assert body(await pool.predict(make_request("next", "x")))["id"] == "next"  # the slot is free again
    await busy


@pytest.mark.asyncio
async def test_whole_batch_failure_is_a_worker_error_for_every_request(make_pool) -> None:
    pool: WorkerPool = make_pool(batch_size=2, max_batch_delay_ms=300)
    await pool.scale(1)
    results = await asyncio.gather(
        pool.predict(make_request("a", "fail:503:Prediction failed")),
        pool.predict(make_request("b", "fine")),
        return_exceptions=True,
    )
    for exc in results:
        assert isinstance(exc, WorkerError)
        assert (exc.status, exc.message) == (503, "Prediction failed")
        assert exc.body()["type"] == "InternalServerException"
    assert results[0] is not results[1]
    with pytest.raises(WorkerError) as info:
        await pool.predict(make_request("c", "fail:413:Too large"))
    assert info.value.status == 507  # TorchServe maps 413 to 507
    ok = await pool.predict(make_request("d", "fine"))  # the same worker is still serving
    assert body(ok)["pid"] == pool.workers()[0].pid


@pytest.mark.asyncio
async def test_crash_in_flight_is_worker_died_and_the_worker_restarts(make_pool) -> None:
    pool: WorkerPool = make_pool()
    await pool.scale(1)
    [before] = pool.workers()
    crash = asyncio.create_task(pool.predict(make_request("boom", "crash")))
    await eventually(lambda: pool.queue_depth == 0)
    after = asyncio.create_task(pool.predict(make_request("after", "x")))  # queued, not in flight
    with pytest.raises(WorkerDied) as info:
        await crash
    assert (info.value.status, info.value.message) == (500, "Worker died.")
    assert info.value.body() == {"code": 500, "type": "InternalServerException", "message": "Worker died."}
    response = await asyncio.wait_for(after, 20)  # served by the replacement after the 1 s back-off
    assert body(response)["pid"] != before.pid
    assert not alive(before.pid)
    [now] = pool.workers()
    assert (now.id, now.status, now.pid) == (before.id, WorkerStatus.READY, body(response)["pid"])


@pytest.mark.asyncio
async def test_sigkilled_worker_looks_oom_killed(make_pool) -> None:
    pool: WorkerPool = make_pool(max_retry_timeout_s=0)
    await pool.scale(1)
    with pytest.raises(WorkerDied) as info:
        await pool.predict(make_request("boom", "kill9"))
    assert (info.value.status, info.value.message) == (507, "Worker died.")
    # max_retry_timeout_s=0: no restart; the version now has no worker at all
    await eventually(lambda: pool.workers()[0].status == WorkerStatus.STOPPED)
    assert pool.workers()[0].pid is None
    with pytest.raises(ServiceUnavailable):
        await pool.predict(make_request("r"))


@pytest.mark.asyncio
async def test_response_timeout_kills_and_restarts_the_worker(make_pool) -> None:
    pool: WorkerPool = make_pool(response_timeout_s=0.5)
    await pool.scale(1)
    [before] = pool.workers()
    start = time.monotonic()
    with pytest.raises(WorkerDied) as info:
        await pool.predict(make_request("slow", "sleep:60"))
    assert time.monotonic() - start < 5
    assert (info.value.status, info.value.message) == (500, "Worker died.")  # killed by us: not an OOM
    await eventually(lambda: not alive(before.pid))
    response = await asyncio.wait_for(pool.predict(make_request("next", "x")), 20)
    assert body(response)["pid"] != before.pid


@pytest.mark.asyncio
async def test_load_failure_raises_the_workers_error(make_pool) -> None:
    pool: WorkerPool = make_pool(handler="fail_load:507:Out of resources")
    with pytest.raises(WorkerError) as info:
        await pool.scale(1, wait=True)
    assert (info.value.status, info.value.message) == (507, "Out of resources")
    [worker] = pool.workers()
    assert worker.status in (WorkerStatus.STOPPED, WorkerStatus.LOADING)  # retrying with back-off


@pytest.mark.asyncio
async def test_measured_workers_carry_their_resident_memory(make_pool) -> None:
    pool: WorkerPool = make_pool()
    await pool.scale(1)
    [plain] = pool.workers()
    [measured] = await pool.measured_workers()
    assert plain.memory == 0  # workers() never calls psutil on the event loop
    assert measured.memory > 2**20  # a live Python process: more than a MiB resident


@pytest.mark.asyncio
async def test_a_deep_temp_folder_does_not_stop_the_workers(make_pool, tmp_path: Path, monkeypatch) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))  # sockets there would be longer than the OS allows
    pool: WorkerPool = make_pool()
    await pool.scale(1)
    assert body(await pool.predict(make_request("r", "x")))["id"] == "r"


@pytest.mark.asyncio
async def test_client_timeout_bounds_the_wait_in_the_queue_only(make_pool) -> None:
    pool: WorkerPool = make_pool(client_timeout_ms=300)
    await pool.scale(1)
    busy = asyncio.create_task(pool.predict(make_request("busy", "sleep:1.5")))
    await asyncio.sleep(0.2)
    assert pool.queue_depth == 0 and not busy.done()  # in flight
    with pytest.raises(RequestTimeout) as info:
        await pool.predict(make_request("late", "x"))
    assert info.value.status == 408 and "300 ms" in (info.value.message or "")
    assert pool.queue_depth == 0
    assert body(await busy)["id"] == "busy"  # in flight for 1.5 s: not cut by the queue deadline
    assert body(await pool.predict(make_request("next", "x")))["id"] == "next"


@pytest.mark.asyncio
async def test_a_version_in_a_crash_loop_is_not_healthy(make_pool) -> None:
    pool: WorkerPool = make_pool(handler="fail_load:500:broken")
    await pool.scale(1, wait=False)
    assert pool.healthy() and not pool.crash_looping()  # loading for the first time: nothing failed yet
    await eventually(lambda: pool.crash_looping(), timeout=20)
    assert not pool.healthy()  # TorchServe would still say Healthy here (pytorch/serve#2099)


@pytest.mark.asyncio
async def test_a_worker_that_recovers_is_healthy_again(make_pool) -> None:
    pool: WorkerPool = make_pool()
    await pool.scale(1)
    with pytest.raises(WorkerDied):
        await pool.predict(make_request("boom", "crash"))
    await eventually(lambda: pool.crash_looping(), timeout=10)  # dead, restarting after its back-off
    assert not pool.healthy()
    await eventually(lambda: pool.workers()[0].status == WorkerStatus.READY, timeout=20)
    assert pool.healthy() and not pool.crash_looping()


@pytest.mark.asyncio
async def test_startup_timeout_kills_the_loading_worker(make_pool) -> None:
    pool: WorkerPool = make_pool(handler="sleep_load:30", startup_timeout_s=0.5)
    with pytest.raises(WorkerDied):
        await pool.scale(1, wait=True)
    assert all(w.pid is None or not alive(w.pid) for w in pool.workers())


@pytest.mark.asyncio
async def test_scale_timeout_raises_request_timeout(make_pool) -> None:
    from server.errors import RequestTimeout

    pool: WorkerPool = make_pool(handler="sleep_load:30")
    with pytest.raises(RequestTimeout):
        await pool.scale(1, wait=True, timeout=0.5)
    await pool.scale(0)
    assert pool.workers() == []


@pytest.mark.asyncio
async def test_scale_up_and_down_changes_workers_and_processes(make_pool) -> None:
    me = psutil.Process()
    pool: WorkerPool = make_pool()
    await pool.scale(3)
    infos = pool.workers()
    assert len(infos) == 3 and (pool.min_workers, pool.max_workers) == (3, 3)
    ids = [w.id for w in infos]
    assert ids == sorted(ids) and len(set(ids)) == 3 and min(ids) >= 9000
    assert all(w.status == WorkerStatus.READY and w.gpu is None for w in infos)
    assert all(abs(w.start_time - time.time()) < 60 for w in infos)
    pids = [w.pid for w in infos]
    assert all(pid is not None and alive(pid) for pid in pids)
    assert set(pids) <= {p.pid for p in me.children(recursive=True)}

    await pool.scale(1)  # newest first
    assert [w.id for w in pool.workers()] == ids[:1]
    assert alive(pids[0]) and not alive(pids[1]) and not alive(pids[2])
    assert set(pids[1:]).isdisjoint(p.pid for p in me.children(recursive=True))

    await pool.scale(2, 4)
    assert len(pool.workers()) == 2 and (pool.min_workers, pool.max_workers) == (2, 4)
    await pool.scale(1, 4)  # within [min, max]: nothing to do
    assert len(pool.workers()) == 2
    await pool.scale(0, 1)
    assert [w.id for w in pool.workers()] == ids[:1]
    await pool.scale(0)
    assert pool.workers() == []
    assert not alive(pids[0])
    with pytest.raises(ValueError):
        await pool.scale(2, 1)


@pytest.mark.asyncio
async def test_scale_down_lets_the_in_flight_batch_finish(make_pool) -> None:
    pool: WorkerPool = make_pool()
    await pool.scale(1)
    [worker] = pool.workers()
    slow = asyncio.create_task(pool.predict(make_request("slow", "sleep:0.5")))
    await eventually(lambda: pool.queue_depth == 0)
    await asyncio.sleep(0.1)
    await pool.scale(0)
    assert body(await slow)["id"] == "slow"
    assert not alive(worker.pid)


@pytest.mark.asyncio
async def test_close_leaves_no_child_process_and_no_socket(make_pool) -> None:
    pool: WorkerPool = make_pool(batch_size=1)
    await pool.scale(2)
    pids = [w.pid for w in pool.workers()]
    socket_dir = pool._socket_dir
    assert socket_dir is not None and socket_dir.is_dir()
    assert socket_dir.stat().st_mode & 0o777 == 0o700
    in_flight = [asyncio.create_task(pool.predict(make_request(f"s{i}", "sleep:30"))) for i in range(2)]
    await eventually(lambda: pool.queue_depth == 0)
    queued = asyncio.create_task(pool.predict(make_request("queued", "x")))
    await asyncio.sleep(0.1)
    start = time.monotonic()
    await pool.close()
    assert time.monotonic() - start < 10
    for task in in_flight:
        with pytest.raises(WorkerDied):
            await task
    with pytest.raises(ServiceUnavailable):
        await queued
    assert not any(alive(pid) for pid in pids)
    assert psutil.Process().children(recursive=True) == []
    assert not socket_dir.exists()
    assert pool.workers() == []
    with pytest.raises(ServiceUnavailable):
        await pool.predict(make_request("late"))


@pytest.mark.asyncio
async def test_given_socket_dir_is_kept_but_emptied(make_pool, tmp_path: Path) -> None:
    socket_dir = tmp_path / "socks"
    pool: WorkerPool = make_pool(pool_kwargs={"socket_dir": socket_dir})
    await pool.scale(1)
    await pool.predict(make_request("r", "x"))
    await pool.close()
    assert socket_dir.is_dir() and list(socket_dir.iterdir()) == []


@pytest.mark.asyncio
async def test_worker_environment_gpu_and_cwd(make_pool) -> None:
    pool: WorkerPool = make_pool(pool_kwargs={"gpu_ids": (0, 1)})
    await pool.scale(2)
    assert [w.gpu for w in pool.workers()] == [0, 1]
    seen: dict[int, dict[str, Any]] = {}
    for i in range(20):
        data = body(await pool.predict(make_request(f"r{i}", "x")))
        seen[data["pid"]] = data
        if len(seen) == 2:
            break
    expected_threads = str(max(1, (os.cpu_count() or 1) // 2))
    by_pid = {w.pid: w.gpu for w in pool.workers()}
    for pid, data in seen.items():
        assert data["gpu_id"] == by_pid[pid]
        assert data["threads"] == expected_threads
        assert data["cwd"] == pool.spec.model_dir
        assert data["model_version"] == "1.0"

    env = dict(os.environ, TSC_TORCH_THREADS="7")
    other: WorkerPool = make_pool(pool_kwargs={"env": env})
    await other.scale(1)
    data = body(await other.predict(make_request("r", "x")))
    assert (data["threads"], data["gpu_id"]) == ("7", -1)


@pytest.mark.asyncio
async def test_worker_output_reaches_model_log_with_its_thread_name(make_pool, caplog) -> None:
    caplog.set_level(logging.INFO)
    pool: WorkerPool = make_pool()
    await pool.scale(1)
    [worker] = pool.workers()
    await pool.predict(make_request("r", "print:hello from the handler"))
    thread = f"W-{worker.id}-m_1.0"

    def lines(level: int, suffix: str) -> list[str]:
        records = [r for r in caplog.records if r.name == "MODEL_LOG" and r.levelno == level]
        return [r.getMessage() for r in records if getattr(r, "ts_thread", None) == thread + suffix]

    await eventually(lambda: "hello from the handler" in lines(logging.WARNING, "-stderr"))
    await eventually(lambda: "hello from the handler" in lines(logging.INFO, "-stdout"))
    stdout = lines(logging.INFO, "-stdout")
    assert stdout[:3] == [f"[PID]{worker.pid}", "Torch worker started.", "echo service loading m"]
    assert "echo service stderr m" in lines(logging.WARNING, "-stderr")
    events = [r for r in caplog.records if r.name == "server.runtime.pool"]
    assert events and all(getattr(r, "ts_thread", None) == thread for r in events)


@pytest.mark.asyncio
async def test_streamed_replies_reach_their_requests_in_order(make_pool) -> None:
    pool: WorkerPool = make_pool(batch_size=2, max_batch_delay_ms=300)

    async def collect(request_id: str) -> list[bytes]:
        return [r.body async for r in pool.predict_stream(make_request(request_id, "stream:3"))]

    await pool.scale(1)
    a, b = await asyncio.gather(collect("a"), collect("b"))  # one batch of two streamed requests
    assert a == [b"a:part0", b"a:part1", b"a:part2", b"a:done"]
    assert b == [b"b:part0", b"b:part1", b"b:part2", b"b:done"]
    parts: list[Response] = []
    final = await pool.predict(make_request("c", "stream:2"), on_intermediate=parts.append)
    assert [p.body for p in parts] == [b"c:part0", b"c:part1"] and final.body == b"c:done"
    assert ("ts_stream_next", "true") in parts[0].headers and ("ts_stream_next", "false") in final.headers
    # the connection is still in step: a plain request gets its own plain answer
    assert [body(r)["id"] async for r in pool.predict_stream(make_request("d", "x"))] == ["d"]


@pytest.mark.asyncio
async def test_close_kills_a_worker_that_ignores_sigterm(make_pool) -> None:
    pool: WorkerPool = make_pool()
    await pool.scale(1)
    [worker] = pool.workers()
    stuck = asyncio.create_task(pool.predict(make_request("stuck", "stubborn:60")))
    await eventually(lambda: pool.queue_depth == 0)
    await asyncio.sleep(0.2)
    start = time.monotonic()
    await pool.close(timeout=0.5)
    assert time.monotonic() - start < 5
    with pytest.raises(WorkerDied):
        await stuck
    assert not alive(worker.pid)
    assert psutil.Process().children(recursive=True) == []


@pytest.mark.asyncio
async def test_restarts_follow_the_fibonacci_back_off(make_pool, caplog) -> None:
    caplog.set_level(logging.INFO, logger="server.runtime.pool")
    pool: WorkerPool = make_pool(handler="fail_load:500:nope")
    await pool.scale(1, wait=False)

    def delays() -> list[str]:
        messages = [r.getMessage() for r in caplog.records]
        return [m.rsplit(" in ", 1)[1] for m in messages if m.startswith("Retry worker")]

    start = time.monotonic()
    await eventually(lambda: len(delays()) >= 3, timeout=15)
    assert delays()[:3] == ["1 seconds.", "1 seconds.", "2 seconds."]
    assert time.monotonic() - start >= 2  # the first two retries really waited 1 s each
    assert any("Load model failed" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_a_slot_says_why_its_last_process_failed_until_one_loads(make_pool) -> None:
    broken: WorkerPool = make_pool(handler="fail_load:500:no such device")
    await broken.scale(1, wait=False)
    assert broken.workers()[0].failure is None  # nothing failed yet
    await eventually(lambda: broken.workers()[0].failure is not None, timeout=20)
    assert broken.workers()[0].failure == "code 500: no such device"

    pool: WorkerPool = make_pool()
    await pool.scale(1)
    assert pool.workers()[0].failure is None
    with pytest.raises(WorkerDied):
        await pool.predict(make_request("boom", "crash"))
    await eventually(lambda: pool.workers()[0].failure is not None)
    assert "exit code 3" in (pool.workers()[0].failure or "")
    await eventually(lambda: pool.workers()[0].status == WorkerStatus.READY, timeout=20)
    assert pool.workers()[0].failure is None  # a process of the slot loaded the model again


@pytest.mark.asyncio
async def test_each_batch_gets_its_share_of_the_cores(make_pool) -> None:
    cores = CoreShare(cores=4)
    pool: WorkerPool = make_pool(pool_kwargs={"cores": cores, "env": without_thread_settings()})
    await pool.scale(2)

    async def threads_of(data: str) -> int:
        response = await pool.predict(make_request(data, data))
        return json.loads(response.body)["batch_threads"]

    assert await threads_of("alone") == 4  # a worker alone in its work uses every core
    both = await asyncio.gather(threads_of("sleep:0.5"), threads_of("sleep:0.5"))
    assert sorted(both) == [2, 4]  # the second batch to start while the first runs gets half
    assert await threads_of("alone again") == 4 and cores.running == 0


@pytest.mark.asyncio
async def test_threads_set_by_the_user_stay_as_given(make_pool) -> None:
    pool: WorkerPool = make_pool(pool_kwargs={"env": dict(without_thread_settings(), OMP_NUM_THREADS="1")})
    await pool.scale(1)
    response = await pool.predict(make_request("x", "x"))
    assert json.loads(response.body)["batch_threads"] == 0


def without_thread_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "TSC_TORCH_THREADS")}
