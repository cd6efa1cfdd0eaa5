"""Taking tasks the way a worker does, step by step, for tests of the scripts."""

from __future__ import annotations

import orjson

from taskd.model import Task
from taskd.store import Store
from taskd.store.replies import raise_for


async def take(
    store: Store, queue: str, consumer: str, count: int, *, limits: str = ""
) -> list[Task]:
    """Reserve up to ``count`` tasks for ``consumer`` and start them (reserved ->
    processing), as a worker's fetcher and runners do."""
    fetched = await store.reserve_ready(queue, consumer, count, limits)
    return [task for task in await store.begin_many(consumer, fetched.tasks) if task is not None]


async def complete(store: Store, task: Task, result: object) -> None:
    """Record one success as a runner does (StaleAttempt / TaskNotFound when refused)."""
    (reply,) = await store.complete_many([(task, orjson.dumps(result))])
    raise_for(reply, task_id=task.id, attempt=task.attempt)
