"""Coalesce calls made close together into one batch call (one Redis round trip).

Runners that finish in the same moment each add their item; a single drain task sends
everything queued so far as one batch, and whatever arrives meanwhile goes in the next.
Under load batches grow by themselves; when idle a call is sent at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Turns concurrent ``add``/``submit`` calls into calls of ``flush(batch) -> results``."""

    def __init__(
        self, flush: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch: int = 512
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._waiting: list[tuple[T, Callable[[Any], None]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue one item and wait for its result (or its batch's exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.add(item, functools.partial(_settle, future))
        return await future

    def add(self, item: T, done: Callable[[R | BaseException], None]) -> None:
        """Queue one item; ``done`` is called with its result, or with its batch's exception
        (a cancelled write included), right after the batch's round trip: no future and
        no extra trip around the event loop per item."""
        self._waiting.append((item, done))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    @property
    def pending(self) -> bool:
        """Whether items are queued or being written."""
        return bool(self._waiting) or (self._drainer is not None and not self._drainer.done())

    async def drained(self) -> None:
        """Wait until everything queued, now or meanwhile, has been written."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.wait([self._drainer])

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                results = await self._flush([item for item, _ in batch])
            except BaseException as exc:  # every item hears of its batch's error
                for _, done in batch:
                    done(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, done), result in zip(batch, results, strict=True):
                done(result)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, asyncio.CancelledError):
        future.cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
