"""taskd: a real-time task queue on Redis Streams.

Public API: :class:`Client` (async) and :class:`SyncClient` (blocking, thread-safe) to
submit and inspect tasks, :func:`task` to register a handler, :class:`Context` (what a
handler receives), :class:`Retry` and :class:`Fail` (what a handler may raise), and the
error classes.
"""

from taskd.canvas import Workflow, chain, chord, group, result, step
from taskd.client import Client, Page
from taskd.engine.context import Context
from taskd.engine.registry import task
from taskd.errors import (
    ConfigError,
    Fail,
    RedisUnavailable,
    Retry,
    StaleAttempt,
    TaskdError,
    TaskNotFound,
    ValidationError,
    WrongState,
)
from taskd.model import Status, Task
from taskd.sync_client import SyncClient

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ConfigError",
    "Context",
    "Fail",
    "Page",
    "RedisUnavailable",
    "Retry",
    "StaleAttempt",
    "Status",
    "SyncClient",
    "Task",
    "TaskNotFound",
    "TaskdError",
    "ValidationError",
    "Workflow",
    "WrongState",
    "__version__",
    "chain",
    "chord",
    "group",
    "result",
    "step",
    "task",
]
