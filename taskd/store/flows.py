"""Workflows in Redis: submitting one, reading its tasks, and the outbox hand-off that
carries a task's end to dependents in other queues (other Redis Cluster slots).

Same-queue dependents are settled inside the script that ends their parent (one atomic
step); a dependent elsewhere gets an outbox entry in the parent's slot, delivered here by
settle.lua in the child's slot (idempotent) and only then deleted: a drain that dies
mid-way leaves the entry to the next one, which repeats nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from taskd import keys
from taskd.errors import UniqueKeyTaken, WorkflowNotFound
from taskd.model import TASK_ID, Task
from taskd.store.base import Call, StoreBase
from taskd.store.translate import translated
from taskd.workflow import WorkflowSpec, queue_of

ADD_CHUNK = 500  # tasks per wf_add script (a few ms of Redis time each)
DRAIN_BATCH = 200  # outbox entries one drain reads per queue


class FlowOps(StoreBase):
    """Workflows as the API and the engine see them."""

    async def submit_workflow(self, spec: WorkflowSpec) -> int:
        """Write a workflow: its record, every task as waiting, then release its roots.

        Every queue's share exists before any root is released, so no end can reach a
        dependent not yet written. Returns Redis's time of the submit (ms).
        """
        by_queue = queue_of(spec)
        for queue in by_queue:
            if queue not in self._ready_queues:
                await self.ensure_queue(queue)
        await self._refuse_taken_unique_keys(spec)
        entries = [[key, t.spec.queue, t.spec.id, t.depends_on] for key, t in spec.tasks.items()]
        record = {"id": spec.id, "name": spec.name, "tasks": orjson.dumps(entries).decode()}
        calls = [
            self._add_call(spec, keys_[i : i + ADD_CHUNK])
            for keys_ in by_queue.values()
            for i in range(0, len(keys_), ADD_CHUNK)
        ]
        now = await self.time_ms()
        async with translated():
            record["created_at"] = str(now)
            # Marked until its roots are released: a submit that stops before (its process
            # died, Redis went away) is finished or undone by repair_workflows.
            await self.redis.zadd(keys.WORKFLOWS_WRITING, {spec.id: now})
            await self.redis.hset(keys.workflow(spec.id), mapping=record)
            await self.redis.zadd(keys.WORKFLOWS, {spec.id: now})
            await self._pipelined(calls)
            await self._pipelined(self._start_calls(entries))
            await self.redis.zrem(keys.WORKFLOWS_WRITING, spec.id)
        return now

    def _start_calls(self, tasks: Sequence[Sequence[Any]]) -> list[Call]:
        """wf_start calls releasing the roots (tasks without dependencies) of each queue,
        from a record's tasks ``(key, queue, id, depends_on)``."""
        roots: dict[str, list[str]] = {}
        for _, queue, task_id, deps in tasks:
            if not deps:
                roots.setdefault(queue, []).append(task_id)
        return [
            ("wf_start", [self.keys(queue).stats], [self.events_maxlen, *ids])
            for queue, ids in roots.items()
        ]

    async def _refuse_taken_unique_keys(self, spec: WorkflowSpec) -> None:
        wanted = [(k, t) for k, t in spec.tasks.items() if t.spec.unique_key]
        if not wanted:
            return
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for _, t in wanted:
                pipe.exists(self.keys(t.spec.queue).unique(t.spec.unique_key or ""))
            taken = await pipe.execute()
        for (key, t), exists in zip(wanted, taken, strict=True):
            if exists:
                raise UniqueKeyTaken(f"tasks.{key}.unique_key", t.spec.unique_key or "")

    def _add_call(self, spec: WorkflowSpec, task_keys: list[str]) -> Call:
        k = self.keys(spec.tasks[task_keys[0]].spec.queue)
        script_keys = [k.stats, k.index, k.events, k.seq]
        args: list[Any] = [self.events_maxlen]
        for key in task_keys:
            s = spec.tasks[key].spec
            task_key = k.task(s.id)
            script_keys += [task_key, k.unique(s.unique_key) if s.unique_key else task_key]
            args.append(orjson.dumps(spec.fields(key)))
        script_keys += [k.history, k.history_index]
        return ("wf_add", script_keys, args)

    async def workflow_record(self, workflow_id: str) -> dict[str, Any]:
        """A workflow's record: id, name, created_at, tasks [(key, queue, id, deps)]."""
        if not TASK_ID.fullmatch(workflow_id):
            raise WorkflowNotFound(workflow_id)
        async with translated():
            raw = await self.redis.hgetall(keys.workflow(workflow_id))
        if not raw:
            raise WorkflowNotFound(workflow_id)
        return {
            "id": raw["id"],
            "name": raw["name"],
            "created_at": int(raw["created_at"]),
            "cancelled": raw.get("cancelled") == "1",
            "tasks": record_tasks(raw),
        }

    async def workflow_tasks(self, record: dict[str, Any]) -> dict[str, Task | None]:
        """Every task of a workflow by key (None where one expired), one round trip."""
        entries = [(queue, task_id) for _, queue, task_id, _ in record["tasks"]]
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue, task_id in entries:
                pipe.hgetall(self.keys(queue).task(task_id))
            raws = await pipe.execute()
        tasks = [Task.from_hash(raw) if raw else None for raw in raws]
        return {t[0]: task for t, task in zip(record["tasks"], tasks, strict=True)}

    async def task_statuses(self, tasks: Mapping[str, str]) -> dict[str, str]:
        """The status of each task (id -> queue), one round trip; expired ones left out."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for task_id, queue in tasks.items():
                pipe.hget(self.keys(queue).task(task_id), "status")
            found = await pipe.execute()
        return {i: str(s) for i, s in zip(tasks, found, strict=True) if s}

    async def workflows_of(self, tasks: Mapping[str, str]) -> dict[str, str]:
        """The workflow id of each task (id -> queue), '' for a plain or vanished task;
        one round trip (finishing events do not name their workflow)."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for task_id, queue in tasks.items():
                pipe.hget(self.keys(queue).task(task_id), "workflow_id")
            found = await pipe.execute()
        return {i: str(w or "") for i, w in zip(tasks, found, strict=True)}

    async def workflow_glance(
        self, workflow_id: str, tasks: Mapping[str, str]
    ) -> tuple[bool | None, dict[str, str]]:
        """Whether the workflow is marked cancelled (None when it is gone) and the status
        of each given task (id -> queue; vanished ones left out), in one round trip: a
        look at part of a workflow without reading its record."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(keys.workflow(workflow_id), "id", "cancelled")
            for task_id, queue in tasks.items():
                pipe.hget(self.keys(queue).task(task_id), "status")
            (exists, cancelled), *found = await pipe.execute()
        statuses = {i: str(s) for i, s in zip(tasks, found, strict=True) if s}
        return (None if exists is None else cancelled == "1"), statuses

    async def workflow_ids(self, limit: int, before: float | None) -> list[tuple[str, int]]:
        """Workflow ids newest first, created at or before ``before`` ms when given."""
        top = str(before) if before is not None else "+inf"
        async with translated():
            rows = await self.redis.zrevrangebyscore(
                keys.WORKFLOWS, top, "-inf", start=0, num=limit, withscores=True
            )
        return [(str(member), int(score)) for member, score in rows]

    async def mark_workflow(self, workflow_id: str, **fields: str) -> None:
        """Set fields on a workflow's record (cancelled, finished_at)."""
        async with translated():
            await self.redis.hset(keys.workflow(workflow_id), mapping=fields)

    async def forget_workflow(self, workflow_id: str) -> None:
        """Drop a workflow's record and its place in the index."""
        async with translated():
            await self.redis.delete(keys.workflow(workflow_id))
            await self.redis.zrem(keys.WORKFLOWS, workflow_id)

    async def parent_results(self, task: Task) -> dict[str, tuple[str, Any, str | None]]:
        """Each parent's (status, result, error) by key, read when the task starts."""
        parents = task.parents or {}
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue, parent_id in parents.values():
                pipe.hmget(self.keys(queue).task(parent_id), "status", "result", "error")
            rows = await pipe.execute()
        found: dict[str, tuple[str, Any, str | None]] = {}
        for key, (status, result, error) in zip(parents, rows, strict=True):
            found[key] = (status or "expired", orjson.loads(result) if result else None, error)
        return found

    async def drain_outboxes(self, queues: Sequence[str], limit: int = DRAIN_BATCH) -> int:
        """Deliver the queues' outbox entries to their children's slots; returns how many.

        Each entry is settled (idempotently) before it is deleted, so a crash between the
        two makes the next drain repeat a settlement that then changes nothing. One round
        trip finds the entries of every queue.
        """
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue in queues:
                pipe.xrange(self.keys(queue).outbox, "-", "+", count=limit)
            found = await pipe.execute()
            done = 0
            for queue, entries in zip(queues, found, strict=True):
                if entries:
                    await self._settle(self.keys(queue).outbox, entries)
                    done += len(entries)
        return done

    async def _settle(self, outbox: str, entries: list[Any]) -> None:
        calls: list[Call] = [
            (
                "settle",
                [self.keys(f["queue"]).stats],
                [self.events_maxlen, f["child"], f["parent"], f["outcome"], f["why"]],
            )
            for _, f in entries
        ]
        if self.cluster:  # one by one: the entries of one child keep their order
            for call in calls:
                await self._pipelined([call])
        else:
            await self._pipelined(calls)
        await self.redis.xdel(outbox, *[entry_id for entry_id, _ in entries])


def record_tasks(record: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """A workflow record's tasks, ``(key, queue, id, depends_on)`` each, in submit order."""
    return [tuple(t) for t in orjson.loads(record["tasks"])]
