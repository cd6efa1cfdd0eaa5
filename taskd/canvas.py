"""Building workflows in Python: ``chain``, ``group``, ``chord`` and the general
:class:`Workflow`, each turned into the body ``POST /api/workflows`` takes.

    flow = taskd.chord(
        taskd.group(*(taskd.step("fetch", {"url": u}) for u in urls)),
        taskd.step("merge", {}),
    )
    view = await client.submit_workflow(flow, name="crawl")

Shapes nest: a chain's member may be a group, a group's member a chain. Keys are given
at submit time (``<task_type>-<n>``) unless a step names its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from taskd.errors import ValidationError


@dataclass(eq=False)
class Step:
    """One task of a workflow: its type, payload and submit options (priority, queue,
    max_retries, timeout_s, delay_s, run_at, unique_key, name, run_on_failure)."""

    task_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def step(
    task_type: str, payload: dict[str, Any] | None = None, *, key: str | None = None, **options: Any
) -> Step:
    """A task to place in a chain, group or chord."""
    return Step(task_type, dict(payload or {}), key, options)


@dataclass(eq=False)
class Shape:
    """A chain (members one after another) or a group (members side by side)."""

    kind: str
    members: list[Step | Shape]

    def body(self, name: str = "workflow") -> dict[str, Any]:
        """The ``POST /api/workflows`` body of this shape."""
        tasks: list[dict[str, Any]] = []
        _place(self, [], tasks, _Keys(_named(self)))
        return {"name": name, "tasks": tasks}


def chain(*members: Step | Shape) -> Shape:
    """Each member starts once the one before it completed (its results in
    ``ctx.parents``); a group in a chain waits for, and is waited for by, all its
    members."""
    return Shape("chain", _checked(members))


def group(*members: Step | Shape) -> Shape:
    """Members run side by side."""
    return Shape("group", _checked(members))


def chord(header: Shape | Iterable[Step | Shape], callback: Step | Shape) -> Shape:
    """A group whose callback starts once every member completed, exactly once."""
    members = header if isinstance(header, Shape) else group(*header)
    return chain(members, callback)


def _checked(members: tuple[Step | Shape, ...]) -> list[Step | Shape]:
    if not members:
        raise ValidationError("members", "a chain or group needs at least one member")
    for m in members:
        if not isinstance(m, Step | Shape):
            raise ValidationError("members", f"expected taskd.step(...) or a shape, got {m!r}")
    return list(members)


def _named(node: Step | Shape) -> set[str]:
    """The keys that steps of ``node`` name themselves."""
    if isinstance(node, Step):
        return {node.key} if node.key is not None else set()
    return {key for member in node.members for key in _named(member)}


class _Keys:
    """Hands out unique keys: a step's own, else ``<task_type>-<n>`` that no step
    names itself (``named``), wherever that step comes."""

    def __init__(self, named: set[str]) -> None:
        self.named = named
        self.used: set[str] = set()
        self.n = 0

    def take(self, s: Step) -> str:
        if s.key is not None:
            if s.key in self.used:
                raise ValidationError("key", f"two steps use the key {s.key!r}")
            self.used.add(s.key)
            return s.key
        while True:
            self.n += 1
            key = f"{s.task_type.replace('.', '_').replace(':', '_')}-{self.n}"
            if key not in self.used and key not in self.named:
                self.used.add(key)
                return key


def _place(
    node: Step | Shape, after: list[str], tasks: list[dict[str, Any]], keys: _Keys
) -> list[str]:
    """Append ``node``'s tasks, its first ones depending on ``after``; returns its last
    ones (what a following member waits for)."""
    if isinstance(node, Step):
        key = keys.take(node)
        tasks.append(
            {"key": key, "task_type": node.task_type, "payload": node.payload}
            | node.options
            # In place order (a chord's header as given), so ctx.parents follows it.
            | {"depends_on": list(dict.fromkeys([*after, *node.options.get("depends_on", [])]))}
        )
        return [key]
    if node.kind == "chain":
        for member in node.members:
            after = _place(member, after, tasks, keys)
        return after
    return [key for member in node.members for key in _place(member, after, tasks, keys)]


class Workflow:
    """A DAG named task by task: ``wf.add("sum", "data_processing", {...},
    depends_on=["fetch"])``; submit it with ``client.submit_workflow(wf)``."""

    def __init__(self, name: str = "workflow") -> None:
        self.name = name
        self.tasks: list[dict[str, Any]] = []

    def add(
        self,
        key: str,
        task_type: str,
        payload: dict[str, Any] | None = None,
        *,
        depends_on: Iterable[str] = (),
        **options: Any,
    ) -> str:
        """Add one task; returns its key (validated with the whole at submit)."""
        self.tasks.append(
            {
                "key": key,
                "task_type": task_type,
                "payload": dict(payload or {}),
                "depends_on": list(depends_on),
                **options,
            }
        )
        return key

    def body(self, name: str | None = None) -> dict[str, Any]:
        """The ``POST /api/workflows`` body."""
        return {"name": name or self.name, "tasks": list(self.tasks)}


def result(key: str, path: str = "") -> dict[str, str]:
    """A payload value replaced by dependency ``key``'s result (or a dotted path in it)
    when the task starts: ``{"records": taskd.result("fetch", "body")}``."""
    return {"$result": f"{key}.{path}" if path else key}
