"""Every exception taskd raises, under one root, each carrying structured fields.

Lua scripts fail with ``TASKD_<CODE> <detail>``; :func:`taskd.store` maps those codes to
these classes, and the HTTP layer maps these classes to status codes in one table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class TaskdError(Exception):
    """Root of every error taskd raises on purpose."""

    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(TaskdError):
    """A setting is missing, unknown or has a value of the wrong type or range."""

    code = "config"

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config: {key}: {message}", key=key)
        self.key = key


class EmbeddedServerError(TaskdError):
    """The managed redis/valkey child could not be found, started or is too old."""

    code = "embedded_server"


class RedisUnavailable(TaskdError):
    """Redis did not answer; the caller may retry later."""

    code = "redis_unavailable"


class ValidationError(TaskdError):
    """A submitted value is invalid; ``field`` names it."""

    code = "validation"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.field = field


class TaskNotFound(TaskdError):
    """No task with this id exists (or it expired after retention)."""

    code = "not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found", task_id=task_id)
        self.task_id = task_id


class WorkflowNotFound(TaskdError):
    """No workflow with this id exists (or it expired after retention)."""

    code = "not_found"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id} not found", workflow_id=workflow_id)
        self.workflow_id = workflow_id


class UniqueKeyTaken(TaskdError):
    """A workflow task's unique key already names a live task (nothing was written)."""

    code = "conflict"

    def __init__(self, field: str, unique_key: str) -> None:
        super().__init__(f"{field}: {unique_key!r} already names a live task", field=field)
        self.field = field


class WrongState(TaskdError):
    """The task is in a status that does not allow the requested action."""

    code = "conflict"

    def __init__(self, task_id: str, status: str, action: str, *, kind: str = "task") -> None:
        super().__init__(
            f"cannot {action} {kind} {task_id}: it is {status}",
            **{f"{kind}_id": task_id},
            status=status,
            action=action,
        )
        self.task_id = task_id
        self.status = status
        self.action = action


class WorkflowWrongState(WrongState):
    """The workflow's status does not allow the action (cancel or delete): a 409 like a
    task's, whose message and details name the workflow rather than a task."""

    def __init__(self, workflow_id: str, status: str, action: str) -> None:
        super().__init__(workflow_id, status, action, kind="workflow")


class StaleAttempt(TaskdError):
    """A worker reported on an attempt it no longer holds (it was presumed dead)."""

    code = "stale_attempt"

    def __init__(self, task_id: str, attempt: int) -> None:
        super().__init__(
            f"attempt {attempt} of task {task_id} is no longer held",
            task_id=task_id,
            attempt=attempt,
        )
        self.task_id = task_id
        self.attempt = attempt


class HandlerImportError(TaskdError):
    """A configured handler module could not be imported."""

    code = "handler_import"


class Retry(Exception):
    """Raised by a handler to ask for another attempt, after ``delay_s`` if given."""

    def __init__(self, message: str = "retry requested", *, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class Fail(Exception):
    """Raised by a handler to fail the task at once, without further attempts."""


def describe(exc: BaseException, base: Path | None = None) -> str:
    """A handler's unexpected exception as a client may read it: an OSError names its
    files relative to ``base`` (the data dir), never as absolute server paths."""
    if isinstance(exc, OSError) and exc.filename is not None:
        names = [_relative(f, base) for f in (exc.filename, exc.filename2) if f is not None]
        return f"{type(exc).__name__}: {exc.strerror or 'failed'}: {' -> '.join(names)}"
    return f"{type(exc).__name__}: {exc}"


def _relative(name: object, base: Path | None) -> str:
    path = Path(os.fsdecode(name)) if isinstance(name, str | bytes) else Path(str(name))
    if base is not None and path.is_relative_to(base):
        return path.relative_to(base).as_posix()
    return path.name if path.is_absolute() else path.as_posix()
