"""Streaming aggregates and field filters for data_processing: no eval, constant memory.

An operation is ``{"op": "sum", "field": "amount"}``; ``count``, ``sum``, ``mean``, ``min``,
``max``, ``distinct`` and ``group_by`` (with ``aggregates``) exist, each optionally with
``where`` conditions. A condition is ``{"field": "city", "op": "==", "value": "Oslo"}``.
Values from CSV arrive as strings, so comparisons with a number coerce the record's value.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from taskd.errors import ValidationError
from taskd.handlers.records import RecordError, cell, tidy, to_number

NUMERIC_OPS: Final = ("sum", "mean", "min", "max")
SIMPLE_OPS: Final = ("count", *NUMERIC_OPS, "distinct")
ALL_OPS: Final = (*SIMPLE_OPS, "group_by")
MAX_OPERATIONS = 50
MAX_CONDITIONS = 50
MAX_GROUPS = 10_000
MAX_DISTINCT = 100_000
SHOWN_DISTINCT = 100
_ORDER: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
CONDITION_OPS: Final = ("==", "!=", *_ORDER, "in", "not_in", "contains", "exists")


def get_field(record: Mapping[str, Any], name: str) -> Any:
    """A field's value; ``a.b`` reaches into nested objects unless ``a.b`` is a key itself."""
    if name in record:
        return record[name]
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``field op value`` test."""

    field: str
    op: str
    value: Any

    def __call__(self, record: Mapping[str, Any]) -> bool:
        return _TESTS[self.op](get_field(record, self.field), self.value)


def _equal(actual: Any, expected: Any) -> bool:
    if expected is None:
        return actual is None or actual == ""
    if isinstance(expected, bool):
        text = str(expected).lower()
        return actual is expected or (isinstance(actual, str) and actual.lower() == text)
    if isinstance(expected, int | float):
        number = to_number(actual)
        return number is not None and number == expected
    return actual is not None and cell(actual) == expected


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def test(actual: Any, expected: Any) -> bool:
        if isinstance(expected, int | float):
            number = to_number(actual)
            return number is not None and compare(number, expected)
        return isinstance(actual, str) and compare(actual, expected)

    return test


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, list):
        return any(_equal(item, expected) for item in actual)
    return isinstance(actual, str) and str(expected) in actual


# condition op -> test(actual value, payload value)
_TESTS: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "==": _equal,
    "!=": lambda actual, expected: not _equal(actual, expected),
    "in": lambda actual, options: any(_equal(actual, o) for o in options),
    "not_in": lambda actual, options: not any(_equal(actual, o) for o in options),
    "contains": _contains,
    "exists": lambda actual, wanted: (actual is not None and actual != "") == bool(wanted),
    **{op: _ordered(compare) for op, compare in _ORDER.items()},
}


class Aggregate:
    """Base of the streaming aggregates: ``add`` per record, ``result`` at the end."""

    def __init__(self, spec: Operation) -> None:
        self.spec = spec

    def add(self, record: Mapping[str, Any]) -> None:
        """Take one record into account."""
        raise NotImplementedError

    def result(self) -> dict[str, Any]:
        """The operation's entry in the task result."""
        raise NotImplementedError


class Count(Aggregate):
    """Records, or records where ``field`` has a value."""

    def __init__(self, spec: Operation) -> None:
        super().__init__(spec)
        self.n = 0

    def add(self, record: Mapping[str, Any]) -> None:
        if not self.spec.field or get_field(record, self.spec.field) not in (None, ""):
            self.n += 1

    def result(self) -> dict[str, Any]:
        return {"value": self.n}


class Numeric(Aggregate):
    """sum, mean, min or max of a numeric field; non-numeric values are counted as skipped."""

    def __init__(self, spec: Operation) -> None:
        super().__init__(spec)
        self.n = 0
        self.skipped = 0
        self.total: int | float = 0
        self.low: int | float | None = None
        self.high: int | float | None = None

    def add(self, record: Mapping[str, Any]) -> None:
        raw = get_field(record, self.spec.field)
        number = to_number(raw)
        if number is None:
            self.skipped += raw not in (None, "")
            return
        self.n += 1
        self.total += number
        self.low = number if self.low is None or number < self.low else self.low
        self.high = number if self.high is None or number > self.high else self.high

    def result(self) -> dict[str, Any]:
        value = {
            "sum": self.total,
            "mean": self.total / self.n if self.n else None,
            "min": self.low,
            "max": self.high,
        }[self.spec.op]
        entry: dict[str, Any] = {"value": tidy(value), "n": self.n}
        if self.skipped:
            entry["skipped"] = self.skipped
        return entry


class Distinct(Aggregate):
    """Number of distinct values (exact up to MAX_DISTINCT) and a sorted sample of them."""

    def __init__(self, spec: Operation) -> None:
        super().__init__(spec)
        self.seen: set[str] = set()
        self.capped = False

    def add(self, record: Mapping[str, Any]) -> None:
        value = get_field(record, self.spec.field)
        if value is None or value == "":
            return
        if len(self.seen) < MAX_DISTINCT:
            self.seen.add(cell(value))
        elif cell(value) not in self.seen:
            self.capped = True

    def result(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "value": len(self.seen),
            "values": sorted(self.seen)[:SHOWN_DISTINCT],
        }
        if self.capped:
            entry["capped"] = True
        return entry


class GroupBy(Aggregate):
    """Aggregates per distinct value of ``field`` (at most MAX_GROUPS groups)."""

    def __init__(self, spec: Operation) -> None:
        super().__init__(spec)
        self.groups: dict[str, list[Aggregate]] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        key = cell(get_field(record, self.spec.field))
        aggregates = self.groups.get(key)
        if aggregates is None:
            if len(self.groups) >= MAX_GROUPS:
                raise RecordError(f"group_by {self.spec.field!r} has more than {MAX_GROUPS} groups")
            aggregates = self.groups[key] = [make(sub) for sub in self.spec.aggregates]
        for aggregate in aggregates:
            aggregate.add(record)

    def result(self) -> dict[str, Any]:
        groups = []
        for key in sorted(self.groups):
            row: dict[str, Any] = {"key": key}
            for aggregate in self.groups[key]:
                row[aggregate.spec.label] = aggregate.result()["value"]
            groups.append(row)
        return {"groups": groups}


class Filtered(Aggregate):
    """An aggregate behind its operation's ``where`` conditions."""

    def __init__(self, spec: Operation, inner: Aggregate) -> None:
        super().__init__(spec)
        self.inner = inner

    def feed(self, record: Mapping[str, Any]) -> None:
        """Pass the record on when every condition holds."""
        if all(condition(record) for condition in self.spec.where):
            self.inner.add(record)

    def add(self, record: Mapping[str, Any]) -> None:
        self.feed(record)

    def result(self) -> dict[str, Any]:
        return self.inner.result()


_KINDS: Final[Mapping[str, type[Aggregate]]] = {
    "count": Count,
    "sum": Numeric,
    "mean": Numeric,
    "min": Numeric,
    "max": Numeric,
    "distinct": Distinct,
    "group_by": GroupBy,
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One parsed operation."""

    op: str
    field: str = ""
    where: tuple[Condition, ...] = ()
    aggregates: tuple[Operation, ...] = ()

    @property
    def label(self) -> str:
        """Its name inside a group: ``count`` or ``sum(amount)``."""
        return f"{self.op}({self.field})" if self.field else self.op


def make(spec: Operation) -> Aggregate:
    """A fresh aggregate for an operation."""
    inner = _KINDS[spec.op](spec)
    return Filtered(spec, inner) if spec.where else inner


@dataclass(frozen=True, slots=True)
class Plan:
    """The parsed ``filter`` and ``operations`` of a payload."""

    conditions: tuple[Condition, ...]
    operations: tuple[Operation, ...]
    aggregates: list[Aggregate] = field(default_factory=list)

    def start(self) -> Plan:
        """A plan with fresh aggregates, ready to take records."""
        return Plan(self.conditions, self.operations, [make(op) for op in self.operations])

    def add(self, record: Mapping[str, Any]) -> bool:
        """Feed one record; False when the top-level filter drops it."""
        if not all(condition(record) for condition in self.conditions):
            return False
        for aggregate in self.aggregates:
            aggregate.add(record)
        return True

    def results(self) -> list[dict[str, Any]]:
        """One entry per operation, in payload order."""
        entries = []
        for spec, aggregate in zip(self.operations, self.aggregates, strict=True):
            head: dict[str, Any] = {"op": spec.op} | ({"field": spec.field} if spec.field else {})
            entries.append(head | aggregate.result())
        return entries


def parse_plan(payload: Mapping[str, Any], default: Sequence[Mapping[str, Any]]) -> Plan:
    """Parse ``filter`` and ``operations`` (``default`` when absent); ValidationError names
    the offending field."""
    conditions = parse_conditions(payload.get("filter", []), "payload.filter")
    raw = payload.get("operations", list(default))
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_OPERATIONS:
        raise ValidationError(
            "payload.operations",
            f"must be a list of 1-{MAX_OPERATIONS} "
            'operations like {"op": "sum", "field": "amount"}',
        )
    operations = tuple(
        _parse_op(item, f"payload.operations[{i}]", ALL_OPS) for i, item in enumerate(raw)
    )
    return Plan(conditions, operations)


def _parse_op(item: Any, where: str, allowed: Sequence[str]) -> Operation:
    if not isinstance(item, dict):
        raise ValidationError(where, "must be an object with an 'op'")
    op = item.get("op")
    if op not in allowed:
        raise ValidationError(f"{where}.op", f"must be one of {', '.join(allowed)}")
    name = item.get("field", "")
    if not isinstance(name, str) or (op != "count" and not name.strip()):
        raise ValidationError(f"{where}.field", f"{op} needs the name of a field")
    unknown = sorted(set(item) - {"op", "field", "where", "aggregates"})
    if unknown:
        raise ValidationError(f"{where}.{unknown[0]}", "is not an operation setting")
    conditions = parse_conditions(item.get("where", []), f"{where}.where")
    subs: tuple[Operation, ...] = ()
    if op == "group_by":
        raw = item.get("aggregates", [{"op": "count"}])
        if not isinstance(raw, list) or not 0 < len(raw) <= MAX_OPERATIONS:
            raise ValidationError(f"{where}.aggregates", "must be a list of operations")
        subs = tuple(
            _parse_op(sub, f"{where}.aggregates[{i}]", SIMPLE_OPS) for i, sub in enumerate(raw)
        )
    elif "aggregates" in item:
        raise ValidationError(f"{where}.aggregates", "only group_by takes aggregates")
    return Operation(str(op), name, conditions, subs)


def parse_conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    """Parse a list of ``{"field", "op", "value"}`` conditions (all must hold)."""
    if not isinstance(raw, list) or len(raw) > MAX_CONDITIONS:
        raise ValidationError(where, f"must be a list of at most {MAX_CONDITIONS} conditions")
    conditions = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, dict) or set(item) - {"field", "op", "value"}:
            raise ValidationError(at, "must be an object with field, op and value")
        name, op, value = item.get("field"), item.get("op", "=="), item.get("value")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"{at}.field", "must name a field")
        if op not in CONDITION_OPS:
            raise ValidationError(f"{at}.op", f"must be one of {' '.join(CONDITION_OPS)}")
        _check_operand(op, value, f"{at}.value")
        conditions.append(Condition(name, op, value))
    return tuple(conditions)


def _check_operand(op: str, value: Any, at: str) -> None:
    scalar = (str, int, float, bool, type(None))
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not all(isinstance(v, scalar) for v in value):
            raise ValidationError(at, f"{op} needs a list of plain values")
    elif op == "exists":
        if not isinstance(value, bool):
            raise ValidationError(at, "exists needs true or false")
    elif op in _ORDER:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValidationError(at, f"{op} needs a number or a string")
    elif not isinstance(value, scalar):
        raise ValidationError(at, f"{op} needs a plain value (string, number, boolean, null)")
