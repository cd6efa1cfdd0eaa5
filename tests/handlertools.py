"""Calling built-in handlers directly (as the pool does) and running them in a real pool."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from taskd.config import Settings
from taskd.engine.context import Context
from taskd.engine.pool import PoolConfig, WorkerPool
from taskd.engine.registry import Registry
from taskd.engine.supervisor import Supervisor, SupervisorConfig
from taskd.model import FINISHED, Status, Task, new_task_id
from taskd.store import Store
from tests.conftest import eventually

BUILTINS = Registry.from_modules([])
_consumers = itertools.count()


def settings_at(data_dir: Path, **sections: dict[str, Any]) -> Settings:
    """Default settings under ``data_dir`` with some sections changed, e.g.
    ``api_call={"allow_hosts": ("127.0.0.1",)}``."""
    base = Settings(data_dir=data_dir)
    changed = {
        name: dataclasses.replace(getattr(base, name), **values)
        for name, values in sections.items()
    }
    return dataclasses.replace(base, **changed)


class Progress:
    """A progress sink that records every update, as the pool's would write them."""

    def __init__(self) -> None:
        self.updates: list[tuple[int, str]] = []

    async def __call__(self, task: Task, percent: int, message: str) -> int:
        self.updates.append((percent, message))
        return 1

    @property
    def percents(self) -> list[int]:
        """The reported percentages, in order."""
        return [p for p, _ in self.updates]


def context_for(
    task_type: str,
    payload: dict[str, Any],
    settings: Settings | None = None,
    store: Store | None = None,
) -> tuple[Context, Progress]:
    """A Context like the pool builds for one attempt, with a recording progress sink."""
    task = Task(
        id=new_task_id(),
        name=task_type,
        task_type=task_type,
        queue="default",
        priority=5,
        payload=payload,
        status=Status.PROCESSING,
        attempt=1,
    )
    sink = Progress()
    ctx = Context(
        task,
        sink,
        interval_s=0,
        loop=asyncio.get_running_loop(),
        settings=settings,
        store=store,
    )
    return ctx, sink


async def call(
    task_type: str,
    payload: dict[str, Any],
    settings: Settings | None = None,
    store: Store | None = None,
    registry: Registry = BUILTINS,
) -> tuple[Any, Context, Progress]:
    """Run one handler attempt directly; returns (result, context, progress)."""
    found = registry.get(task_type)
    assert found is not None, task_type
    ctx, sink = context_for(task_type, payload, settings, store)
    return await found.func(ctx, payload), ctx, sink


@asynccontextmanager
async def running_pool(
    store: Store, queue: str, settings: Settings, registry: Registry = BUILTINS
) -> AsyncIterator[WorkerPool]:
    """A real WorkerPool (with settings, unlike tests.pooltools) and its supervisor (which
    promotes retries) serving ``queue``."""
    stop = asyncio.Event()
    consumer = f"test:{queue}:{next(_consumers)}"
    config = PoolConfig(
        queues=(queue,),
        concurrency=2,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        shutdown_grace_s=5.0,
        block_ms=100,
    )
    pool = WorkerPool(store, registry, consumer, config, settings)
    supervisor = Supervisor(
        store, consumer, SupervisorConfig(lease_s=5.0, sweep_interval_s=0.05, queues=(queue,))
    )
    jobs = [asyncio.create_task(pool.run(stop)), asyncio.create_task(supervisor.run(stop))]
    await pool.started.wait()
    try:
        yield pool
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*jobs), timeout=30)


async def finished(store: Store, task_id: str, timeout_s: float = 15.0) -> Task:
    """Poll until the task is finished and return it."""

    async def check() -> Task | None:
        task = await store.get(task_id)
        return task if task.status in FINISHED else None

    result: Task = await eventually(check, timeout_s)
    return result


class StrictHTML(HTMLParser):
    """Checks that every element is closed, in order (void elements excepted)."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def check_html(text: str) -> StrictHTML:
    """Parse ``text``; assert it is well-formed and return the parser (for ``seen`` tags)."""
    parser = StrictHTML()
    parser.feed(text)
    parser.close()
    assert parser.problems == []
    assert parser.stack == []
    return parser
