"""Per-model-version job queue and batch aggregation (spec §12.5), asyncio only.

A `Batcher` is a bounded FIFO queue plus the two batching knobs, nothing else:

* `put` appends a job or raises `QueueFull` when ``capacity`` jobs are already waiting (the pool turns that
  into TorchServe's 503);
* `get_batch` blocks until the first job arrives, then collects up to ``batch_size - 1`` more, waiting at
  most ``max_batch_delay_ms`` in total measured from the moment it took the first job; a partial batch is
  returned when that window expires.

Several consumers (one per worker) may call `get_batch` at once; like TorchServe's ``Model.pollBatch`` only
one of them collects at a time, so batches fill up instead of being split between idle workers. A consumer
cancelled while collecting puts the jobs it had taken back at the head of the queue, in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["Batcher", "QueueFull"]

T = TypeVar("T")


class QueueFull(Exception):
    """The job queue already holds ``capacity`` jobs."""


class Batcher(Generic[T]):
    """A bounded FIFO of jobs handed out in batches of at most ``batch_size``."""

    def __init__(self, batch_size: int = 1, max_batch_delay_ms: float = 100.0, capacity: int = 100) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_batch_delay_ms < 0:
            raise ValueError(f"max_batch_delay_ms must not be negative, got {max_batch_delay_ms}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.batch_size = batch_size
        self.max_batch_delay_ms = max_batch_delay_ms
        self.capacity = capacity
        self._jobs: deque[T] = deque()
        self._not_empty = asyncio.Event()
        self._collector = asyncio.Lock()  # one consumer collects a batch at a time

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, job: T) -> None:
        """Queue ``job`` at the tail; raise `QueueFull` when the queue is at capacity."""
        if len(self._jobs) >= self.capacity:
            raise QueueFull(f"job queue is full ({self.capacity} jobs)")
        self._jobs.append(job)
        self._not_empty.set()

    def put_front(self, jobs: Iterable[T]) -> None:
        """Put ``jobs`` back at the head of the queue, keeping their order (capacity is not checked)."""
        self._jobs.extendleft(reversed(list(jobs)))
        if self._jobs:
            self._not_empty.set()

    def remove(self, job: T) -> bool:
        """Drop a still-queued ``job`` (e.g. its caller went away); False when it is no longer queued."""
        try:
            self._jobs.remove(job)
        except ValueError:
            return False
        return True

    def drain(self) -> list[T]:
        """Take every queued job out of the queue (for failing them when nobody will serve them)."""
        jobs = list(self._jobs)
        self._jobs.clear()
        self._not_empty.clear()
        return jobs

    def _pop(self) -> T | None:
        if self._jobs:
            return self._jobs.popleft()
        self._not_empty.clear()
        return None

    def ready_batch(self) -> list[T] | None:
        """A full batch (or one job when ``batch_size`` is 1) if one is queued and nobody is collecting, at
        once and without waiting; else None (then `get_batch` waits as the batching rules say)."""
        if self._collector.locked() or len(self._jobs) < self.batch_size:
            return None
        batch = [self._jobs.popleft() for _ in range(self.batch_size)]
        if not self._jobs:
            self._not_empty.clear()
        return batch

    async def get_batch(self) -> list[T]:
        """Block for the first job, then gather up to ``batch_size - 1`` more within the batch delay."""
        async with self._collector:
            batch: list[T] = []
            try:
                while (first := self._pop()) is None:
                    await self._not_empty.wait()
                batch.append(first)
                if self.batch_size == 1:
                    return batch
                loop = asyncio.get_running_loop()
                deadline = loop.time() + self.max_batch_delay_ms / 1000.0
                while len(batch) < self.batch_size:
                    job = self._pop()
                    if job is not None:
                        batch.append(job)
                        continue
                    if loop.time() >= deadline:
                        break
                    try:
                        async with asyncio.timeout_at(deadline):
                            await self._not_empty.wait()
                    except TimeoutError:
                        break
                return batch
            except BaseException:
                self.put_front(batch)
                raise
