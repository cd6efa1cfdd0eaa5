"""Workflow transitions for this process's WebSocket clients, derived from the task events
its relay fans out.

A workflow's status is computed on read from its tasks' statuses (taskd.store.flowview):
on Redis Cluster its tasks live in different slots, so no script can hold a per-workflow
counter, and no script can tell that a workflow just ended. The relay can: when a batch
it published created, finished, retried or re-armed a task of a workflow, the workflow is
looked at again (once per round, however many of its events came) and an update is
published when its status changed. Every process relays to its own clients, so the
dedupe is per process.

A look is cheap: the tasks a workflow had unfinished at the last look are kept, and only
their statuses are read, a chunk at a time, dropping finished ones and stopping at the
first chunk with an unfinished one. Only when none is left (or after a retry) is the whole
workflow read, once per transition, for its exact counts. Finishing events do not name
their workflow, so the membership of a task whose creation this process did not see is
looked up (one pipelined round trip per round) and kept in a bounded cache.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from taskd.errors import WorkflowNotFound
from taskd.model import ms_to_iso
from taskd.store import Event, Store, stream_id_key
from taskd.store.flowview import counts_of, workflow_status

log = structlog.get_logger(__name__)

FINISHED: Final = frozenset({"completed", "failed", "cancelled"})
REARMING: Final = frozenset({"retried", "rearmed"})  # may turn an ended workflow running
MEMBERS_KEPT: Final = 65_536  # task id -> workflow id ('' = plain task)
STATUSES_KEPT: Final = 4096  # the last status told per workflow
TRACKED_KEPT: Final = 64  # workflows whose unfinished tasks are kept
ASKS_LIMIT: Final = 50_000  # membership look-ups waiting; beyond, events are not followed
ASKS_PER_ROUND: Final = 1000
READS_PER_ROUND: Final = 5000  # task statuses one round reads while narrowing
CHUNK: Final = 500
HELD_LIMIT: Final = 1000  # updates waiting for their events to be published

Position = dict[str, str]


@dataclass(slots=True)
class WorkflowUpdate:
    """A workflow was created or changed status; ``workflow`` is its list shape
    (id, name, status, created_at, counts)."""

    kind: str
    workflow: dict[str, Any]
    rendered: list[str] | None = None


def _keep(cache: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


class FlowWatch:
    """Follows the workflows of relayed events and publishes their transitions."""

    def __init__(self, store: Store, publish: Callable[[WorkflowUpdate], None]) -> None:
        self.store = store
        self.publish = publish
        self.skipped = 0  # events not followed because look-ups were over ASKS_LIMIT
        self._members: OrderedDict[str, str] = OrderedDict()
        self._told: OrderedDict[str, str] = OrderedDict()
        self._tracked: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._fresh: OrderedDict[str, bool] = OrderedDict()  # seen created, not yet told
        # Marks of events not yet published (held back so no update overtakes its
        # events), then those ready to be looked at: workflow id -> whole read needed,
        # and task id -> (queue, whole read needed) for unknown membership.
        self._marks: dict[str, bool] = {}
        self._asks: dict[str, tuple[str, bool]] = {}
        self._ready_marks: dict[str, bool] = {}
        self._ready_asks: dict[str, tuple[str, bool]] = {}
        self._wake = asyncio.Event()
        self._published: Position = {}
        self._held: deque[tuple[WorkflowUpdate, Position]] = deque()

    def observe(self, events: Iterable[Event]) -> None:
        """Note which workflows read events touch (in memory; nothing is read here)."""
        for e in events:
            task_id = e.task.get("id")
            if not task_id:
                continue
            workflow_id = e.task.get("workflow_id")
            if e.kind == "created":
                _keep(self._members, task_id, workflow_id or "", MEMBERS_KEPT)
                if workflow_id and workflow_id not in self._told:
                    _keep(self._fresh, workflow_id, True, STATUSES_KEPT)
                continue
            if e.kind == "released":  # its roots go once every task of it is written
                known = self._members.get(task_id)
                if known and known in self._fresh:
                    self._mark(self._marks, known, True)
                continue
            whole = e.kind in REARMING
            if not whole and e.task.get("status") not in FINISHED:
                continue
            known = self._members.get(task_id)
            if known:
                self._mark(self._marks, known, whole)
            elif known is None:
                self._ask(self._asks, task_id, e.queue, whole)

    def flushed(self, position: Position) -> None:
        """The events observed so far were published (up to ``position``): their
        workflows may be looked at, and updates that waited for them may go."""
        self._published = position
        while self._held and _reached(position, self._held[0][1]):
            self.publish(self._held.popleft()[0])
        for workflow_id, whole in self._marks.items():
            self._mark(self._ready_marks, workflow_id, whole)
        for task_id, (queue, whole) in self._asks.items():
            self._ask(self._ready_asks, task_id, queue, whole)
        self._marks, self._asks = {}, {}
        if self._ready_marks or self._ready_asks:
            self._wake.set()

    def recheck(self) -> None:
        """Events were lost (the relay was cut off too long): look at every workflow told
        running again."""
        for workflow_id, status in self._told.items():
            if status == "running":
                self._mark(self._ready_marks, workflow_id, True)
        self._wake.set()

    @staticmethod
    def _mark(marks: dict[str, bool], workflow_id: str, whole: bool) -> None:
        marks[workflow_id] = marks.get(workflow_id, False) or whole

    def _ask(
        self, asks: dict[str, tuple[str, bool]], task_id: str, queue: str, whole: bool
    ) -> None:
        if task_id not in asks and len(self._asks) + len(self._ready_asks) >= ASKS_LIMIT:
            self.skipped += 1
            return
        asks[task_id] = (queue, asks.get(task_id, (queue, False))[1] or whole)

    async def step(self) -> None:
        """One round: wait for marks, resolve memberships, look at marked workflows.

        What a round takes is put back if Redis fails mid-way, so an outage delays
        updates but loses none.
        """
        await self._wake.wait()
        self._wake.clear()
        asks = dict(list(self._ready_asks.items())[:ASKS_PER_ROUND])
        for task_id in asks:
            del self._ready_asks[task_id]
        marks, self._ready_marks = self._ready_marks, {}
        try:
            await self._resolve(asks, marks)
            asks = {}
            budget = READS_PER_ROUND
            while marks:
                workflow_id, whole = next(iter(marks.items()))
                budget = await self._look(workflow_id, whole, budget)
                del marks[workflow_id]
                if budget <= 0:
                    break
        finally:
            for task_id, (queue, whole) in asks.items():
                self._ask(self._ready_asks, task_id, queue, whole)
            for workflow_id, whole in marks.items():
                self._mark(self._ready_marks, workflow_id, whole)
            if self._ready_marks or self._ready_asks:
                self._wake.set()

    async def _resolve(self, asks: dict[str, tuple[str, bool]], marks: dict[str, bool]) -> None:
        if not asks:
            return
        found = await self.store.workflows_of({t: q for t, (q, _) in asks.items()})
        for task_id, workflow_id in found.items():
            _keep(self._members, task_id, workflow_id, MEMBERS_KEPT)
            if workflow_id:
                self._mark(marks, workflow_id, asks[task_id][1])

    async def _look(self, workflow_id: str, whole: bool, budget: int) -> int:
        """Look at one workflow; returns the read budget left (0: mark it again later)."""
        unfinished = self._tracked.get(workflow_id)
        if not whole and unfinished is not None:
            if not unfinished:
                return budget  # it had ended: only a retry (a whole look) changes that
            narrowed = await self._narrow(workflow_id, unfinished, budget)
            if narrowed is None:
                self._forget(workflow_id)
                return budget
            cancelled, budget = narrowed
            if unfinished and not (cancelled and self._told.get(workflow_id) == "running"):
                if budget <= 0:
                    self._mark(self._ready_marks, workflow_id, False)
                return budget
        return budget - await self._read_whole(workflow_id)

    async def _narrow(
        self, workflow_id: str, unfinished: dict[str, str], budget: int
    ) -> tuple[bool, int] | None:
        """Drop the finished tasks from ``unfinished``, a chunk at a time, until a chunk
        still has an unfinished one; (cancel mark, budget left), or None if it is gone."""
        cancelled = False
        while unfinished and budget > 0:
            chunk = dict(list(unfinished.items())[: min(CHUNK, budget)])
            mark, statuses = await self.store.workflow_glance(workflow_id, chunk)
            if mark is None:
                return None
            cancelled, budget = mark, budget - len(chunk)
            still = False
            for task_id in chunk:
                if statuses.get(task_id, "completed") in FINISHED:
                    del unfinished[task_id]  # a vanished task counts as finished
                else:
                    still = True
            if still:
                return cancelled, max(budget, 1)
        return cancelled, budget

    async def _read_whole(self, workflow_id: str) -> int:
        """Read the workflow whole, keep its unfinished tasks, publish what changed;
        returns how many task statuses that read."""
        try:
            record = await self.store.workflow_record(workflow_id)
        except WorkflowNotFound:
            self._forget(workflow_id)
            return 1
        tasks = {task_id: queue for _, queue, task_id, _ in record["tasks"]}
        statuses = await self.store.task_statuses(tasks)
        status = workflow_status(list(statuses.values()), record["cancelled"])
        unfinished = {t: tasks[t] for t, s in statuses.items() if s not in FINISHED}
        _keep(self._tracked, workflow_id, unfinished, TRACKED_KEPT)
        # The statuses may be ahead of the events published so far: an update waits until
        # they are out, so a client never sees a workflow end before its last task does.
        needed = await self.store.last_event_ids(sorted(set(tasks.values())))
        view = {
            "id": record["id"],
            "name": record["name"],
            "status": status,
            "created_at": ms_to_iso(record["created_at"]),
            "counts": counts_of(list(statuses.values())),
        }
        before = self._told.get(workflow_id)
        _keep(self._told, workflow_id, status, STATUSES_KEPT)
        if self._fresh.pop(workflow_id, False):
            self._tell(WorkflowUpdate("created", view), needed)
        if status != (before or "running"):
            self._tell(WorkflowUpdate(status, view), needed)
        return len(tasks)

    def _tell(self, update: WorkflowUpdate, needed: Position) -> None:
        if not self._held and _reached(self._published, needed):
            self.publish(update)
            return
        if len(self._held) >= HELD_LIMIT:  # the relay stopped publishing (no clients)
            self._held.popleft()
        self._held.append((update, needed))

    def _forget(self, workflow_id: str) -> None:
        self._tracked.pop(workflow_id, None)
        self._told.pop(workflow_id, None)
        self._fresh.pop(workflow_id, None)


def _reached(position: Position, needed: Position) -> bool:
    """Whether ``position`` is at or past ``needed`` in every queue it names."""
    return all(
        stream_id_key(position.get(q, "0-0")) >= stream_id_key(at) for q, at in needed.items()
    )
