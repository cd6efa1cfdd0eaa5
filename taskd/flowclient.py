"""The workflow half of :class:`taskd.Client`: submit, read, wait for and cancel
workflows (mixed into the client; see :mod:`taskd.canvas` for building them)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from taskd.canvas import Shape, Workflow
from taskd.errors import ValidationError
from taskd.model import FINISHED, TaskSpec
from taskd.store.flowview import submitted_view
from taskd.workflow import make_workflow, result_refs

if TYPE_CHECKING:
    from taskd import config
    from taskd.engine.registry import Registry
    from taskd.store import Store

FINISHED_NAMES = frozenset(str(s) for s in FINISHED)
WorkflowLike = Shape | Workflow | Mapping[str, Any]


def wait_timeout(timeout_s: object) -> float:
    """A wait's ``timeout_s`` as seconds (inf waits for ever); text, None, a bool or NaN
    raise ValidationError naming it rather than failing somewhere inside the wait."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise ValidationError("timeout_s", "must be a number of seconds")
    if math.isnan(timeout_s):
        raise ValidationError("timeout_s", "must be a number of seconds")
    return float(timeout_s)


def _workflow_id(workflow_id: object) -> str:
    """A workflow id as text, as the API's path carries it."""
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ValidationError("workflow_id", "must be a workflow id (a non-empty string)")
    return workflow_id


class WorkflowClient:
    """Workflow methods; the client supplies ``store()`` and ``settings``."""

    @property
    def settings(self) -> config.Settings:  # pragma: no cover - the client's
        """Settings for the task defaults."""
        raise NotImplementedError

    @property
    def registry(self) -> Registry:  # pragma: no cover - the client's
        """The types known to this client."""
        raise NotImplementedError

    async def store(self) -> Store:  # pragma: no cover - the client's
        """The connected store."""
        raise NotImplementedError

    async def check_types(self, specs: Iterable[TaskSpec], index: bool = False) -> None:
        """The client's type check (taskd.engine.known)."""
        raise NotImplementedError  # pragma: no cover - the client's

    async def submit_workflow(
        self, flow: WorkflowLike, *, name: str | None = None
    ) -> dict[str, Any]:
        """Submit a workflow (a chain/group/chord, a :class:`Workflow`, or the JSON body
        of ``POST /api/workflows``); returns its view as written (id, status running,
        tasks by key: roots pending, the others waiting), as the API answers."""
        if isinstance(flow, Shape):
            body = flow.body(name or "workflow")
        elif isinstance(flow, Workflow):
            body = flow.body(name)
        else:
            body = dict(flow) | ({"name": name} if name else {})
        tasks = self.settings.tasks
        spec = make_workflow(
            body, default_max_retries=tasks.max_retries, default_timeout_s=tasks.timeout_s
        )
        store = await self.store()
        for key, task in spec.tasks.items():  # what submit checks of a task, task by task
            try:
                self._check_payload(task.spec)
                await self.check_types([task.spec])
            except ValidationError as exc:
                message = exc.message.removeprefix(f"{exc.field}: ")
                raise ValidationError(f"tasks.{key}.{exc.field}", message) from None
        return submitted_view(spec, await store.submit_workflow(spec))

    def _check_payload(self, spec: TaskSpec) -> None:
        """A registered type's schema and validator, unless the payload holds $result
        references (its final form exists only when the task starts)."""
        name = spec.task_type
        checked = name in self.registry and self.registry.checks_payload(name)
        if checked and not result_refs(spec.payload):
            self.registry.check_payload(name, spec.payload)

    async def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        """A workflow's view: status, counts per task status, each task with its result."""
        return await (await self.store()).get_workflow(_workflow_id(workflow_id))

    async def list_workflows(
        self, *, limit: int = 50, cursor: str | None = None, status: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Workflows newest first (without tasks), optionally of one status (running,
        completed, failed, cancelled), and the cursor of the next page (None at the end):
        the filters of ``GET /api/workflows``; ValidationError for a bad one."""
        return await (await self.store()).list_workflows(limit=limit, cursor=cursor, status=status)

    async def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Cancel every unfinished task of a workflow; returns its view."""
        return await (await self.store()).cancel_workflow(_workflow_id(workflow_id))

    async def wait_workflow(self, workflow_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until the workflow is no longer running and return its view.

        Follows the event streams of its queues (blocking reads, no polling sleeps) and
        reads its unfinished tasks again when one of them changes; returns once every
        task is finished; TimeoutError after ``timeout_s``.
        """
        timeout_s = wait_timeout(timeout_s)
        workflow_id = _workflow_id(workflow_id)
        store = await self.store()
        record = await store.workflow_record(workflow_id)
        unfinished = {task_id: queue for _, queue, task_id, _ in record["tasks"]}
        queues = sorted(set(unfinished.values()))
        last = await store.last_event_ids(queues)
        deadline = time.monotonic() + timeout_s
        while True:
            # Only tasks not yet seen finished are read again: a 10,000-task workflow
            # costs a shrinking read, not 10,000 reads per change.
            for task_id, status in (await store.task_statuses(unfinished)).items():
                if status in FINISHED_NAMES:
                    del unfinished[task_id]
            if not unfinished:
                return await store.get_workflow(workflow_id)
            while True:  # until an event of one of its tasks arrives (or a 5 s re-check)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"workflow {workflow_id} still running after {timeout_s}s")
                events = await store.read_events(last, block_ms=max(1, int(min(left, 5) * 1000)))
                if not events:
                    break
                for event in events:
                    last[event.queue] = event.event_id
                if any(e.task.get("id") in unfinished for e in events):
                    break
