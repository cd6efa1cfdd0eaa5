"""A small JSON-Schema subset for ``@taskd.task("x", schema={...})`` payload checks.

Full JSON Schema needs a dependency and allows far more than a task payload needs; this
covers the keywords people actually write for payloads and refuses the rest when the
handler is registered, so a typo (``"requird"``) or an unsupported keyword (``"oneOf"``)
fails loudly at startup instead of silently accepting everything.

Supported: ``type`` (a name or a list of names), ``properties``, ``required``,
``additionalProperties`` (bool or schema), ``items``, ``enum``, ``const``, ``minimum``,
``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``minLength``, ``maxLength``,
``pattern``, ``minItems``, ``maxItems``, ``minProperties``, ``maxProperties``; and the
annotations ``title``, ``description``, ``default``, ``examples``, ``format``, ``$schema``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from taskd.errors import ValidationError

_TYPES: Final[Mapping[str, Callable[[Any], bool]]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}
_ANNOTATIONS: Final = frozenset(
    {"title", "description", "default", "examples", "format", "$schema"}
)
_NUMBER_KEYS: Final = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_COUNT_KEYS: Final = (
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
)
_KEYWORDS: Final = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "pattern",
        *_NUMBER_KEYS,
        *_COUNT_KEYS,
        *_ANNOTATIONS,
    }
)


def check_schema(schema: Any, where: str = "schema") -> None:
    """Raise ValueError when ``schema`` uses a keyword or value this subset does not know."""
    if not isinstance(schema, dict):
        raise ValueError(f"{where}: must be an object")
    unknown = sorted(set(schema) - _KEYWORDS)
    if unknown:
        raise ValueError(f"{where}: unsupported keyword {unknown[0]!r}")
    _check_values(schema, where)
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValueError(f"{where}.required: must be a list of names")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise ValueError(f"{where}.properties: must be an object")
    for name, sub in properties.items():
        check_schema(sub, f"{where}.properties.{name}")
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        check_schema(extra, f"{where}.additionalProperties")
    if "items" in schema:
        check_schema(schema["items"], f"{where}.items")


def _check_values(schema: dict[str, Any], where: str) -> None:
    """The scalar keywords: type names, bounds, pattern, enum."""
    kinds = schema.get("type", [])
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind not in _TYPES:
            raise ValueError(f"{where}.type: unknown type {kind!r}")
    for key in _NUMBER_KEYS:
        if key in schema and not _TYPES["number"](schema[key]):
            raise ValueError(f"{where}.{key}: must be a number")
    for key in _COUNT_KEYS:
        if key in schema and not (_TYPES["integer"](schema[key]) and schema[key] >= 0):
            raise ValueError(f"{where}.{key}: must be a non-negative integer")
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError) as exc:
            raise ValueError(f"{where}.pattern: {exc}") from None
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise ValueError(f"{where}.enum: must be a list")


def validate(schema: Mapping[str, Any], value: Any, path: str = "payload") -> None:
    """Raise ValidationError naming the first offending field (``payload.size``, ``…[2]``)."""
    kinds = schema.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        if not any(_TYPES[name](value) for name in names):
            raise ValidationError(path, f"must be {' or '.join(_article(n) for n in names)}")
    if "const" in schema and not _same(value, schema["const"]):
        raise ValidationError(path, f"must be {schema['const']!r}")
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        choices = ", ".join(repr(option) for option in schema["enum"])
        raise ValidationError(path, f"must be one of {choices}")
    if isinstance(value, str):
        _check_string(schema, value, path)
    elif _TYPES["number"](value):
        _check_number(schema, value, path)
    elif isinstance(value, list):
        _check_array(schema, value, path)
    elif isinstance(value, dict):
        _check_object(schema, value, path)


def _article(kind: str) -> str:
    return {"object": "an object", "array": "an array", "integer": "an integer"}.get(
        kind, "null" if kind == "null" else f"a {kind}"
    )


def _same(value: Any, expected: Any) -> bool:
    """JSON equality: True is not 1, but 1 equals 1.0."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    return bool(value == expected)


def _check_string(schema: Mapping[str, Any], value: str, path: str) -> None:
    if len(value) < schema.get("minLength", 0):
        raise ValidationError(path, f"must have at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise ValidationError(path, f"must have at most {schema['maxLength']} characters")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        raise ValidationError(path, f"must match the pattern {schema['pattern']!r}")


def _check_number(schema: Mapping[str, Any], value: float, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(path, "must be a finite number")
    if "minimum" in schema and value < schema["minimum"]:
        raise ValidationError(path, f"must be >= {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise ValidationError(path, f"must be <= {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise ValidationError(path, f"must be > {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        raise ValidationError(path, f"must be < {schema['exclusiveMaximum']}")


def _check_array(schema: Mapping[str, Any], value: list[Any], path: str) -> None:
    if len(value) < schema.get("minItems", 0):
        raise ValidationError(path, f"must have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise ValidationError(path, f"must have at most {schema['maxItems']} items")
    items = schema.get("items")
    if items is not None:
        for i, item in enumerate(value):
            validate(items, item, f"{path}[{i}]")


def _check_object(schema: Mapping[str, Any], value: dict[str, Any], path: str) -> None:
    for name in schema.get("required", ()):
        if name not in value:
            raise ValidationError(f"{path}.{name}", "is required")
    if len(value) < schema.get("minProperties", 0):
        raise ValidationError(path, f"must have at least {schema['minProperties']} fields")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise ValidationError(path, f"must have at most {schema['maxProperties']} fields")
    properties: Mapping[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            validate(properties[name], item, f"{path}.{name}")
        elif extra is False:
            raise ValidationError(f"{path}.{name}", _not_allowed(name, properties))
        elif isinstance(extra, dict):
            validate(extra, item, f"{path}.{name}")


def _not_allowed(name: str, properties: Mapping[str, Any]) -> str:
    """The refusal of an unknown key: the likely intended key, then every allowed one."""
    close = difflib.get_close_matches(name, list(properties), n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    allowed = f" (fields: {', '.join(sorted(properties))})" if properties else ""
    return f"is not an allowed field{hint}{allowed}"


def known_keys(descriptions: Mapping[str, str]) -> dict[str, Any]:
    """A payload schema that documents each key and refuses any other.

    The built-in types check values in their own validators; this is the half a
    validator cannot do well: a misspelt optional key (``operation`` for ``operations``)
    would otherwise be ignored and the task would run with defaults.
    """
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: {"description": text} for name, text in descriptions.items()},
    }
