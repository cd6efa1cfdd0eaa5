"""Helpers shared by the HTTP tests (this module holds no tests of its own).

``serve_app`` runs the real application (real Redis, real relay) on aiohttp's test
server; ``Daemon`` runs a real ``taskd serve`` subprocess.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from taskd import config
from taskd.engine.known import KnownTypes
from taskd.engine.pool import WorkerPool
from taskd.engine.registry import Registry, TaskType
from taskd.engine.relay import Relay, RelayConfig
from taskd.http.app import AppState, build_app
from taskd.store import Store
from tests.procs import DaemonProcess

FAST_RELAY = RelayConfig(flush_interval_s=0.05, stats_interval_s=0.2, block_ms=50)


def settings(tmp: Path | str = "/tmp", **flags: str) -> config.Settings:
    """Settings from flags (dotted names, textual values), rate limit off unless given."""
    dotted = {k.replace("__", "."): v for k, v in flags.items()}
    dotted.setdefault("server.rate_limit_per_s", "0")
    return config.load(None, {"HOME": str(tmp)}, dotted)


def registry_with(**handlers: Callable[..., Any]) -> Registry:
    """The built-in types plus test handlers."""
    registry = Registry.from_modules([])
    for name, func in handlers.items():
        registry.add(
            TaskType(name=name, func=func, description=f"test type {name}", example={"n": 1})
        )
    return registry


@asynccontextmanager
async def serve_app(
    store: Store,
    *,
    registry: Registry | None = None,
    pool: WorkerPool | None = None,
    relay_config: RelayConfig = FAST_RELAY,
    **flags: str,
) -> AsyncIterator[TestClient[Any, Any]]:
    """The real app on a loopback port, its relay reading, until the block exits."""
    relay = Relay(store, relay_config)
    registry = registry or registry_with()
    state = AppState(
        store=store,
        pool=pool,
        registry=registry,
        relay=relay,
        settings=settings(**flags),
        known_types=KnownTypes(store, (t.name for t in registry)),
    )
    async with TestClient(TestServer(build_app(state))) as client:
        await asyncio.wait_for(relay.ready.wait(), 10)
        yield client


class Daemon(DaemonProcess):
    """A real `taskd serve` child on a free port, using the given Redis."""

    def __init__(
        self, data_dir: Path, redis_url: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(data_dir, "--redis-url", redis_url, *args, env=env)
