"""The Coalescer: items added in the same moment go out in one batch call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskd.engine.coalesce import Coalescer


async def test_items_added_together_are_flushed_in_one_call() -> None:
    calls: list[list[int]] = []

    async def flush(batch: list[int]) -> list[int]:
        calls.append(batch)
        await asyncio.sleep(0)
        return [i * 10 for i in batch]

    coalescer: Coalescer[int, int] = Coalescer(flush)
    heard: list[Any] = []
    for i in range(5):
        coalescer.add(i, heard.append)
    assert coalescer.pending
    later = asyncio.ensure_future(coalescer.submit(5))  # while the first batch is written
    await coalescer.drained()
    assert heard == [0, 10, 20, 30, 40]
    assert await later == 50
    assert calls == [[0, 1, 2, 3, 4], [5]]
    assert not coalescer.pending


async def test_a_failed_batch_reaches_every_item_and_the_next_batch_still_goes() -> None:
    async def flush(batch: list[str]) -> list[str]:
        if "bad" in batch:
            raise ConnectionError("gone")
        return batch

    coalescer: Coalescer[str, str] = Coalescer(flush)
    heard: list[Any] = []
    coalescer.add("bad", heard.append)
    coalescer.add("x", heard.append)
    with pytest.raises(ConnectionError):
        await coalescer.submit("y")  # same batch as the bad one
    assert [type(h) for h in heard] == [ConnectionError, ConnectionError]
    assert await coalescer.submit("fine") == "fine"
