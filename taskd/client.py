"""The Python client: submit tasks and read them back from any process sharing the Redis."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from taskd import config
from taskd.engine.known import KnownTypes
from taskd.engine.registry import Registry
from taskd.errors import TaskdError, ValidationError
from taskd.flowclient import WorkflowClient, wait_timeout
from taskd.intake import checked_spec
from taskd.model import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    FINISHED,
    QUEUE_NAME,
    SUBMIT_FIELDS,
    Task,
    TaskSpec,
    parse_statuses,
)
from taskd.paging import Cursor
from taskd.store import Store


def embedded_url_file(data_dir: Path) -> Path:
    """Where a running daemon with an embedded server writes that server's URL."""
    return data_dir / "redis" / "url"


def resolve_redis_url(settings: config.Settings) -> str:
    """The configured URL, else the URL of the embedded server a local daemon runs."""
    if settings.redis.url:
        return settings.redis.url
    marker = embedded_url_file(settings.data_dir)
    try:
        return marker.read_text().strip()
    except FileNotFoundError:
        raise TaskdError(
            f"no Redis URL configured and no embedded server running under {settings.data_dir}; "
            "start `taskd serve` or set TASKD_REDIS_URL"
        ) from None


def checked_url(redis_url: object) -> str | None:
    """The ``redis_url`` argument, refused when made if it is not text (it would fail
    later, deep inside the first call)."""
    if redis_url is not None and not isinstance(redis_url, str):
        raise TypeError(f"redis_url must be a URL string or None, not {type(redis_url).__name__}")
    return redis_url


def module_names(handlers: Iterable[str] | None) -> tuple[str, ...] | None:
    """Handler module names; one string is a comma-separated list, as TASKD_HANDLERS and
    ``--handlers`` are (iterated, it would be its characters)."""
    if handlers is None:
        return None
    if isinstance(handlers, str):
        return tuple(name.strip() for name in handlers.split(",") if name.strip())
    return tuple(handlers)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; pass ``next_cursor`` back for the next one."""

    tasks: list[Task]
    next_cursor: str | None


_TYPE_AND_PAYLOAD = frozenset({"task_type", "payload"})


def _own_copy(payload: Any) -> Any:
    """A mapping payload as a dict of our own (the caller may change theirs later);
    anything else as is, for make_spec to refuse."""
    if type(payload) is dict or isinstance(payload, Mapping):  # (the ABC check is slow)
        return dict(payload)
    return payload


class Client(WorkflowClient):
    """Async client. ``redis_url=None`` resolves the URL like ``taskd serve`` does.

    Submits are validated as the HTTP API validates them (:mod:`taskd.intake`): the task
    type must be known — a built-in, a type of the ``handlers`` modules (default: the
    configured ``handlers``, as ``taskd serve`` loads them) or of ``registry``, or one a
    live worker of the target queue runs — and a type known here must pass its schema
    and validator.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        handlers: Iterable[str] | None = None,
        registry: Registry | None = None,
    ) -> None:
        self._url = checked_url(redis_url)
        self._store: Store | None = None
        self._settings: config.Settings | None = None
        self._connecting = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the store is bound to
        self._handlers = module_names(handlers)
        self._registry = registry
        self._registry_lock = threading.Lock()  # (SyncClient validates in many threads)
        self._known: KnownTypes | None = None

    async def __aenter__(self) -> Self:
        await self.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def store(self) -> Store:
        """The connected store (connects on first use, and again on a new event loop)."""
        store = self._store  # (no lock once connected: this is on every call)
        if store is not None and self._loop is asyncio.get_running_loop():
            return store
        return await self._connect()

    async def _connect(self) -> Store:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # First use, or a script's next asyncio.run: the connections of the loop
            # before can no longer be used (a submit written on one created its task,
            # then its reply could not be awaited) nor closed from here; dropped, they
            # are closed when collected.
            self._loop, self._store, self._known = loop, None, None
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent first calls share one connection pool
            if self._store is None:
                url = self._url or resolve_redis_url(self.settings)
                self._store = await Store.connect(url, cluster=self.settings.redis.cluster)
            return self._store

    @property
    def settings(self) -> config.Settings:
        """Settings from the environment (and TASKD_CONFIG), for defaults and the URL."""
        if self._settings is None:
            self._settings = config.load(None, os.environ, {})
        return self._settings

    @property
    def registry(self) -> Registry:
        """The task types this client accepts (built on first use: it imports modules)."""
        if self._registry is None:
            with self._registry_lock:
                if self._registry is None:
                    settings = self.settings
                    modules = self._handlers
                    if modules is None:
                        modules = settings.workers.handlers
                    self._registry = Registry.from_modules(modules, settings=settings)
        return self._registry

    async def close(self) -> None:
        """Close the connection pool."""
        self._known = None
        store, self._store = self._store, None
        if store is not None and self._loop is asyncio.get_running_loop():
            await store.close()  # (one of an ended loop is closed when collected)

    def spec(self, task_type: str, payload: Mapping[str, Any] | None = None, **kw: Any) -> TaskSpec:
        """Validate submit arguments into a TaskSpec as the HTTP API does
        (ValidationError names the field)."""
        run_at = kw.pop("run_at", None)
        if isinstance(run_at, datetime):
            run_at = run_at.isoformat()
        return checked_spec(
            self.registry, self.settings, task_type, _own_copy(payload), run_at=run_at, **kw
        )

    async def submit(
        self,
        task_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        queue: str = DEFAULT_QUEUE,
        delay_s: float | None = None,
        run_at: datetime | str | None = None,
        max_retries: int | None = None,
        timeout_s: float | None = None,
        unique_key: str | None = None,
    ) -> Task:
        """Submit one task; with a ``unique_key`` already used, returns the existing task."""
        spec = self.spec(
            task_type,
            payload,
            name=name,
            priority=priority,
            queue=queue,
            delay_s=delay_s,
            run_at=run_at,
            max_retries=max_retries,
            timeout_s=timeout_s,
            unique_key=unique_key,
        )
        store = await self.store()
        if spec.task_type not in self.known_types.local:
            await self.known_types.check(spec.task_type, spec.queue)
        ((task, _created),) = await store.submit([spec])
        return task

    async def check_types(self, specs: Iterable[TaskSpec], index: bool = False) -> None:
        """Refuse a type nothing can run, as the API does (taskd.engine.known): not built
        in, not of this client's handler modules, not run by a live worker of the queue."""
        await self.store()
        known = self.known_types
        for i, spec in enumerate(specs):
            if spec.task_type in known.local:
                continue
            try:
                await known.check(spec.task_type, spec.queue)
            except ValidationError as exc:
                if not index:
                    raise
                raise ValidationError(
                    f"[{i}].{exc.field}", exc.message.split(": ", 1)[-1]
                ) from None

    @property
    def known_types(self) -> KnownTypes:
        """The API's type check on this client's store and registry (after store())."""
        if self._known is None:
            if self._store is None:
                raise TaskdError("not connected: await client.store() first")
            self._known = KnownTypes(self._store, (t.name for t in self.registry))
        return self._known

    async def submit_many(self, items: Iterable[Mapping[str, Any]]) -> list[Task]:
        """Submit many tasks in one round trip; every item is validated before any is sent."""
        specs = []
        for i, item in enumerate(batch_items(items)):
            if type(item) is not dict and not isinstance(item, Mapping):  # (the ABC is slow)
                raise ValidationError(f"[{i}]", "must be a mapping of submit arguments")
            plain = _TYPE_AND_PAYLOAD.issuperset(item)  # the common shape: no options
            if not plain and not SUBMIT_FIELDS.issuperset(item):
                unknown = sorted(set(item) - SUBMIT_FIELDS)[0]
                raise ValidationError(f"[{i}].{unknown}", "unknown argument")
            task_type: Any = item.get("task_type")  # make_spec validates it
            payload = item.get("payload")
            try:
                if not plain:
                    args = {k: v for k, v in item.items() if k not in _TYPE_AND_PAYLOAD}
                    specs.append(self.spec(task_type, payload, **args))
                    continue
                specs.append(
                    checked_spec(self.registry, self.settings, task_type, _own_copy(payload))
                )
            except ValidationError as exc:
                raise ValidationError(
                    f"[{i}].{exc.field}", exc.message.split(": ", 1)[-1]
                ) from None
        await self.check_types(specs, index=True)
        return [task for task, _ in await (await self.store()).submit(specs)]

    async def get(self, task_id: str) -> Task:
        """One task by id (TaskNotFound if unknown or expired)."""
        return await (await self.store()).get(_task_id(task_id))

    async def list(
        self,
        status: str | Iterable[str] | None = None,
        limit: int = 100,
        cursor: str | None = None,
        queue: str | None = None,
    ) -> Page:
        """Tasks newest first, optionally of some statuses (``"failed,cancelled"`` or a
        list, as the API's ``?status=``); follow ``next_cursor`` for more.

        Bad filters raise ValidationError naming them, as the API answers 422.
        """
        wanted = parse_statuses(status) if status else None
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValidationError("limit", "must be an integer from 1 to 1000")
        _check_queue(queue)
        tasks, nxt = await (await self.store()).list_tasks(
            limit=limit,
            cursor=Cursor.decode(cursor) if cursor else None,
            queue=queue,
            accept=(lambda t: t.status in wanted) if wanted else None,
        )
        return Page(tasks, nxt.encode() if nxt and len(tasks) == limit else None)

    async def stats(self, queue: str | None = None) -> dict[str, int]:
        """Counts per status and totals (O(number of queues))."""
        _check_queue(queue)
        return await (await self.store()).stats(queue)

    async def cancel(self, task_id: str) -> str:
        """Cancel; returns 'cancelled', or 'cancelling' for a running task."""
        return await (await self.store()).cancel(_task_id(task_id))

    async def retry(self, task_id: str) -> Task:
        """Send a failed or cancelled task back to pending."""
        return await (await self.store()).retry(_task_id(task_id))

    async def wait(self, task_id: str, timeout_s: float = 60.0) -> Task:
        """Wait until the task is finished (completed, failed or cancelled) and return it.

        Follows the queue's event stream (blocking reads, no polling sleeps); raises
        TimeoutError when ``timeout_s`` passes first.
        """
        timeout_s = wait_timeout(timeout_s)
        store = await self.store()
        queue = await store.locate(_task_id(task_id))
        deadline = time.monotonic() + timeout_s
        last = (await store.last_event_ids([queue]))[queue]
        while True:
            task = await store.get(task_id, queue)
            if task.status in FINISHED:
                return task
            while True:  # until an event of this task arrives (or a 5 s re-check)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"task {task_id} still {task.status} after {timeout_s}s")
                block_ms = max(1, int(min(left, 5) * 1000))
                events = await store.read_events({queue: last}, block_ms=block_ms)
                if not events:
                    break
                last = events[-1].event_id
                if any(e.task.get("id") == task_id for e in events):
                    break


def batch_items(items: object) -> Iterable[Any]:
    """The items of a batch, as the batch API takes them: one mapping or a string is not
    a batch (iterating it would submit its keys or its characters)."""
    if isinstance(items, Mapping | str | bytes) or not isinstance(items, Iterable):
        raise ValidationError("items", "must be a list of tasks, each a mapping")
    return items


def _check_queue(queue: object) -> None:
    """A queue filter the API would accept (None: every queue)."""
    if queue is not None and (not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue)):
        raise ValidationError("queue", "must be 1-64 characters of letters, digits, _.-")


def _task_id(task_id: object) -> str:
    """A task id as text, as the API's path carries it."""
    if not isinstance(task_id, str) or not task_id:
        raise ValidationError("task_id", "must be a task id (a non-empty string)")
    return task_id
