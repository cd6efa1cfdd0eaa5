"""Workflow submits that stopped half way: finished when every task was written, else
undone, so no workflow waits forever for roots nobody will release.

A submit writes the workflow's record, then each queue's share of its tasks (waiting),
then releases its roots, in several round trips (a workflow's tasks may live in many
Redis Cluster slots, so no one script can write them all). Its id stays in
``taskd:workflows:writing`` until the roots are released. A submitter that dies, or
loses Redis, between two of those steps leaves the id there; the supervisor's
housekeeping then looks at it once the grace has passed (a live submit, however slow,
is done long before).
"""

from __future__ import annotations

import contextlib
from typing import Any

from taskd import keys
from taskd.errors import WorkflowNotFound, WorkflowWrongState
from taskd.store.flowview import FlowExpiry
from taskd.store.translate import translated


class FlowRepair(FlowExpiry):
    """Finishing or undoing interrupted workflow submits."""

    async def repair_workflows(self, grace_ms: int, limit: int = 20) -> int:
        """Settle up to ``limit`` submits marked as writing for more than ``grace_ms``:
        roll forward (release the roots) when every task exists, else undo (cancel and
        delete what was written, forget the record). Returns how many workflows it
        settled. Safe to repeat and to run on several daemons at once: releasing roots
        moves only waiting tasks without dependencies left, and an undo of an undone
        workflow finds nothing."""
        cutoff = await self.time_ms() - grace_ms
        async with translated():
            marked = await self.redis.zrange(
                keys.WORKFLOWS_WRITING, "-inf", cutoff, byscore=True, offset=0, num=limit
            )
        settled = 0
        for workflow_id in map(str, marked):
            try:
                record = await self.workflow_record(workflow_id)
            except WorkflowNotFound:
                record = None  # stopped before its record: nothing else was written
            if record is not None:
                await self._settle_submit(record)
                settled += 1
            async with translated():
                await self.redis.zrem(keys.WORKFLOWS_WRITING, workflow_id)
        return settled

    async def _settle_submit(self, record: dict[str, Any]) -> None:
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for _, queue, task_id, _ in record["tasks"]:
                pipe.exists(self.keys(queue).task(task_id))
            present = await pipe.execute()
            if all(present):
                await self._pipelined(self._start_calls(record["tasks"]))
                return
        if any(present):  # all waiting: no root was released, so nothing ran
            # WorkflowWrongState: every written task already ended (cancelled by hand).
            with contextlib.suppress(WorkflowWrongState):
                await self.cancel_workflow(record["id"])
        await self.delete_workflow(record["id"])
