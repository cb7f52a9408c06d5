from __future__ import annotations

import asyncio

import pytest

from server.runtime.batcher import Batcher, QueueFull


@pytest.mark.asyncio
async def test_blocks_for_the_first_job_then_returns_it_alone_with_batch_size_1() -> None:
    batcher: Batcher[int] = Batcher(batch_size=1, max_batch_delay_ms=10_000)
    getter = asyncio.create_task(batcher.get_batch())
    await asyncio.sleep(0.05)
    assert not getter.done()
    batcher.put(1)
    batcher.put(2)
    assert await asyncio.wait_for(getter, 1) == [1]
    assert await batcher.get_batch() == [2]


@pytest.mark.asyncio
async def test_full_batch_is_returned_without_waiting_for_the_delay() -> None:
    batcher: Batcher[int] = Batcher(batch_size=4, max_batch_delay_ms=10_000)
    for i in range(6):
        batcher.put(i)
    assert await asyncio.wait_for(batcher.get_batch(), 1) == [0, 1, 2, 3]
    assert len(batcher) == 2


@pytest.mark.asyncio
async def test_partial_batch_is_flushed_when_the_delay_expires() -> None:
    loop = asyncio.get_running_loop()
    batcher: Batcher[int] = Batcher(batch_size=8, max_batch_delay_ms=200)
    batcher.put(1)
    start = loop.time()
    getter = asyncio.create_task(batcher.get_batch())
    await asyncio.sleep(0.05)
    batcher.put(2)  # arrives inside the window: joins the batch
    batch = await getter
    elapsed = loop.time() - start
    assert batch == [1, 2]
    assert 0.19 <= elapsed < 2  # the window (0.2 s) was waited for; the upper bound only catches a hang


@pytest.mark.asyncio
async def test_delay_is_measured_from_the_first_job_not_from_the_call() -> None:
    loop = asyncio.get_running_loop()
    batcher: Batcher[int] = Batcher(batch_size=8, max_batch_delay_ms=150)
    getter = asyncio.create_task(batcher.get_batch())
    await asyncio.sleep(0.3)  # waiting for the first job does not eat into the window
    first_at = loop.time()
    batcher.put(1)
    await asyncio.sleep(0.05)
    batcher.put(2)
    assert await getter == [1, 2]
    assert loop.time() - first_at >= 0.14


@pytest.mark.asyncio
async def test_zero_delay_takes_only_what_is_queued() -> None:
    batcher: Batcher[int] = Batcher(batch_size=8, max_batch_delay_ms=0)
    batcher.put(1)
    batcher.put(2)
    assert await asyncio.wait_for(batcher.get_batch(), 1) == [1, 2]


@pytest.mark.asyncio
async def test_capacity_is_enforced() -> None:
    batcher: Batcher[int] = Batcher(capacity=2)
    batcher.put(1)
    batcher.put(2)
    with pytest.raises(QueueFull):
        batcher.put(3)
    assert await batcher.get_batch() == [1]
    batcher.put(3)
    assert len(batcher) == 2


@pytest.mark.asyncio
async def test_fifo_order_across_batches() -> None:
    batcher: Batcher[int] = Batcher(batch_size=3, max_batch_delay_ms=0, capacity=100)
    for i in range(10):
        batcher.put(i)
    out: list[int] = []
    while len(batcher):
        out += await batcher.get_batch()
    assert out == list(range(10))


@pytest.mark.asyncio
async def test_one_consumer_collects_at_a_time() -> None:
    """Two idle consumers must not split a burst: the first fills its batch, the second gets the rest."""
    batcher: Batcher[int] = Batcher(batch_size=4, max_batch_delay_ms=300)
    first = asyncio.create_task(batcher.get_batch())
    second = asyncio.create_task(batcher.get_batch())
    await asyncio.sleep(0.01)
    for i in range(6):
        batcher.put(i)
        await asyncio.sleep(0.01)
    assert await first == [0, 1, 2, 3]
    assert await second == [4, 5]


@pytest.mark.asyncio
async def test_cancelled_collector_puts_its_jobs_back_in_order() -> None:
    batcher: Batcher[int] = Batcher(batch_size=8, max_batch_delay_ms=10_000)
    getter = asyncio.create_task(batcher.get_batch())
    batcher.put(1)
    await asyncio.sleep(0.01)
    batcher.put(2)
    await asyncio.sleep(0.01)
    batcher.put(3)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    assert len(batcher) == 3
    batcher.batch_size, batcher.max_batch_delay_ms = 2, 0
    assert await batcher.get_batch() == [1, 2]
    assert await batcher.get_batch() == [3]


@pytest.mark.asyncio
async def test_remove_drain_and_put_front() -> None:
    batcher: Batcher[str] = Batcher(capacity=10)
    for job in "abcd":
        batcher.put(job)
    assert batcher.remove("b")
    assert not batcher.remove("zz")
    batcher.put_front(["x", "y"])
    assert batcher.drain() == ["x", "y", "a", "c", "d"]
    assert len(batcher) == 0
    getter = asyncio.create_task(batcher.get_batch())
    await asyncio.sleep(0.01)
    assert not getter.done()  # drained: blocks again
    batcher.put("e")
    assert await asyncio.wait_for(getter, 1) == ["e"]


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        Batcher(batch_size=0)
    with pytest.raises(ValueError):
        Batcher(max_batch_delay_ms=-1)
    with pytest.raises(ValueError):
        Batcher(capacity=0)
