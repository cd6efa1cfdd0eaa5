"""Payload schemas (taskd.engine.payload_schema) and Registry.check_payload at submit time."""

from __future__ import annotations

from typing import Any

import pytest

from taskd.engine.payload_schema import check_schema, validate
from taskd.engine.registry import MARK, Registry, TaskType, task
from taskd.errors import ValidationError

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["image", "size"],
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string", "pattern": r"\.(png|jpe?g)$", "maxLength": 200},
        "size": {"type": "integer", "minimum": 16, "maximum": 4096},
        "format": {"enum": ["png", "webp"]},
        "tags": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 3},
        "crop": {
            "type": ["object", "null"],
            "required": ["x"],
            "properties": {"x": {"type": "number", "exclusiveMinimum": 0}},
        },
    },
}


def field_of(payload: Any) -> str:
    """The field named by the ValidationError the schema raises for ``payload``."""
    with pytest.raises(ValidationError) as info:
        validate(SCHEMA, payload)
    return info.value.field


def test_a_valid_payload_passes() -> None:
    """A payload that meets every rule raises nothing."""
    validate(SCHEMA, {"image": "a.png", "size": 64, "tags": ["x"], "crop": None, "format": "png"})


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"size": 64}, "payload.image"),
        ({"image": "a.png", "size": "64"}, "payload.size"),
        ({"image": "a.png", "size": True}, "payload.size"),
        ({"image": "a.png", "size": 8}, "payload.size"),
        ({"image": "a.gif", "size": 64}, "payload.image"),
        ({"image": "a.png", "size": 64, "format": "gif"}, "payload.format"),
        ({"image": "a.png", "size": 64, "tags": ["a", ""]}, "payload.tags[1]"),
        ({"image": "a.png", "size": 64, "tags": ["a", "b", "c", "d"]}, "payload.tags"),
        ({"image": "a.png", "size": 64, "crop": {"x": 0}}, "payload.crop.x"),
        ({"image": "a.png", "size": 64, "crop": {}}, "payload.crop.x"),
        ({"image": "a.png", "size": 64, "colour": "red"}, "payload.colour"),
        ([], "payload"),
    ],
)
def test_errors_name_the_offending_field(payload: Any, field: str) -> None:
    """Each violation is reported against the exact field path, arrays indexed."""
    assert field_of(payload) == field


def test_integral_floats_are_integers_but_booleans_are_not_numbers() -> None:
    """JSON semantics: 64.0 is an integer, true is not a number."""
    validate({"type": "integer"}, 64.0)
    with pytest.raises(ValidationError):
        validate({"type": "number"}, True)


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": "object", "requird": ["a"]}, "unsupported keyword 'requird'"),
        ({"oneOf": [{"type": "string"}]}, "unsupported keyword 'oneOf'"),
        ({"type": "text"}, "unknown type 'text'"),
        ({"properties": {"a": {"minimum": "1"}}}, "properties.a.minimum"),
        ({"pattern": "("}, "pattern"),
    ],
)
def test_unsupported_schemas_are_refused(schema: dict[str, Any], fragment: str) -> None:
    """A typo or an unsupported keyword is an error, not a schema that accepts everything."""
    with pytest.raises(ValueError, match="schema") as info:
        check_schema(schema)
    assert fragment in str(info.value)


def test_task_decorator_checks_the_schema_at_import() -> None:
    """@task with a bad schema fails when the module is imported, naming the task type."""
    with pytest.raises(ValueError, match="'resize'"):

        @task("resize", schema={"type": "object", "properties": {"w": {"typ": "integer"}}})
        async def resize(ctx: Any, payload: dict[str, Any]) -> None:
            """Resize."""


def test_check_payload_applies_schema_then_validator() -> None:
    """The schema runs first; a user validator's plain ValueError is reported on payload."""

    def no_huge_pngs(payload: dict[str, Any]) -> None:
        if payload["size"] > 1024 and payload["image"].endswith(".png"):
            raise ValueError("PNG thumbnails are limited to 1024 px")

    @task("thumb", schema=SCHEMA, validate=no_huge_pngs)
    async def thumb(ctx: Any, payload: dict[str, Any]) -> None:
        """Make a thumbnail."""

    marked: TaskType = getattr(thumb, MARK)
    registry = Registry([marked])
    registry.check_payload("thumb", {"image": "a.png", "size": 512})
    with pytest.raises(ValidationError) as info:
        registry.check_payload("thumb", {"image": "a.png"})
    assert info.value.field == "payload.size"
    with pytest.raises(ValidationError) as info:
        registry.check_payload("thumb", {"image": "a.png", "size": 2048})
    assert info.value.field == "payload"
    assert "1024 px" in str(info.value)


def test_unknown_task_type_is_a_validation_error() -> None:
    """Submitting a type nobody handles names task_type."""
    with pytest.raises(ValidationError) as info:
        Registry().check_payload("nope", {})
    assert info.value.field == "task_type"


def test_builtin_examples_pass_their_own_validation() -> None:
    """Every built-in type has a description and an example payload that validates."""
    registry = Registry.from_modules([])
    names = {t.name for t in registry}
    assert names >= {"email", "api_call", "data_processing", "file_conversion", "report_generation"}
    for found in registry:
        assert found.description, found.name
        assert found.example, found.name
        registry.check_payload(found.name, found.example)


@pytest.mark.parametrize(
    ("task_type", "payload", "field"),
    [
        ("email", {"subject": "hi"}, "payload.recipient"),
        ("email", {"to": ["a@example.com", "not an address"]}, "payload.to[1]"),
        ("email", {"recipient": "a@example.com", "subject": "a\nBcc: x@y.z"}, "payload.subject"),
        (
            "email",
            {"recipient": "a@example.com", "attachments": ["../x"]},
            "payload.attachments[0]",
        ),
        ("api_call", {"url": "ftp://example.com/"}, "payload.url"),
        ("api_call", {"url": "https://example.com/", "method": "BREW"}, "payload.method"),
        (
            "api_call",
            {"url": "https://example.com/", "headers": {"X": "a\r\nb"}},
            "payload.headers.X",
        ),
        ("api_call", {"url": "https://example.com/", "timeout_s": 0}, "payload.timeout_s"),
        ("data_processing", {}, "payload.records"),
        (
            "data_processing",
            {"records": [{"a": 1}], "operations": [{"op": "avg"}]},
            "payload.operations[0].op",
        ),
        (
            "data_processing",
            {
                "records": [],
                "operations": [{"op": "group_by", "field": "c", "aggregates": [{"op": "sum"}]}],
            },
            "payload.operations[0].aggregates[0].field",
        ),
        (
            "data_processing",
            {"records": [], "filter": [{"field": "a", "op": "~", "value": 1}]},
            "payload.filter[0].op",
        ),
        ("data_processing", {"source": "/etc/passwd.csv"}, "payload.source"),
        ("file_conversion", {"source": "a.csv", "target": "a.xlsx"}, "payload.to"),
        (
            "file_conversion",
            {"source": "a.csv", "target": "b.json", "encoding": "klingon"},
            "payload.encoding",
        ),
        ("report_generation", {"period_s": -1}, "payload.period_s"),
        ("report_generation", {"formats": ["pdf"]}, "payload.formats"),
    ],
)
def test_builtin_validation_names_the_field(
    task_type: str, payload: dict[str, Any], field: str
) -> None:
    """Bad built-in payloads are refused at submit time with the field named."""
    with pytest.raises(ValidationError) as info:
        Registry.from_modules([]).check_payload(task_type, payload)
    assert info.value.field == field


def refusal(task_type: str, payload: dict[str, Any]) -> ValidationError:
    """The ValidationError the built-in registry raises at submit for ``payload``."""
    with pytest.raises(ValidationError) as info:
        Registry.from_modules([]).check_payload(task_type, payload)
    return info.value


@pytest.mark.parametrize(
    ("task_type", "payload", "field", "hint"),
    [
        ("email", {"recipients": "a@b.c", "subject": "s"}, "payload.recipients", "'recipient'"),
        ("data_processing", {"records": 5, "operation": "sum"}, "payload.operation", "'operations"),
        ("report_generation", {"format": "pdf"}, "payload.format", "'formats'"),
        ("api_call", {"url": "https://example.com/", "header": {}}, "payload.header", "'headers'"),
        (
            "file_conversion",
            {"source": "a.csv", "target": "a.json", "infer_type": True},
            "payload.infer_type",
            "'infer_types'",
        ),
    ],
)
def test_unknown_payload_keys_of_built_ins_are_refused_with_a_hint(
    task_type: str, payload: dict[str, Any], field: str, hint: str
) -> None:
    """A misspelt payload key of a built-in type is refused at submit, naming the likely key."""
    error = refusal(task_type, payload)
    assert error.field == field
    assert f"did you mean {hint}" in str(error)


def test_unknown_key_lists_every_allowed_key() -> None:
    """The refusal lists the type's keys, so `recipients` also points at `to`."""
    message = str(refusal("email", {"recipients": "a@b.c", "subject": "s"}))
    assert "'recipient'" in message
    assert "to" in message.split("fields:", 1)[1]


def test_built_in_examples_pass_their_own_schemas() -> None:
    """Every built-in type's example payload is accepted (no key refused by mistake)."""
    registry = Registry.from_modules([])
    for task_type in registry:
        registry.check_payload(task_type.name, task_type.example)
