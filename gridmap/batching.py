"""Group concurrent requests into batches: one transaction and one commit for many writes.

A database write costs mostly per transaction (round trips, the commit's WAL flush), not per
row. `Batcher` lets many concurrent requests share one: each request submits its item and
awaits its own outcome; up to `writers` batches run at a time, each in a worker thread with
its own database session. There is no timer: while the writers are busy, new items queue, and
a free writer takes everything queued (at most `max_batch`). At low load a batch is one item
and nothing waits; under load batches grow by themselves.

A batch that fails as a whole (a deadlock, a constraint the checks did not foresee) is tried
again item by item, so one bad item fails alone. An item's outcome is only set after its
batch committed: an answered request is durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger("gridmap.batching")

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Run `process(items) -> outcomes` (same length, same order) on batches of submitted items."""

    def __init__(self, process: Callable[[Sequence[T]], list[R]], *, writers: int = 2, max_batch: int = 64,
                 name: str = "batch") -> None:  # fmt: skip
        if writers < 1 or max_batch < 1:
            raise ValueError("writers and max_batch must be at least 1")
        self.process, self.writers, self.max_batch = process, writers, max_batch
        self._executor = ThreadPoolExecutor(writers, thread_name_prefix=name)
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0  # counters for tests and benchmarks
        self.items = 0

    async def submit(self, item: T) -> R:
        """Queue `item` and wait for its outcome (an exception from `process` is raised here)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        if loop is not self._loop:  # a second event loop (tests): no sharing across loops
            return (await loop.run_in_executor(self._executor, self._run, [item]))[0]
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if self._running < self.writers:
            self._running += 1
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                try:
                    outcomes = await loop.run_in_executor(
                        self._executor, self._run, [item for item, _ in batch]
                    )
                except BaseException as exc:  # noqa: BLE001 - handed to each waiting request
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._running -= 1

    def _run(self, items: list[T]) -> list[R]:
        self.batches += 1
        self.items += len(items)
        try:
            return self.process(items)
        except Exception:
            if len(items) == 1:
                raise
            log.warning(
                "a batch of %d failed as a whole; retrying its items one by one",
                len(items),
                exc_info=True,
            )
        return [self._single(item) for item in items]

    def _single(self, item: T) -> R:
        try:
            return self.process([item])[0]
        except Exception as exc:  # noqa: BLE001 - the item's own outcome
            return exc  # type: ignore[return-value]

    def close(self) -> None:
        """Finish the running batches, then close `process` if it has a close()."""
        self._executor.shutdown(wait=True, cancel_futures=False)
        closer = getattr(self.process, "close", None)
        if callable(closer):
            closer()
