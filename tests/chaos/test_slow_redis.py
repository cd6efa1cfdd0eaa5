"""Fault 5, slow Redis: 50 ms each way between the daemons and Redis (100 ms round trips)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from taskd.model import Status
from taskd.store import Store
from tests.chaos.harness import (
    SIZES,
    Cluster,
    Reply,
    all_finished,
    census,
    check_stats,
    duplicates,
    http,
    read_executions,
    report,
    specs,
    statuses,
    submit,
)
from tests.chaos.proxy import LatencyProxy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SIZES.timeout_s)]
DELAY_S = 0.05
WORKERS = 8


@pytest.fixture
async def slow_url(redis_url: str) -> AsyncIterator[tuple[str, LatencyProxy]]:
    """A URL of the session's Redis through the latency proxy."""
    target = urlsplit(redis_url)
    proxy = LatencyProxy(target.hostname or "127.0.0.1", target.port or 6379, DELAY_S)
    port = await proxy.start()
    yield f"redis://127.0.0.1:{port}", proxy
    await proxy.close()


async def test_slow_redis_still_completes_everything(
    slow_url: tuple[str, LatencyProxy], store: Store, queue: str, tmp_path: Path
) -> None:
    """With 100 ms to Redis, tasks complete, timeouts hold, the API answers or sheds load."""
    url, proxy = slow_url
    config = {"tasks": {"lease_s": 5, "sweep_interval_s": 0.2}}
    cluster = Cluster(tmp_path, url, queue, workers=WORKERS, config=config)
    rng = random.Random(5)
    api: list[Reply] = []
    held_peak = finishing_peak = 0
    try:
        daemons = await cluster.start(2)
        payloads = [{"ms": rng.randint(10, 50)} for _ in range(SIZES.slow_tasks)]
        started = time.monotonic()
        tasks = await submit(store, specs("work", payloads, queue, max_retries=3))
        hung = await submit(store, specs("hang", [{}] * 4, queue, max_retries=0, timeout_s=1))
        ids = [t.id for t in tasks + hung]
        body = {"task_type": "work", "payload": {"ms": 1}, "queue": queue}
        while not await all_finished(store, queue, ids):
            assert time.monotonic() - started < SIZES.timeout_s - 20
            target = daemons[len(api) % 2].url
            api.append(await http("GET", f"{target}/api/tasks/stats/overview"))
            posted = await http("POST", f"{target}/api/tasks", body)
            api.append(posted)
            if posted.status == 201:
                ids.append(posted.body["id"])
            workers = await http("GET", f"{target}/api/workers")
            for worker in workers.body["workers"]:
                # Held = running + prefetched + done but still being written (slots freed
                # at the handler's return are refilled while the outcome is written).
                held_peak = max(held_peak, worker["held"] - worker["finishing"])
                finishing_peak = max(finishing_peak, worker["finishing"])
            await asyncio.sleep(0.1)  # load pacing, not synchronisation
        elapsed = time.monotonic() - started
        final = await census(store, queue, ids)
        await check_stats(store, queue, final)
        runs = read_executions(cluster.chaos_dir)
    finally:
        cluster.close()

    counts = statuses(final)
    assert counts == {"completed": len(ids) - len(hung), "failed": len(hung)}, counts
    for task in hung:
        done = final[task.id]
        assert done is not None
        assert done.status == Status.FAILED
        assert done.error == "timed out after 1s"
        assert done.completed_at is not None
        assert done.started_at is not None
        assert (done.completed_at - done.started_at) / 1000 < 1 + 2.0
    codes = Counter(r.status for r in api)
    assert set(codes) <= {200, 201, 429, 503}, codes
    slowest = max(r.elapsed_s for r in api)
    assert slowest < 2.5, slowest
    assert held_peak <= 2 * WORKERS  # running + prefetched, never more
    # Results in flight: about one window per write round trip, never growing without end.
    assert finishing_peak <= 2 * 2 * WORKERS
    assert proxy.peak_in_flight < 1 << 20
    report(
        "slow_redis",
        delay_each_way_ms=int(DELAY_S * 1000),
        tasks=len(ids),
        elapsed_s=round(elapsed, 1),
        api_codes=dict(codes),
        api_p50_ms=round(statistics.median(r.elapsed_s for r in api) * 1000, 1),
        api_max_ms=round(slowest * 1000, 1),
        held_peak=held_peak,
        finishing_peak=finishing_peak,
        proxy_peak_in_flight_bytes=proxy.peak_in_flight,
        duplicate_executions=duplicates(runs),
        timeouts_enforced=len(hung),
    )
