"""A workflow's submit specification: tasks with dependencies (a DAG), validated whole.

Chains, groups and chords are shapes of it (see :mod:`taskd.canvas`). Validation refuses
unknown dependency keys and cycles, naming the key, before anything is written.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from taskd.errors import ValidationError
from taskd.model import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    SUBMIT_FIELDS,
    TaskSpec,
    make_spec,
    new_task_id,
)

WORKFLOW_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")  # no '.': it starts a $result path
MAX_WORKFLOW_TASKS = 20_000
_TASK_FIELDS = SUBMIT_FIELDS | {"key", "depends_on", "run_on_failure"}


@dataclass(slots=True)
class FlowTask:
    """One validated task of a workflow: its spec, key and dependencies."""

    key: str
    spec: TaskSpec
    depends_on: list[str]
    run_on_failure: bool = False
    children: list[str] = field(default_factory=list)


@dataclass(slots=True)
class WorkflowSpec:
    """A validated workflow, tasks in submit order; build it with :func:`make_workflow`."""

    id: str
    name: str
    tasks: dict[str, FlowTask]

    def fields(self, key: str) -> dict[str, str]:
        """The hash fields wf_add.lua writes for one task (all strings)."""
        t = self.tasks[key]
        s = t.spec
        fields = {
            "id": s.id,
            "name": s.name,
            "task_type": s.task_type,
            "queue": s.queue,
            "priority": str(s.priority),
            "payload": s.payload_json.decode(),
            "max_retries": str(s.max_retries),
            "timeout_s": repr(s.timeout_s),
            "workflow_id": self.id,
            "wf_key": key,
            "depends_on": orjson.dumps(t.depends_on).decode(),
            "parents": orjson.dumps(
                {p: [self.tasks[p].spec.queue, self.tasks[p].spec.id] for p in t.depends_on}
            ).decode(),
            "children": orjson.dumps(
                [[self.tasks[c].spec.queue, self.tasks[c].spec.id] for c in t.children]
            ).decode(),
            "deps_left": str(len(t.depends_on)),
        }
        if t.run_on_failure:
            fields["run_on_failure"] = "1"
        if s.delay_ms is not None:
            fields["hold_ms"] = str(s.delay_ms)
        if s.run_at_ms is not None:
            fields["hold_until"] = str(s.run_at_ms)
        if s.unique_key:
            fields["unique_key"] = s.unique_key
        return fields


def make_workflow(body: Any, **defaults: Any) -> WorkflowSpec:
    """Validate a workflow body (``{"name", "tasks": [...]}``); raise ValidationError.

    ``defaults`` go to :func:`taskd.model.make_spec` (default retries, timeout, size).
    """
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    unknown = sorted(set(body) - {"name", "tasks"})
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    name = body.get("name", "workflow")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise ValidationError("name", "must be a string of 1-200 characters")
    raw = body.get("tasks")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_WORKFLOW_TASKS:
        raise ValidationError("tasks", f"must be a list of 1-{MAX_WORKFLOW_TASKS} tasks")
    tasks: dict[str, FlowTask] = {}
    for i, item in enumerate(raw):
        task = _flow_task(i, item, defaults)
        if task.key in tasks:
            raise ValidationError(f"tasks[{i}].key", f"duplicate key {task.key!r}")
        tasks[task.key] = task
    _refuse_shared_unique_keys(tasks)
    for key, task in tasks.items():
        for parent in task.depends_on:
            if parent not in tasks:
                raise ValidationError(
                    f"tasks.{key}.depends_on", f"unknown key {parent!r} in task {key!r}"
                )
            tasks[parent].children.append(key)
    _refuse_cycles(tasks)
    return WorkflowSpec(id=new_task_id(), name=name, tasks=tasks)


def _flow_task(i: int, item: Any, defaults: dict[str, Any]) -> FlowTask:
    where = f"tasks[{i}]"
    if not isinstance(item, dict):
        raise ValidationError(where, "must be a JSON object")
    unknown = sorted(set(item) - _TASK_FIELDS)
    if unknown:
        raise ValidationError(f"{where}.{unknown[0]}", "unknown field")
    key = item.get("key")
    if not isinstance(key, str) or not WORKFLOW_KEY.fullmatch(key):
        raise ValidationError(f"{where}.key", "must be 1-100 characters of letters, digits, _-")
    deps = item.get("depends_on", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ValidationError(f"tasks.{key}.depends_on", "must be a list of task keys")
    if len(set(deps)) != len(deps):
        raise ValidationError(f"tasks.{key}.depends_on", "names a key twice")
    run_on_failure = item.get("run_on_failure", False)
    if not isinstance(run_on_failure, bool):
        raise ValidationError(f"tasks.{key}.run_on_failure", "must be true or false")
    try:
        spec = make_spec(
            item.get("task_type"),
            item.get("payload"),
            name=item.get("name"),
            priority=item.get("priority", DEFAULT_PRIORITY),
            queue=item.get("queue", DEFAULT_QUEUE),
            delay_s=item.get("delay_s"),
            run_at=item.get("run_at"),
            max_retries=item.get("max_retries"),
            timeout_s=item.get("timeout_s"),
            unique_key=item.get("unique_key"),
            **defaults,
        )
    except ValidationError as exc:
        raise ValidationError(f"tasks.{key}.{exc.field}", exc.message.partition(": ")[2]) from None
    for ref in result_refs(spec.payload):
        if ref.partition(".")[0] not in deps:
            raise ValidationError(
                f"tasks.{key}.payload", f"$result {ref!r} names no key of its depends_on"
            )
    return FlowTask(key=key, spec=spec, depends_on=list(deps), run_on_failure=run_on_failure)


def _refuse_shared_unique_keys(tasks: dict[str, FlowTask]) -> None:
    """One unique_key names one task of a queue: two members of a workflow cannot both
    own it (its pointer would name only the last one written)."""
    owners: dict[tuple[str, str], str] = {}
    for key, task in tasks.items():
        if task.spec.unique_key:
            owner = owners.setdefault((task.spec.queue, task.spec.unique_key), key)
            if owner != key:
                raise ValidationError(
                    f"tasks.{key}.unique_key",
                    f"{task.spec.unique_key!r} is also the unique_key of task {owner!r}"
                    " in the same queue",
                )


def _refuse_cycles(tasks: dict[str, FlowTask]) -> None:
    """Kahn's algorithm: whatever is left unordered lies on (or behind) a cycle."""
    left = {key: len(t.depends_on) for key, t in tasks.items()}
    ready = [key for key, n in left.items() if n == 0]
    while ready:
        key = ready.pop()
        for child in tasks[key].children:
            left[child] -= 1
            if left[child] == 0:
                ready.append(child)
    stuck = [key for key, n in left.items() if n > 0]
    if stuck:
        key = _on_cycle(tasks, stuck)
        raise ValidationError(f"tasks.{key}.depends_on", f"cycle through task {key!r}")


def _on_cycle(tasks: dict[str, FlowTask], stuck: list[str]) -> str:
    """A key that lies on a cycle (walking parents among stuck tasks must repeat one)."""
    stuck_set = set(stuck)
    key, seen = stuck[0], set[str]()
    while key not in seen:
        seen.add(key)
        key = next(p for p in tasks[key].depends_on if p in stuck_set)
    return key


def dependency_order(depends_on: Mapping[str, Sequence[str]]) -> list[str]:
    """The keys parents first (Kahn's algorithm; ties in the given order). Keys on a
    cycle, which validation never lets in, come last in the given order."""
    left = {key: len(deps) for key, deps in depends_on.items()}
    children: dict[str, list[str]] = {key: [] for key in depends_on}
    for key, deps in depends_on.items():
        for parent in deps:
            children.setdefault(parent, []).append(key)
    ready = deque(key for key, n in left.items() if n == 0)
    order: list[str] = []
    while ready:
        key = ready.popleft()
        order.append(key)
        for child in children.get(key, ()):
            left[child] -= 1
            if left[child] == 0:
                ready.append(child)
    placed = set(order)
    return order + [key for key in depends_on if key not in placed]


def queue_of(spec: WorkflowSpec) -> dict[str, list[str]]:
    """The workflow's task keys grouped by queue, in submit order."""
    by_queue: dict[str, list[str]] = {}
    for key, task in spec.tasks.items():
        by_queue.setdefault(task.spec.queue or DEFAULT_QUEUE, []).append(key)
    return by_queue


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("$result"), str)


def result_refs(value: Any) -> list[str]:
    """Every ``{"$result": "<key>[.path]"}`` reference inside a payload."""
    if _is_ref(value):
        return [value["$result"]]
    if isinstance(value, dict):
        return [ref for v in value.values() for ref in result_refs(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in result_refs(v)]
    return []


def substitute(value: Any, results: dict[str, Any]) -> Any:
    """The payload with each ``$result`` reference replaced by that parent's result (or
    the value at its dotted path: object keys, or list indexes); ValidationError names a
    reference that leads nowhere."""
    if _is_ref(value):
        return _follow(value["$result"], results)
    if isinstance(value, dict):
        return {k: substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, results) for v in value]
    return value


def _follow(ref: str, results: dict[str, Any]) -> Any:
    key, *path = ref.split(".")
    if key not in results:
        raise ValidationError("payload", f"$result {ref!r}: dependency {key!r} has no result")
    found = results[key]
    for i, step in enumerate(path):
        here = ".".join([key, *path[: i + 1]])
        if isinstance(found, dict) and step in found:
            found = found[step]
        elif isinstance(found, list) and step.isdigit() and int(step) < len(found):
            found = found[int(step)]
        else:
            raise ValidationError("payload", f"$result {ref!r}: no value at {here!r}")
    return found
