"""run_in_context: a coroutine driven from the caller's task, in a context of its own."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from taskd.engine.inline import InContext

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def test_result_context_and_task_are_those_expected() -> None:
    """The coroutine's value comes back; what it sets stays in its context; it runs in the
    caller's asyncio task."""

    async def handler() -> tuple[str, asyncio.Task[object] | None]:
        request_id.set("r-1")
        await asyncio.sleep(0)  # yields a bare None to the task
        await asyncio.sleep(0.001)  # waits for a future
        return request_id.get(), asyncio.current_task()

    context = contextvars.copy_context()
    seen, task = await InContext(context, handler())
    assert seen == "r-1"
    assert task is asyncio.current_task()
    assert request_id.get() == "none"  # the caller's context is untouched
    assert context[request_id] == "r-1"


async def test_exceptions_come_out_of_the_await() -> None:
    async def broken() -> None:
        await asyncio.sleep(0)
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        await InContext(contextvars.copy_context(), broken())


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    entered = asyncio.Event()
    cleaned_up = asyncio.Event()

    async def long() -> None:
        entered.set()
        try:
            await asyncio.sleep(30)
        finally:
            cleaned_up.set()

    job = asyncio.ensure_future(InContext(contextvars.copy_context(), long()))
    await entered.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert cleaned_up.is_set()


async def test_timeouts_inside_the_coroutine_work_and_leave_the_task_uncancelled() -> None:
    """asyncio.timeout() cancels the current task and uncancels it; through the driver the
    count must come out even, or a later cancel would be mistaken."""

    async def impatient() -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(30)
        except TimeoutError:
            return "timed out"
        return "slept"

    assert await InContext(contextvars.copy_context(), impatient()) == "timed out"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_a_swallowed_cancel_lets_the_coroutine_finish() -> None:
    entered = asyncio.Event()

    async def stubborn() -> str:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "kept going"
        return "slept"

    job = asyncio.ensure_future(InContext(contextvars.copy_context(), stubborn()))
    await entered.wait()
    job.cancel()
    assert await job == "kept going"
