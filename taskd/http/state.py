"""Typed application state: what the daemon hands the app, and what the app builds itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from taskd.config import Settings
from taskd.engine.known import KnownTypes
from taskd.engine.pool import WorkerPool
from taskd.engine.registry import Registry
from taskd.engine.relay import Relay
from taskd.store import Store

if TYPE_CHECKING:
    from taskd.http.metrics import Metrics
    from taskd.http.ws import Hub


@dataclass(frozen=True, slots=True)
class AppState:
    """The engine objects handlers use; built by the composition root (the daemon)."""

    store: Store
    pool: WorkerPool | None
    registry: Registry
    relay: Relay
    settings: Settings
    known_types: KnownTypes


@dataclass(frozen=True, slots=True)
class Services:
    """Objects of the HTTP layer itself, built once per application by ``build_app``."""

    hub: Hub
    metrics: Metrics
    openapi: dict[str, Any]


STATE = web.AppKey("state", AppState)
SERVICES = web.AppKey("services", Services)
