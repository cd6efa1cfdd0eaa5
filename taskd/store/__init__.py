"""Typed access to taskd's Redis data: the only package that imports redis.

Every multi-step state change is one Lua script from ``taskd/scripts`` (loaded once,
called by EVALSHA); script error codes become :mod:`taskd.errors` exceptions in
:mod:`taskd.store.translate`, and connection problems become ``RedisUnavailable``.
"""

from __future__ import annotations

from taskd.store.events import EventOps
from taskd.store.flowrepair import FlowRepair
from taskd.store.history import HistoryOps
from taskd.store.queues import QueueOps
from taskd.store.records import CancelRequests, Event, Fetched, Reclaimed, stream_id_key
from taskd.store.tasks import TaskOps
from taskd.store.upkeep import UpkeepOps
from taskd.store.worker import WorkerOps

__all__ = ["CancelRequests", "Event", "Fetched", "Reclaimed", "Store", "stream_id_key"]


class Store(TaskOps, WorkerOps, UpkeepOps, QueueOps, EventOps, HistoryOps, FlowRepair):
    """Everything taskd does with Redis, by area (see the mixin modules)."""
