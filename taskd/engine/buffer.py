"""The prefetch buffer between a pool's fetcher and its runners.

Tasks wait most-urgent first, FIFO within a level by fetch order, so a priority-10 task
fetched behind reserved low ones overtakes them. Tasks the fetch already started for idle
runners (status processing) go before every reserved one: a runner waits for each. The
buffer also knows how many runners wait on it, which is how many tasks the next fetch
may start at once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

from taskd.model import Status, Task

STARTED = -100  # sorts before every priority: tasks the fetch started for idle runners
LAST = 1 << 30  # sorts after every priority: the runners' stop signals


class PrefetchBuffer:
    """Fetched tasks not yet taken by a runner, and the runners waiting for one."""

    def __init__(self) -> None:
        self._ready: asyncio.PriorityQueue[tuple[int, int, Task | None]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._by_priority: Counter[int] = Counter()  # priority -> tasks waiting
        self._ids: set[str] = set()
        self._waiting_runners = 0

    def __contains__(self, task_id: object) -> bool:
        """Whether the task waits in the buffer (fetched, not yet taken by a runner)."""
        return task_id in self._ids

    def put(self, tasks: list[Task]) -> None:
        """Add fetched tasks; started ones are taken first."""
        for task in tasks:
            self._ids.add(task.id)
            first = STARTED if task.status == Status.PROCESSING else 0
            self._ready.put_nowait((first - task.priority, next(self._order), task))
            self._by_priority[task.priority] += 1

    def stop_runners(self, count: int) -> None:
        """Queue ``count`` stop signals behind every task: each runner ends at its next take."""
        for _ in range(count):
            self._ready.put_nowait((LAST, next(self._order), None))

    async def take(self) -> Task | None:
        """The most urgent task, waiting for one; None is a runner's stop signal."""
        self._waiting_runners += 1
        try:
            _, _, task = await self._ready.get()
        finally:
            self._waiting_runners -= 1
        if task is not None:
            self._forget(task)
        return task

    def take_all(self) -> list[Task]:
        """Empty the buffer (shutdown): the tasks that were in it, most urgent first."""
        taken = []
        while not self._ready.empty():
            _, _, task = self._ready.get_nowait()
            if task is not None:
                self._forget(task)
                taken.append(task)
        return taken

    def idle_runners(self) -> int:
        """Runners that would take a task this moment: those waiting, less the tasks
        already here for them."""
        return max(0, self._waiting_runners - self._ready.qsize())

    def least_urgent(self) -> int | None:
        """The lowest priority among the tasks waiting (None if none)."""
        return min((p for p, n in self._by_priority.items() if n > 0), default=None)

    def _forget(self, task: Task) -> None:
        self._by_priority[task.priority] -= 1
        self._ids.discard(task.id)
