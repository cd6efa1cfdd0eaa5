"""What a workflow task learns of its dependencies when it starts: ``ctx.parents`` and its
payload with every ``$result`` reference replaced.

Resolved at the start of each attempt from the parents' stored results (they never change
once completed), so it works the same whichever queue or Redis Cluster slot a parent
lives in.
"""

from __future__ import annotations

from typing import Any

from taskd.engine.context import Context
from taskd.model import Task
from taskd.workflow import substitute


async def with_parents(store: Any, task: Task, ctx: Context) -> dict[str, Any]:
    """Fill ``ctx.parents`` and return the payload to run with; ValidationError when a
    ``$result`` reference leads nowhere (the task then fails with that message)."""
    found = await store.parent_results(task)
    results = {key: result for key, (status, result, _) in found.items() if status == "completed"}
    ctx.parents = {
        key: result if status == "completed" else {"status": status, "error": error}
        for key, (status, result, error) in found.items()
    }
    return dict(substitute(task.payload, results))
