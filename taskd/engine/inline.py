"""Run a coroutine inside the current asyncio task, in a context of its own.

asyncio gives every Task its own copy of the context variables, so a handler that binds
one (a log field, a request id) never leaks it into the next task. But a Task per handler
costs the pool three more trips around the event loop per task (schedule the new Task,
finish it, wake whoever waits for it), and with a hundred short tasks ending together
those trips are where a runner's time goes. Driving the handler's coroutine from the
runner's own Task, each step under ``context.run``, keeps the isolation without them:
what a Task does per step, minus the scheduling.
"""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class InContext(Generic[T]):
    """``await InContext(context, coro)`` awaits ``coro`` with every one of its steps run
    in ``context``.

    What the coroutine yields (a future it waits for, or None to let others run) goes to
    the enclosing Task unchanged, and what the Task sends or throws back (a result, or a
    cancellation) goes to the coroutine, so timeouts, cancellation and ``current_task()``
    behave as if it were awaited directly. ``context`` must not be entered elsewhere.
    Afterwards ``suspended`` tells whether the coroutine ever waited: one that never did
    gave the event loop no turn.
    """

    __slots__ = ("context", "coro", "suspended")

    def __init__(self, context: contextvars.Context, coro: Coroutine[Any, Any, T]) -> None:
        self.context = context
        self.coro = coro
        self.suspended = False

    def __await__(self) -> Generator[Any, Any, T]:
        run, send, throw = self.context.run, self.coro.send, self.coro.throw
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = run(send, value) if error is None else run(throw, error)
            except StopIteration as stop:
                result: T = stop.value
                return result
            self.suspended = True
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # thrown in by the Task: cancellation, or close()
                value, error = None, exc
