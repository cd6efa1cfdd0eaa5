"""Submit arguments to a TaskSpec, checked the same way for every caller.

The HTTP API, :class:`taskd.Client` and :class:`taskd.SyncClient` all call
:func:`checked_spec` and then :class:`taskd.engine.known.KnownTypes`, so a submit the
API refuses with 422 (an unknown task type, a payload its type's schema or validator
rejects, a field out of range) raises the same :class:`~taskd.errors.ValidationError`
in Python, before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from taskd.config import Settings
from taskd.config.schedule import Schedule
from taskd.engine.registry import Registry
from taskd.errors import ConfigError, ValidationError
from taskd.model import TaskSpec, make_spec


def checked_spec(
    registry: Registry, settings: Settings, task_type: Any, payload: Any, **fields: Any
) -> TaskSpec:
    """Validate one submit's fields (model.make_spec) and, for a type ``registry`` has,
    its payload (the type's schema and validator). Raises ValidationError naming the
    field; ``fields`` are make_spec's keywords (name, priority, queue, delay_s, ...).

    Whether the type may be submitted at all is :class:`taskd.engine.known.KnownTypes`'
    question (built in, registered here, or run by a live worker of the queue): it needs
    Redis, so callers ask it after this; a type only a worker elsewhere runs has its
    payload checked by that worker's handler when it runs.
    """
    tasks = settings.tasks
    spec = make_spec(
        task_type,
        payload,
        default_max_retries=tasks.max_retries,
        default_timeout_s=tasks.timeout_s,
        max_payload_bytes=settings.server.max_body_bytes,
        **fields,
    )
    if spec.task_type in registry and registry.checks_payload(spec.task_type):
        # The JSON the worker will see (tuples as lists, ...), and a copy the check may not
        # change; parsed only for types that check anything.
        registry.check_payload(spec.task_type, orjson.loads(spec.payload_json))
    return spec


def check_schedules(registry: Registry, settings: Settings, schedules: Sequence[Schedule]) -> None:
    """Check each ``[[schedule]]`` as a submit of its task would be checked, at startup.

    A payload its type refuses would otherwise be enqueued at every occurrence and fail
    each time; ConfigError names the schedule's key (``schedule[i].payload.<key>``). Types
    this node does not run have their payload checked by the worker that runs them.
    """
    for i, schedule in enumerate(schedules):
        try:
            checked_spec(
                registry,
                settings,
                schedule.task_type,
                schedule.payload,
                queue=schedule.queue,
                priority=schedule.priority,
            )
        except ValidationError as exc:
            detail = str(exc).removeprefix(f"{exc.field}: ")
            raise ConfigError(f"schedule[{i}].{exc.field}", detail) from None
