"""The submit-time type check against live workers' heartbeats, on real Redis."""

from __future__ import annotations

import pytest

from taskd import keys
from taskd.engine.known import BUILTIN_TYPES, KnownTypes, types_by_queue
from taskd.engine.registry import Registry
from taskd.errors import ValidationError
from taskd.store import Store
from tests.conftest import eventually
from tests.pooltools import registry_of, running_pool


def heartbeat(queue: str, *types: str) -> dict[str, object]:
    """A worker's heartbeat record as the pool writes it."""
    return {"consumer": f"h:1:{queue}", "queues": [queue], "task_types": list(types)}


async def refused(known: KnownTypes, task_type: str, queue: str) -> bool:
    """True when the check refuses the type for the queue."""
    try:
        await known.check(task_type, queue)
    except ValidationError:
        return True
    return False


def test_builtin_types_match_the_builtin_registry() -> None:
    """BUILTIN_TYPES names exactly the types every taskd registers."""
    assert {t.name for t in Registry.from_modules([])} == BUILTIN_TYPES


def test_types_by_queue_reads_caps_and_skips_old_records() -> None:
    """Queue specs with a cap count for the queue; records without task_types add nothing."""
    found = types_by_queue(
        [
            {"queues": ["emails:4", "default"], "task_types": ["send"]},
            {"queues": ["default"]},  # a build that does not list its types
            {"queues": ["default"], "task_types": ["resize"]},
        ]
    )
    assert found == {"emails": frozenset({"send"}), "default": frozenset({"send", "resize"})}


async def test_type_of_a_live_worker_is_accepted_for_its_queue_only(
    store: Store, queue: str
) -> None:
    """A live worker's type is accepted for the queue it consumes, refused for another."""
    await store.heartbeat(f"h:1:{queue}", heartbeat(queue, f"{queue}_type"), ttl_s=30)
    known = KnownTypes(store)
    try:
        await known.check(f"{queue}_type", queue)
        with pytest.raises(ValidationError, match=f"'{queue}_type'.*'other'"):
            await known.check(f"{queue}_type", "other")
    finally:
        await store.unregister(f"h:1:{queue}")


async def test_builtin_and_local_types_need_no_worker(store: Store, queue: str) -> None:
    """Built-in types and this node's own types are accepted with no worker at all."""
    known = KnownTypes(store, ["mine"])
    await known.check("email", queue)
    await known.check("mine", queue)


async def test_worker_started_after_a_refusal_is_seen_at_once(store: Store, queue: str) -> None:
    """A refusal does not stick for the cache's lifetime: a new worker's type is accepted
    as soon as its first heartbeat is written (the cache re-reads on a miss)."""
    known = KnownTypes(store, max_age_s=3600, min_refresh_s=0.05)
    assert await refused(known, f"{queue}_new", queue)
    await store.heartbeat(f"h:1:{queue}", heartbeat(queue, f"{queue}_new"), ttl_s=30)
    try:
        await eventually(lambda: _accepted(known, f"{queue}_new", queue), timeout_s=5)
    finally:
        await store.unregister(f"h:1:{queue}")


async def test_type_of_a_dead_worker_is_refused(store: Store, queue: str) -> None:
    """Once a worker's heartbeat expires, its types are no longer accepted."""
    await store.heartbeat(f"h:1:{queue}", heartbeat(queue, f"{queue}_gone"), ttl_s=0.3)
    known = KnownTypes(store, max_age_s=0.05, min_refresh_s=0.05)
    await known.check(f"{queue}_gone", queue)
    await eventually(lambda: refused(known, f"{queue}_gone", queue), timeout_s=5)


async def _accepted(known: KnownTypes, task_type: str, queue: str) -> bool:
    return not await refused(known, task_type, queue)


async def test_a_started_pool_is_already_visible_to_other_nodes(store: Store, queue: str) -> None:
    """Once a pool reports started, another node's check accepts the types only it runs:
    the first heartbeat is written before, so a submit right after a worker's start is
    never refused as an unknown type."""

    async def only_here(ctx: object, payload: object) -> None:
        return None

    elsewhere = KnownTypes(store)  # a node without the handler
    async with running_pool(store, registry_of(only_here=only_here), queue) as pool:
        assert await store.redis.get(keys.worker_info(pool.consumer)) is not None
        await elsewhere.check("only_here", queue)
