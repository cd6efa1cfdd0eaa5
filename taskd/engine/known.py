"""Which task types a submit may name: built-in ones, this node's, and live workers' ones.

A node's registry holds the built-in types and the handler modules it was started with.
In a fleet that is not enough: an API-only node (``taskd serve --workers 0``) without
handler modules must accept ``resize_image`` when a worker node runs it, and in a rolling
deploy a node must accept a type only the other half of the fleet has. Worker heartbeats
list the types each worker runs and the queues it consumes; this reads them, cached
briefly, so a submit of a known type costs no extra round trip.

The rule: a type is accepted when it is built in (every taskd runs those), registered on
this node, or run by a live worker (heartbeat within its lease) of the target queue.
Anything else is refused with a ValidationError (422 on the API) naming the type.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from taskd.errors import ValidationError
from taskd.model import parse_queue_spec
from taskd.store import Store

#: The types of ``taskd.handlers``: every taskd process registers them.
BUILTIN_TYPES: Final = frozenset(
    {"api_call", "data_processing", "email", "file_conversion", "report_generation"}
)
#: Heartbeats older than this are read again before a submit is answered from them.
MAX_AGE_S: Final = 2.0
#: A type not in the cache triggers a fresh read at most this often (a just-started
#: worker's types are seen at once; a flood of unknown types costs Redis little).
MIN_REFRESH_S: Final = 0.2


def types_by_queue(heartbeats: Iterable[Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """Queue name -> the task types some live worker of it runs, from heartbeat records.

    Records of builds that do not list their types contribute nothing.
    """
    found: dict[str, set[str]] = {}
    for info in heartbeats:
        queues, types = info.get("queues"), info.get("task_types")
        if not isinstance(queues, list) or not isinstance(types, list):
            continue
        names = {t for t in types if isinstance(t, str)}
        for spec in queues:
            try:
                queue, _cap = parse_queue_spec(str(spec))
            except ValidationError:
                continue
            found.setdefault(queue, set()).update(names)
    return {queue: frozenset(names) for queue, names in found.items()}


class KnownTypes:
    """The submit-time type check, shared by the HTTP API and the Python client."""

    def __init__(
        self,
        store: Store,
        local: Iterable[str] = (),
        *,
        max_age_s: float = MAX_AGE_S,
        min_refresh_s: float = MIN_REFRESH_S,
    ) -> None:
        self.store = store
        #: Always accepted, without a look at the heartbeats.
        self.local = BUILTIN_TYPES | frozenset(local)
        self.max_age_s = max_age_s
        self.min_refresh_s = min_refresh_s
        self._by_queue: dict[str, frozenset[str]] = {}
        self._read_at = -float("inf")
        self._reading = asyncio.Lock()

    async def check(self, task_type: str, queue: str) -> None:
        """Return if ``task_type`` may be submitted to ``queue``; ValidationError if not."""
        if task_type in self.local:
            return
        if task_type in await self._types_of(queue, self.max_age_s):
            return
        if task_type in await self._types_of(queue, self.min_refresh_s):
            return
        raise ValidationError(
            "task_type",
            f"unknown task type {task_type!r}: not built in, not registered on this node, "
            f"and no live worker of queue {queue!r} runs it",
        )

    async def runnable(self, queue: str) -> frozenset[str]:
        """The types live workers of ``queue`` run (heartbeats at most ``max_age_s`` old)."""
        return await self._types_of(queue, self.max_age_s)

    async def elsewhere(self) -> dict[str, list[str]]:
        """Types live workers run that are not ``local``, each with its queues (sorted)."""
        await self._types_of("", self.max_age_s)
        found: dict[str, list[str]] = {}
        for queue, types in sorted(self._by_queue.items()):
            for name in types - self.local:
                found.setdefault(name, []).append(queue)
        return dict(sorted(found.items()))

    async def _types_of(self, queue: str, max_age_s: float) -> frozenset[str]:
        if time.monotonic() - self._read_at > max_age_s:
            async with self._reading:  # concurrent submits share one read
                if time.monotonic() - self._read_at > max_age_s:
                    self._by_queue = types_by_queue(await self.store.workers())
                    self._read_at = time.monotonic()
        return self._by_queue.get(queue, frozenset())
