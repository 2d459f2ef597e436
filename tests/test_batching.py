"""gridmap.batching: concurrent submissions share batches, outcomes keep their order, a bad
item fails alone, and an outcome is only handed out after its batch returned."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from gridmap.batching import Batcher


def test_concurrent_items_are_grouped_and_answered_in_order() -> None:
    seen: list[list[int]] = []

    def process(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        time.sleep(0.05)  # a transaction in flight: the next items queue meanwhile
        return [i * 10 for i in items]

    batcher = Batcher(process, writers=1, max_batch=8)

    async def main() -> list[int]:
        return await asyncio.gather(*(batcher.submit(i) for i in range(20)))

    try:
        assert asyncio.run(main()) == [i * 10 for i in range(20)]
    finally:
        batcher.close()
    assert max(len(b) for b in seen) == 8 and sorted(i for b in seen for i in b) == list(range(20))
    assert (batcher.batches, batcher.items) == (len(seen), 20) and len(seen) <= 4


def test_a_failing_batch_is_retried_item_by_item() -> None:
    calls: list[list[str]] = []

    def process(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("constraint violated")
        return [s.upper() for s in items]

    batcher = Batcher(process, writers=1)
    gate = threading.Event()

    def slow_first(items: Sequence[str]) -> list[str]:
        if items == ["first"]:
            gate.wait(5)
        return process(items)

    batcher.process = slow_first

    async def main() -> list[object]:
        first = asyncio.ensure_future(batcher.submit("first"))
        await asyncio.sleep(0.05)  # "first" is being written; the next three queue as one batch
        rest = [asyncio.ensure_future(batcher.submit(s)) for s in ("a", "bad", "b")]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        out = asyncio.run(main())
    finally:
        batcher.close()
    assert out[0] == "FIRST" and out[1] == "A" and out[3] == "B"
    assert isinstance(out[2], RuntimeError) and str(out[2]) == "constraint violated"
    assert ["a", "bad", "b"] in calls and ["a"] in calls and ["b"] in calls


def test_an_error_of_a_single_item_reaches_its_caller() -> None:
    def process(items: Sequence[int]) -> list[int]:
        raise ValueError("no")

    batcher = Batcher(process)
    try:
        with pytest.raises(ValueError, match="no"):
            asyncio.run(batcher.submit(1))
    finally:
        batcher.close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Batcher(lambda items: list(items), writers=0)
