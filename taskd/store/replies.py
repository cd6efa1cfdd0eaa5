"""The scripts' reply codes, the one table mirrored by ``CODE`` in scripts/_lib.lua, and
the one function that turns a code into its exception.

A script fails with an error reply ``TASKD_<CODE> detail``; a batch script answers an item
it could not do with the bare code in that item's place. Either way :func:`error_for`
decides what the code means, so no caller compares reply strings of its own.
"""

from __future__ import annotations

from enum import StrEnum

from taskd.errors import StaleAttempt, TaskNotFound, WrongState


class ReplyCode(StrEnum):
    """Codes a script answers with instead of doing what it was asked."""

    STALE = "TASKD_STALE"  # the attempt is no longer the one held (fencing)
    NOTFOUND = "TASKD_NOTFOUND"  # no such task
    STATE = "TASKD_STATE"  # not allowed in the task's status


CODES = frozenset(code.value for code in ReplyCode)


def is_code(reply: object) -> bool:
    """Whether a batch script's per-item reply is a code rather than a result."""
    return isinstance(reply, str) and reply in CODES


def error_for(
    code: str, detail: str = "", *, task_id: str = "", attempt: int = 0, action: str = ""
) -> Exception | None:
    """The exception a reply code stands for (None for a reply that is no code).

    ``detail`` is the text after the code in an error reply (a key, an id and attempt, a
    status); ``task_id``, ``attempt`` and ``action`` say what the caller asked, where the
    detail does not.
    """
    if code == ReplyCode.STALE:
        found_id, _, found_attempt = detail.partition(" ")
        return StaleAttempt(found_id or task_id, int(found_attempt or attempt))
    if code == ReplyCode.NOTFOUND:
        return TaskNotFound(detail.rsplit(":", 1)[-1] if detail else task_id)
    if code == ReplyCode.STATE:
        return WrongState(task_id, detail, action or "change")
    return None


def raise_for(reply: object, *, task_id: str, attempt: int = 0) -> None:
    """Raise the exception of a batch item's reply when it is a code."""
    if is_code(reply):
        error = error_for(str(reply), task_id=task_id, attempt=attempt)
        assert error is not None  # every code has one
        raise error
