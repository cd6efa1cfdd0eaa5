"""The public Python client against real Redis and a real worker pool."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

import taskd
from taskd.engine.context import Context
from taskd.store import Store
from taskd.store.enqueue import SHARED_MAX
from tests.conftest import CLUSTER, eventually
from tests.pooltools import registry_of, running_pool


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[taskd.Client]:
    """A client on the session Redis that knows the types these tests submit."""
    c = taskd.Client(redis_url, registry=registry_of(echo=echo, stepper=echo))
    yield c
    await c.close()


async def echo(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload."""
    return payload


async def test_submit_and_wait_returns_the_result(
    client: taskd.Client, store: Store, queue: str
) -> None:
    """wait() follows events until the task finishes and returns it."""
    async with running_pool(store, registry_of(echo=echo), queue):
        task = await client.submit("echo", {"x": 1}, queue=queue, priority=9, name="hello")
        done = await client.wait(task.id, timeout_s=10)
    assert done.status == taskd.Status.COMPLETED
    assert done.result == {"x": 1}
    assert (done.name, done.priority) == ("hello", 9)


async def test_wait_times_out(client: taskd.Client, queue: str) -> None:
    """wait() raises TimeoutError when nothing runs the task in time."""
    task = await client.submit("echo", queue=queue)
    with pytest.raises(TimeoutError):
        await client.wait(task.id, timeout_s=0.2)


async def test_submit_validation_names_the_field(client: taskd.Client, queue: str) -> None:
    """Bad arguments raise ValidationError naming the field, and nothing is stored."""
    with pytest.raises(taskd.ValidationError) as info:
        await client.submit("echo", queue=queue, priority=11)
    assert info.value.field == "priority"
    with pytest.raises(taskd.ValidationError) as info:
        await client.submit("echo", queue=queue, run_at="tomorrow")
    assert info.value.field == "run_at"
    assert (await client.stats(queue))["total"] == 0


async def test_submit_many_is_all_or_nothing(client: taskd.Client, queue: str) -> None:
    """One bad item rejects the whole batch with its index; a good batch is stored."""
    with pytest.raises(taskd.ValidationError) as info:
        await client.submit_many(
            [
                {"task_type": "echo", "queue": queue},
                {"task_type": "echo", "queue": queue, "priority": 0},
            ]
        )
    assert info.value.field == "[1].priority"
    assert (await client.stats(queue))["total"] == 0
    tasks = await client.submit_many(
        [{"task_type": "echo", "payload": {"i": i}, "queue": queue} for i in range(100)]
    )
    assert [t.payload["i"] for t in tasks] == list(range(100))
    assert (await client.stats(queue))["pending"] == 100


async def test_submit_many_refuses_items_that_are_not_mappings(
    client: taskd.Client, queue: str
) -> None:
    """An item that is not a mapping is refused as "[i]: must be an object", as the
    API's batch answers, and a single mapping or a string instead of a list as "items"
    (a string item was read as its characters: "[0].e: unknown argument"); nothing is
    stored."""
    good = {"task_type": "echo", "queue": queue}
    for items, field in (
        ([good, "echo"], "[1]"),
        ([good, None], "[1]"),
        ([("task_type", "echo")], "[0]"),
        (good, "items"),
        ("echo", "items"),
        (None, "items"),
    ):
        with pytest.raises(taskd.ValidationError) as info:
            await client.submit_many(items)  # type: ignore[arg-type]
        assert info.value.field == field, (items, info.value)
    assert (await client.stats(queue))["total"] == 0


async def test_wait_refuses_a_timeout_that_is_not_a_number(
    client: taskd.Client, queue: str
) -> None:
    """wait() and wait_workflow() refuse a timeout_s that is not a number of seconds
    (text, None, a bool, NaN) with ValidationError naming it, instead of a TypeError,
    a ValueError or, for True, a one-second wait."""
    task = await client.submit("echo", queue=queue)
    for bad in ("3", None, True, float("nan")):
        with pytest.raises(taskd.ValidationError) as info:
            await client.wait(task.id, timeout_s=bad)  # type: ignore[arg-type]
        assert info.value.field == "timeout_s", bad
        with pytest.raises(taskd.ValidationError) as info:
            await client.wait_workflow("0" * 32, timeout_s=bad)  # type: ignore[arg-type]
        assert info.value.field == "timeout_s", bad


async def test_list_filters_by_status_and_pages(client: taskd.Client, queue: str) -> None:
    """list() pages newest first and filters by status."""
    tasks = await client.submit_many([{"task_type": "echo", "queue": queue} for _ in range(25)])
    for task in tasks[:5]:
        await client.cancel(task.id)
    page = await client.list(limit=10, queue=queue)
    assert [t.id for t in page.tasks] == [t.id for t in reversed(tasks)][:10]
    assert page.next_cursor
    rest = await client.list(limit=100, queue=queue, cursor=page.next_cursor)
    assert len(rest.tasks) == 15
    assert rest.next_cursor is None
    cancelled = await client.list(status="cancelled", queue=queue)
    assert sorted(t.id for t in cancelled.tasks) == sorted(t.id for t in tasks[:5])


async def test_list_refuses_bad_filters_as_the_api_does(client: taskd.Client, queue: str) -> None:
    """list() raises ValidationError naming a bad status, queue or limit, like the API's 422."""
    for kwargs, field in (
        ({"status": "bogus"}, "status"),
        ({"status": ["failed", "nope"]}, "status"),
        ({"queue": "a b"}, "queue"),
        ({"limit": "5"}, "limit"),
        ({"limit": 0}, "limit"),
    ):
        with pytest.raises(taskd.ValidationError) as info:
            await client.list(**kwargs)
        assert info.value.field == field, kwargs


async def test_stats_and_task_ids_are_checked_as_the_api_does(
    client: taskd.Client, queue: str
) -> None:
    """stats() refuses a malformed queue name and get/cancel/retry/wait a task id that is
    not text, with ValidationError naming the argument (the API answers 422), instead of
    zeros or a TypeError."""
    with pytest.raises(taskd.ValidationError) as info:
        await client.stats(queue="a b")
    assert info.value.field == "queue"
    for method in (client.get, client.cancel, client.retry, client.wait):
        for bad in (None, 123, ""):
            with pytest.raises(taskd.ValidationError) as info:
                await method(bad)  # type: ignore[arg-type]
            assert info.value.field == "task_id", (method, bad)


async def test_a_payload_with_nan_is_refused_as_the_api_does(
    client: taskd.Client, queue: str
) -> None:
    """NaN and infinities are not JSON: the API refuses them, so the client does too
    (it used to store them as null and return the payload with NaN), and stores nothing."""
    for bad in (float("nan"), float("inf"), [1.0, -float("inf")]):
        with pytest.raises(taskd.ValidationError) as info:
            await client.submit("echo", {"x": {"y": bad}}, queue=queue)
        assert info.value.field == "payload"
    assert (await client.stats(queue))["total"] == 0
    task = await client.submit("echo", {"x": None, "y": 1.5}, queue=queue)
    assert (await client.get(task.id)).payload == {"x": None, "y": 1.5}


async def test_list_takes_several_statuses_as_the_api_does(
    client: taskd.Client, queue: str
) -> None:
    """list(status=...) takes a comma-separated string or a list, as ?status=a,b does."""
    tasks = await client.submit_many([{"task_type": "echo", "queue": queue} for _ in range(3)])
    await client.cancel(tasks[0].id)
    want = sorted(t.id for t in tasks)
    for status in ("pending,cancelled", ["pending", "cancelled"]):
        page = await client.list(status=status, queue=queue)
        assert sorted(t.id for t in page.tasks) == want, status


async def test_cancel_and_retry(client: taskd.Client, queue: str) -> None:
    """A cancelled task can be retried back to pending."""
    task = await client.submit("echo", queue=queue)
    assert await client.cancel(task.id) == "cancelled"
    again = await client.retry(task.id)
    assert again.status == taskd.Status.PENDING
    with pytest.raises(taskd.WrongState):
        await client.retry(task.id)


async def test_unique_key_returns_existing_task(client: taskd.Client, queue: str) -> None:
    """A second submit with the same unique_key returns the first task."""
    first, second = await asyncio.gather(
        client.submit("echo", {"n": 1}, queue=queue, unique_key="k"),
        client.submit("echo", {"n": 2}, queue=queue, unique_key="k"),
    )
    assert first.id == second.id


async def test_progress_is_visible_while_running(
    client: taskd.Client, store: Store, queue: str
) -> None:
    """Progress reported by a handler is readable before the task completes."""
    gate = asyncio.Event()

    async def stepper(ctx: Context, payload: dict[str, Any]) -> None:
        await ctx.progress(40, "forty")
        await gate.wait()

    async with running_pool(store, registry_of(stepper=stepper), queue, progress_interval_s=0):
        task = await client.submit("stepper", queue=queue)

        async def at_forty() -> bool:
            t = await client.get(task.id)
            return t.progress == 40 and t.progress_message == "forty"

        await eventually(at_forty)
        gate.set()
        done = await client.wait(task.id, timeout_s=10)
    assert done.progress == 100


async def _evalsha_calls(redis_url: str) -> int:
    """How many EVALSHA commands the server has run (INFO commandstats)."""
    admin = await Store.connect(redis_url)
    try:
        stats = await admin.redis.info("commandstats")
    finally:
        await admin.close()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_thousands_of_concurrent_submits_all_succeed(
    client: taskd.Client, queue: str
) -> None:
    """More concurrent submits than the connection pool holds all succeed (no 'Too many
    connections'), each creating its own task."""
    tasks = await asyncio.gather(
        *(client.submit("echo", {"i": i}, queue=queue) for i in range(2000))
    )
    assert [t.payload["i"] for t in tasks] == list(range(2000))
    assert len({t.id for t in tasks}) == 2000
    assert (await client.stats(queue))["pending"] == 2000


@pytest.mark.skipif(
    CLUSTER, reason="on a Cluster single submits go through the cluster client, bounded, not shared"
)
async def test_concurrent_submits_share_round_trips(
    client: taskd.Client, queue: str, redis_url: str
) -> None:
    """Submits made at the same moment by many coroutines travel in shared scripts: far
    fewer EVALSHA calls than tasks."""
    await client.submit("echo", queue=queue)  # connected, queue created
    before = await _evalsha_calls(redis_url)
    await asyncio.gather(*(client.submit("echo", queue=queue) for _ in range(500)))
    assert await _evalsha_calls(redis_url) - before < 100
    assert (await client.stats(queue))["pending"] == 501


@pytest.mark.skipif(
    CLUSTER, reason="on a Cluster single submits go through the cluster client, bounded, not shared"
)
async def test_a_burst_of_submits_is_spread_over_the_lanes_in_short_scripts(
    client: taskd.Client, queue: str
) -> None:
    """A burst of concurrent submits travels in shared scripts of SHARED_MAX tasks at
    most, several in flight at once on the held connections, not as one long script."""
    await client.submit("echo", queue=queue)  # connected, queue created
    enqueuer = (await client.store())._enqueuer
    assert enqueuer is not None
    sizes: list[int] = []
    in_flight = most_in_flight = 0
    round_trip = enqueuer.round_trip

    async def noted(conn: Any, specs: Any) -> Any:
        nonlocal in_flight, most_in_flight
        sizes.append(len(specs))
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            return await round_trip(conn, specs)
        finally:
            in_flight -= 1

    enqueuer.round_trip = noted  # type: ignore[method-assign]
    tasks = await asyncio.gather(
        *(client.submit("echo", {"i": i}, queue=queue) for i in range(300))
    )
    assert [t.payload["i"] for t in tasks] == list(range(300))
    assert sum(sizes) == 300
    assert max(sizes) <= SHARED_MAX
    assert most_in_flight >= 2
    assert (await client.stats(queue))["pending"] == 301


async def test_a_bad_submit_among_concurrent_ones_fails_alone(
    client: taskd.Client, queue: str
) -> None:
    """One caller's invalid submit raises ValidationError for that caller only; the
    concurrent good ones are created."""
    good = [client.submit("echo", {"i": i}, queue=queue) for i in range(50)]
    bad = client.submit("echo", {"f": object()}, queue=queue)
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(results[-1], taskd.ValidationError)
    assert all(isinstance(r, taskd.Task) for r in results[:-1])
    assert (await client.stats(queue))["pending"] == 50


async def test_concurrent_submits_of_one_unique_key_create_one_task(
    client: taskd.Client, queue: str
) -> None:
    """Forty concurrent submits with one unique key, batched or not, yield one task."""
    tasks = await asyncio.gather(
        *(client.submit("echo", {"n": n}, queue=queue, unique_key="same") for n in range(40))
    )
    assert len({t.id for t in tasks}) == 1
    assert (await client.stats(queue))["total"] == 1


async def test_submit_survives_a_script_flush(
    client: taskd.Client, store: Store, queue: str
) -> None:
    """After Redis forgot its scripts (SCRIPT FLUSH, a restart), single and concurrent
    submits reload them and succeed, each task created once."""
    await client.submit("echo", queue=queue)
    await store.redis.script_flush()
    await client.submit("echo", queue=queue)
    await store.redis.script_flush()
    await asyncio.gather(*(client.submit("echo", queue=queue) for _ in range(20)))
    assert (await client.stats(queue))["pending"] == 22


async def test_submit_after_redis_closed_the_connection(
    client: taskd.Client, store: Store, queue: str
) -> None:
    """A held connection Redis closed while it rested is replaced before sending; the
    next submit succeeds."""
    await client.submit("echo", queue=queue)
    await store.redis.client_kill_filter(_type="normal", skipme=True)
    await eventually(lambda: _no_other_clients(store))
    task = await client.submit("echo", queue=queue)
    assert (await client.get(task.id)).status == taskd.Status.PENDING


async def _no_other_clients(store: Store) -> bool:
    return len(await store.redis.client_list(_type="normal")) <= 1


async def test_a_submit_cancelled_while_waiting_is_not_created(
    client: taskd.Client, queue: str
) -> None:
    """A caller cancelled before its shared round trip was sent creates no task."""
    await client.submit("echo", queue=queue)
    calls = [asyncio.ensure_future(client.submit("echo", queue=queue)) for _ in range(10)]
    await asyncio.sleep(0)  # every call has started: the first few are on the wire
    calls[-1].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[-1], asyncio.CancelledError)
    assert (await client.stats(queue))["pending"] == 10


async def test_submit_of_an_unknown_type_is_refused_as_the_api_does(
    redis_url: str, queue: str
) -> None:
    """A task type no handler is known for raises ValidationError on task_type (the API's
    422), and nothing is stored."""
    async with taskd.Client(redis_url) as plain:
        with pytest.raises(taskd.ValidationError) as info:
            await plain.submit("nosuch", {}, queue=queue)
        assert info.value.field == "task_type"
        with pytest.raises(taskd.ValidationError) as info:
            await plain.submit_many([{"task_type": "nosuch", "queue": queue}])
        assert info.value.field == "[0].task_type"
        assert (await plain.stats(queue))["total"] == 0


async def test_submit_of_a_bad_builtin_payload_is_refused_as_the_api_does(
    redis_url: str, queue: str
) -> None:
    """A built-in type's payload its schema refuses (email to "bad") raises
    ValidationError naming the payload field, and nothing is stored."""
    async with taskd.Client(redis_url) as plain:
        with pytest.raises(taskd.ValidationError) as info:
            await plain.submit("email", {"to": "bad"}, queue=queue)
        assert info.value.field.startswith("payload")
        assert (await plain.stats(queue))["total"] == 0
        good = await plain.submit("email", {"to": "a@example.com", "subject": "hi"}, queue=queue)
        assert good.status == taskd.Status.PENDING


async def test_client_knows_the_types_of_its_handler_modules(redis_url: str, queue: str) -> None:
    """Types of the handler modules a client is given (as `taskd serve --handlers`) are
    accepted."""
    async with taskd.Client(redis_url, handlers=["tests.daemon_handlers"]) as c:
        task = await c.submit("sleepy", {"s": 0}, queue=queue)
        assert task.task_type == "sleepy"


async def test_handlers_given_as_one_string_name_modules_not_characters(
    redis_url: str, queue: str
) -> None:
    """handlers="a.b" or "a.b,c.d" names modules as TASKD_HANDLERS and --handlers do, for
    both clients (a string was read as its characters: "cannot import handler module
    't'")."""
    async with taskd.Client(redis_url, handlers="tests.daemon_handlers") as c:
        assert (await c.submit("sleepy", {"s": 0}, queue=queue)).task_type == "sleepy"
    with taskd.SyncClient(redis_url, handlers="tests.daemon_handlers, taskd.handlers") as s:
        assert "sleepy" in s.registry
        assert (await asyncio.to_thread(s.submit, "sleepy", {"s": 0}, queue=queue)).id


async def test_a_redis_url_that_is_not_text_is_a_type_error() -> None:
    """Client(5) and SyncClient(5) raise TypeError naming redis_url when made, not an
    AttributeError from deep inside the first call."""
    for make in (taskd.Client, taskd.SyncClient):
        with pytest.raises(TypeError, match="redis_url"):
            make(5)  # type: ignore[arg-type]


async def test_type_a_live_worker_runs_is_accepted_as_the_api_does(
    redis_url: str, store: Store, queue: str
) -> None:
    """A type only a live worker of the queue runs (its heartbeat lists it) is accepted by
    both clients, as the API accepts it; for another queue it is refused."""
    info = {"consumer": f"h:1:{queue}", "queues": [queue], "task_types": [f"{queue}_remote"]}
    await store.heartbeat(f"h:1:{queue}", info, ttl_s=30)
    try:
        async with taskd.Client(redis_url) as plain:
            task = await plain.submit(f"{queue}_remote", {"any": 1}, queue=queue)
            with pytest.raises(taskd.ValidationError):
                await plain.submit(f"{queue}_remote", queue=f"{queue}x")
        with taskd.SyncClient(redis_url) as sync:
            again = await asyncio.to_thread(sync.submit, f"{queue}_remote", queue=queue)
        assert {task.task_type, again.task_type} == {f"{queue}_remote"}
    finally:
        await store.unregister(f"h:1:{queue}")


SCRIPT_OF_SEVERAL_LOOPS = """
import asyncio, sys, taskd

client = taskd.Client(sys.argv[1])
mail = {"to": "a@example.com", "subject": "s"}
for _ in range(3):
    task = asyncio.run(client.submit("email", mail, queue=sys.argv[2]))
    print(task.status)
print(asyncio.run(client.stats(sys.argv[2]))["total"])
asyncio.run(client.close())
"""


async def test_one_client_serves_one_asyncio_run_after_another(redis_url: str, queue: str) -> None:
    """A script that calls asyncio.run for each call on one module-level Client gets an
    answer each time: the client reconnects on the new event loop (a submit from a
    second loop used to create its task and then raise "Event loop is closed")."""
    script = [sys.executable, "-c", SCRIPT_OF_SEVERAL_LOOPS, redis_url, queue]
    done = await asyncio.to_thread(
        subprocess.run, script, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-600:]
    assert done.stderr == ""
    assert done.stdout.split() == ["pending", "pending", "pending", "3"]
