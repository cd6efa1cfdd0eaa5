"""Plain records the store returns, and how script replies become them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskd import keys
from taskd.model import Status, Task, TaskSpec
from taskd.store.translate import translated


@dataclass(frozen=True, slots=True)
class Fetched:
    """Tasks one fetch reserved, and whether their queue is paused."""

    tasks: list[Task]
    paused: bool


@dataclass(frozen=True, slots=True)
class Renewal:
    """What one lease renewal learned: held ids asked to cancel, held ids no longer this
    worker's, and ids of entries in its name it did not hold, handed back."""

    cancels: set[str]
    lost: set[str]
    orphans: list[str]


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """What one reclaim sweep over one stream did."""

    cursor: str
    requeued: list[str]
    failed: list[str]
    deleted: list[str]


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a queue's events stream."""

    queue: str
    event_id: str
    kind: str
    ts: int
    task: dict[str, Any]


class CancelRequests:
    """Pub/sub subscription to the cancel channel; close it when done."""

    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub
        self._subscribed = False

    async def get(self, timeout_s: float = 1.0) -> str | None:
        """The next requested task id, or None after ``timeout_s`` without one."""
        async with translated():
            if not self._subscribed:
                await self._pubsub.subscribe(keys.CANCEL_CHANNEL)
                self._subscribed = True
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=timeout_s
            )
        if message is None or message.get("type") != "message":
            return None
        return str(message["data"])

    async def close(self) -> None:
        """Unsubscribe and release the connection."""
        await self._pubsub.aclose()


def new_task(spec: TaskSpec, status: str, sid: str, due: str | int, now: int) -> Task:
    """The Task enqueue.lua stored, rebuilt from the spec without reading it back."""
    return Task(
        id=spec.id,
        name=spec.name,
        task_type=spec.task_type,
        queue=spec.queue,
        priority=spec.priority,
        payload=spec.payload,
        status=Status.PENDING if status == "pending" else Status(status),  # (the enum call is slow)
        max_retries=spec.max_retries,
        timeout_s=spec.timeout_s,
        created_at=now,
        updated_at=now,
        run_at=int(due) if due != "" else None,
        unique_key=spec.unique_key,
        sid=sid,
    )


def enqueue_args(spec: TaskSpec) -> list[Any]:
    return [
        spec.id,
        spec.name,
        spec.task_type,
        spec.queue,
        spec.priority,
        spec.payload_json,
        spec.max_retries,
        spec.timeout_s,
        "" if spec.delay_ms is None else spec.delay_ms,
        "" if spec.run_at_ms is None else spec.run_at_ms,
        spec.unique_key or "",
    ]


# What enqueue.lua leaves out of a created event (the stream and the AOF stay smaller).
_CREATED_DEFAULTS = {"progress": "0", "retry_count": "0", "attempt": "0", "run_at": ""}


def task_fields(fields: dict[str, str]) -> dict[str, Any]:
    """The task part of an event entry: its flat fields (the changed ones, with id and
    status; a created event's defaults restored)."""
    task = {k: v for k, v in fields.items() if k not in ("kind", "ts")}
    if fields.get("kind") == "created":
        task = _CREATED_DEFAULTS | {"created_at": fields["ts"], "updated_at": fields["ts"]} | task
    return task


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id ('<ms>-<seq>', or just '<ms>') as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
