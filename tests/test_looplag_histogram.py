"""The loop-lag monitor keeps every measurement in a histogram, for percentiles over time."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from taskd.daemon.looplag import LoopLag
from tests.conftest import eventually

NAME = "taskd_event_loop_lag_sampled_seconds"
STALL_S = 0.3  # inside the (0.25, 0.5] bucket, with room for a noisy machine


def _count(registry: CollectorRegistry, le: str = "+Inf") -> float:
    return registry.get_sample_value(f"{NAME}_bucket", {"le": le}) or 0.0


async def test_a_stall_of_the_loop_lands_in_its_bucket() -> None:
    """One 300 ms stall of a real loop shows in /metrics' histogram as one sample between
    the 0.25 and 0.5 s bounds, next to the ordinary samples the monitor keeps taking."""
    lag = LoopLag(interval_s=0.02, warn_s=10.0)
    registry = CollectorRegistry()
    lag.expose(registry)
    stop = asyncio.Event()
    monitor = asyncio.create_task(lag.run(stop))

    async def samples() -> float:
        return _count(registry)

    before = await eventually(samples)
    time.sleep(STALL_S)  # noqa: ASYNC251 - the stall under test: it must block the loop

    async def measured_the_stall() -> bool:
        return _count(registry) > before

    await eventually(measured_the_stall)
    stop.set()
    await monitor
    stalled = _count(registry, "0.5") - _count(registry, "0.25")
    assert stalled == 1, f"{stalled} samples in (0.25, 0.5]; max lag {lag.max_s:.3f} s"
    assert _count(registry) == registry.get_sample_value(f"{NAME}_count")
    assert registry.get_sample_value("taskd_event_loop_lag_max_seconds") == lag.max_s
