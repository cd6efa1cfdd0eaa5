"""The blocking client for threads without an event loop: Django, Flask, scripts.

``SyncClient`` has the methods of :class:`taskd.Client` and is safe to share between
threads (one per process, like a database pool). ``submit`` is one blocking EVALSHA from
the calling thread (:mod:`taskd.store.sync_enqueue`), so a web request pays one round
trip and no thread hand-off; everything else runs the async client's code on one
event-loop thread the client starts on first use. A forked child (gunicorn, Celery
prefork) starts its own loop and connections on its first call.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterable, Mapping
from datetime import datetime
from typing import Any, Self, TypeVar

from taskd import config
from taskd.client import (
    Client,
    Page,
    batch_items,
    checked_url,
    module_names,
    resolve_redis_url,
)
from taskd.engine.registry import Registry
from taskd.flowclient import WorkflowLike
from taskd.model import DEFAULT_PRIORITY, DEFAULT_QUEUE, Task, TaskSpec
from taskd.store.sync_enqueue import SyncEnqueuer, direct_url

T = TypeVar("T")
Workflows = list[dict[str, Any]]  # (named here: inside SyncClient, `list` is a method)


class _Loop:
    """One event loop running in a daemon thread, with the async client living on it."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="taskd-client", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.run(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class SyncClient:
    """Blocking, thread-safe client. ``redis_url=None`` resolves the URL like ``taskd
    serve`` does; ``handlers`` and ``registry`` name the known task types as for Client."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        handlers: Iterable[str] | None = None,
        registry: Registry | None = None,
    ) -> None:
        self._url = checked_url(redis_url)
        self._handlers = module_names(handlers)
        self._registry = registry
        self._lock = threading.Lock()
        self._pid = -1
        self._loop: _Loop | None = None
        self._direct: SyncEnqueuer | None = None
        self._ready_queues: set[str] = set()
        self._validator = Client(redis_url, handlers=handlers, registry=registry)

    def __enter__(self) -> Self:
        self._started()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _started(self) -> _Loop:
        """The loop thread (and the direct submit path), started once per process."""
        loop = self._loop
        if loop is not None and self._pid == os.getpid():
            return loop
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # first use, or a forked child
                self._loop, self._direct = self._start()
                self._ready_queues = set()
                self._pid = os.getpid()
            return self._loop

    def _start(self) -> tuple[_Loop, SyncEnqueuer | None]:
        """A connected loop thread and direct submit path; when connecting fails, the
        thread is stopped before the error is raised (a web app calling on while Redis
        is down must not gain a thread per request)."""
        client = Client(self._url, handlers=self._handlers, registry=self._registry)
        loop = _Loop(client)
        try:
            store = loop.run(client.store())
            url = self._url or resolve_redis_url(client.settings)
        except BaseException:
            loop.close()
            raise
        if not direct_url(url):  # a Cluster or Sentinel: submits go through the loop
            return loop, None
        return loop, SyncEnqueuer(url, events_maxlen=store.events_maxlen)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._started().run(coro)

    def close(self) -> None:
        """Close the connections and stop the loop thread."""
        with self._lock:
            if self._loop is not None and self._pid == os.getpid():
                self._loop.close()
                if self._direct is not None:
                    self._direct.close()
            self._loop = self._direct = None

    @property
    def settings(self) -> config.Settings:
        """Settings from the environment (and TASKD_CONFIG), as Client reads them."""
        return self._validator.settings

    @property
    def registry(self) -> Registry:
        """The task types this client accepts (built on first use: it imports modules)."""
        return self._validator.registry

    def spec(self, task_type: str, payload: Mapping[str, Any] | None = None, **kw: Any) -> TaskSpec:
        """Validate submit arguments into a TaskSpec as the HTTP API does, without
        Redis (see Client.spec)."""
        return self._validator.spec(task_type, payload, **kw)

    def check_types(self, specs: Iterable[TaskSpec], index: bool = False) -> None:
        """Refuse a type nothing can run, as the API does (see Client.check_types)."""
        specs = list(specs)
        self._run(self._started().client.check_types(specs, index))

    def submit(
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
        """Submit one task (see Client.submit); one round trip from this thread."""
        spec = self._validator.spec(
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
        loop = self._started()
        if spec.task_type not in loop.client.known_types.local:  # a type a worker elsewhere runs
            loop.run(loop.client.check_types([spec]))
        direct = self._direct
        if direct is None:
            ((task, _),) = loop.run(_submit(loop.client, spec))
            return task
        if spec.queue not in self._ready_queues:
            loop.run(_ready(loop.client, spec.queue))
            self._ready_queues.add(spec.queue)
        ((task, _),) = direct.submit([spec])
        return task

    def submit_many(self, items: Iterable[Mapping[str, Any]]) -> list[Task]:
        """Submit many tasks, all validated before any is sent (see Client.submit_many)."""
        items = list(batch_items(items))  # (a generator is read in the calling thread)
        return self._run(self._started().client.submit_many(items))

    def get(self, task_id: str) -> Task:
        """One task by id (TaskNotFound if unknown or expired)."""
        return self._run(self._started().client.get(task_id))

    def list(
        self,
        status: str | Iterable[str] | None = None,
        limit: int = 100,
        cursor: str | None = None,
        queue: str | None = None,
    ) -> Page:
        """Tasks newest first, optionally of some statuses; follow ``next_cursor`` for more."""
        return self._run(self._started().client.list(status, limit, cursor, queue))

    def stats(self, queue: str | None = None) -> dict[str, int]:
        """Counts per status and totals."""
        return self._run(self._started().client.stats(queue))

    def cancel(self, task_id: str) -> str:
        """Cancel; returns 'cancelled', or 'cancelling' for a running task."""
        return self._run(self._started().client.cancel(task_id))

    def retry(self, task_id: str) -> Task:
        """Send a failed or cancelled task back to pending."""
        return self._run(self._started().client.retry(task_id))

    def wait(self, task_id: str, timeout_s: float = 60.0) -> Task:
        """Block until the task is finished and return it (TimeoutError after timeout_s)."""
        return self._run(self._started().client.wait(task_id, timeout_s))

    def submit_workflow(self, flow: WorkflowLike, *, name: str | None = None) -> dict[str, Any]:
        """Submit a workflow (see :meth:`taskd.Client.submit_workflow`); returns its view."""
        return self._run(self._started().client.submit_workflow(flow, name=name))

    def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        """A workflow's view: status, counts, each task by key."""
        return self._run(self._started().client.get_workflow(workflow_id))

    def list_workflows(
        self, *, limit: int = 50, cursor: str | None = None, status: str | None = None
    ) -> tuple[Workflows, str | None]:
        """Workflows newest first (without tasks), optionally of one status (running,
        completed, failed, cancelled), and the cursor of the next page (None at the end)."""
        client = self._started().client
        return self._run(client.list_workflows(limit=limit, cursor=cursor, status=status))

    def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Cancel every unfinished task of a workflow."""
        return self._run(self._started().client.cancel_workflow(workflow_id))

    def wait_workflow(self, workflow_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Block until the workflow is no longer running; returns its view."""
        return self._run(self._started().client.wait_workflow(workflow_id, timeout_s))


async def _submit(client: Client, spec: Any) -> list[tuple[Task, bool]]:
    return await (await client.store()).submit([spec])


async def _ready(client: Client, queue: str) -> None:
    await (await client.store()).ready_queue(queue)
