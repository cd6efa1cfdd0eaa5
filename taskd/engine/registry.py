"""Task types and their handlers: ``@taskd.task`` marks functions, a Registry collects them.

The decorator only attaches metadata to the function; registries are built by the
composition root from modules, so there is no process-wide mutable registry.

A payload is checked at submit time by the type's ``schema`` (see
:mod:`taskd.engine.payload_schema`),
then by its ``validate`` function. ``validate`` takes ``(payload)`` or, when its rules
depend on configuration (api_call's address policy), ``(payload, settings)``; it raises
:class:`~taskd.errors.ValidationError` naming the field (a plain ValueError is reported
against ``payload``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from taskd.config import Settings
from taskd.engine import payload_schema
from taskd.errors import HandlerImportError, ValidationError
from taskd.model import TASK_TYPE_NAME

F = TypeVar("F", bound=Callable[..., Any])
MARK = "__taskd_task__"
_RST_QUOTES = re.compile(r"(?::[a-z:]+:)?`{1,2}([^`]+)`{1,2}_?")
BUILTIN_MODULES = (
    "taskd.handlers.api_call",
    "taskd.handlers.data_processing",
    "taskd.handlers.email",
    "taskd.handlers.file_conversion",
    "taskd.handlers.report_generation",
)


@dataclass(frozen=True, slots=True)
class TaskType:
    """A registered task type: its handler and what the API tells users about it."""

    name: str
    func: Callable[..., Any]
    description: str = ""
    schema: dict[str, Any] | None = None
    example: dict[str, Any] = field(default_factory=dict)
    validate: Callable[..., None] | None = None

    @property
    def validate_wants_settings(self) -> bool:
        """Whether ``validate`` takes ``(payload, settings)`` rather than ``(payload)``."""
        if self.validate is None:
            return False
        params = inspect.signature(self.validate).parameters.values()
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return sum(p.kind in positional for p in params) >= 2

    @property
    def is_async(self) -> bool:
        """Coroutine functions run on the loop; plain functions run in a thread."""
        return inspect.iscoroutinefunction(self.func)


def task(
    name: str,
    *,
    description: str | None = None,
    schema: dict[str, Any] | None = None,
    example: dict[str, Any] | None = None,
    validate: Callable[..., None] | None = None,
) -> Callable[[F], F]:
    """Mark ``func`` as the handler of task type ``name`` (docstring = description).

    A ``schema`` outside the supported subset raises ValueError here, at import time.
    """
    if not TASK_TYPE_NAME.fullmatch(name):
        raise ValueError(f"invalid task type name {name!r}")
    if schema is not None:
        payload_schema.check_schema(schema, f"task {name!r} schema")

    def mark(func: F) -> F:
        doc = inspect.getdoc(func) or ""
        setattr(
            func,
            MARK,
            TaskType(
                name=name,
                func=func,
                description=description or _plain(doc.split("\n\n")[0]),
                schema=schema,
                example=example or {},
                validate=validate,
            ),
        )
        return func

    return mark


class Registry:
    """Task type name -> TaskType, filled from modules.

    ``settings`` are handed to validators that ask for them; without settings those
    validators apply the defaults (the strictest policy).
    """

    def __init__(self, types: Iterable[TaskType] = (), *, settings: Settings | None = None) -> None:
        self._types: dict[str, TaskType] = {}
        self.settings = settings
        for t in types:
            self.add(t)

    @classmethod
    def from_modules(
        cls, names: Iterable[str], *, builtins: bool = True, settings: Settings | None = None
    ) -> Registry:
        """Import each module and collect its marked handlers (user modules win)."""
        registry = cls(settings=settings)
        for name in (*BUILTIN_MODULES, *names) if builtins else tuple(names):
            registry.add_module(import_handlers(name))
        return registry

    def add(self, task_type: TaskType) -> None:
        """Register one type; a later registration of the same name replaces it."""
        self._types[task_type.name] = task_type

    def add_module(self, module: ModuleType) -> None:
        """Register every function the module marked with ``@taskd.task``."""
        for value in vars(module).values():
            marked = getattr(value, MARK, None)
            if isinstance(marked, TaskType):
                self.add(marked)

    def get(self, name: str) -> TaskType | None:
        """The type's handler, or None when no handler is registered for it."""
        return self._types.get(name)

    def checks_payload(self, name: str) -> bool:
        """Whether :meth:`check_payload` has anything to do for this type (a schema, a
        validator, or an unknown name to refuse): callers skip parsing the payload if not."""
        found = self._types.get(name)
        return found is None or found.schema is not None or found.validate is not None

    def check_payload(self, name: str, payload: dict[str, Any]) -> None:
        """Validate a payload at submit time: the type's schema, then its validator."""
        found = self._types.get(name)
        if found is None:
            raise ValidationError("task_type", f"unknown task type {name!r}")
        if found.schema is not None:
            payload_schema.validate(found.schema, payload, "payload")
        if found.validate is None:
            return
        try:
            if found.validate_wants_settings:
                found.validate(payload, self.settings)
            else:
                found.validate(payload)
        except ValueError as exc:  # user validators may raise the plain builtin
            raise ValidationError("payload", str(exc)) from exc

    def __iter__(self) -> Iterator[TaskType]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __len__(self) -> int:
        return len(self._types)


def _plain(text: str) -> str:
    """A docstring paragraph as plain text: one line, reStructuredText roles and
    quotes (``x``, `x`, :func:`x`) dropped, for the API, the dashboard and the CLI."""
    return _RST_QUOTES.sub(r"\1", text.replace("\n", " "))


def import_handlers(name: str) -> ModuleType:
    """Import a handler module, turning any failure into one clear error."""
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise HandlerImportError(
            f"cannot import handler module {name!r}: {type(exc).__name__}: {exc}"
            + _where_to_put(name, exc),
            module=name,
        ) from exc


def _where_to_put(name: str, exc: Exception) -> str:
    """A hint when the module itself (not something it imports) was found nowhere."""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if not missing or not (name == missing or name.startswith(missing + ".")):
        return ""
    top = name.split(".", maxsplit=1)[0]
    return (
        f" (searched the current directory {os.getcwd()} and the Python path: run taskd"
        f" where {top!r} lives, or add the directory that contains it to PYTHONPATH)"
    )
