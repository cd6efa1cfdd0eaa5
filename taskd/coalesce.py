"""Coalesce calls made close together into one batch call (one Redis round trip).

Runners that finish in the same moment each await ``submit(item)``; a single drain task
sends everything queued so far as one batch, and whatever arrives meanwhile goes in the
next. Under load batches grow by themselves; when idle a call is sent at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Turns concurrent ``submit`` calls into calls of ``flush(batch) -> results``."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R]]], max_batch: int = 512):
        self._flush = flush
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue one item and wait for its result (or its batch's exception)."""
        return await self.submit_nowait(item)

    def submit_nowait(self, item: T) -> asyncio.Future[R]:
        """Queue one item; its future gets the result (or its batch's exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                results = await self._flush([item for item, _ in batch])
            except Exception as exc:  # every waiter gets the batch's error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
