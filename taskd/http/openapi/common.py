"""The building blocks every part of the description uses: media type, references,
object schemas, parameters, operations and the shared error responses.

Defined once here; the path modules (tasks, queues, dashboard, system) and the schema
modules only combine them.
"""

from __future__ import annotations

from typing import Any, Final

JSON: Final = "application/json"
INT: Final = {"type": "integer"}
STR: Final = {"type": "string"}
TIME: Final = {"type": ["string", "null"], "format": "date-time"}
NULL_INT: Final = {"type": ["integer", "null"]}
NULL_STR: Final = {"type": ["string", "null"]}
# What every read and write route may answer besides its own statuses.
READ: Final = ("401", "403", "421", "429", "503")
WRITE: Final = ("401", "403", "421", "429", "503")
BODY: Final = ("400", "413", "422")
TASK_ID_PATTERN: Final = "^[0-9a-f]{32}$"


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": "#/components/schemas/" + name}


def obj(properties: dict[str, Any], *required: str, **extra: Any) -> dict[str, Any]:
    """An object schema."""
    return {"type": "object", "required": list(required), "properties": properties, **extra}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response (or part of one) with a JSON body."""
    return {"description": description, "content": {JSON: {"schema": schema}}}


def text_body(media: tuple[str, ...], description: str) -> dict[str, Any]:
    """A response whose body is text (or a file) of one of ``media``."""
    schema = {"type": "string"}
    return {"description": description, "content": {m: {"schema": schema} for m in media}}


def request_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body."""
    return {"required": True, "content": {JSON: {"schema": schema}}}


def param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A parameter; path parameters are required."""
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


TASK_ID: Final = param(
    "task_id",
    "path",
    {"type": "string", "pattern": TASK_ID_PATTERN},
    "The task's id (32 hex digits).",
)


def operation(
    op_id: str, summary: str, tag: str, ok: dict[str, Any], *errors: str, **extra: Any
) -> dict[str, Any]:
    """An operation whose error statuses refer to the shared error responses."""
    responses = ok | {code: {"$ref": f"#/components/responses/E{code}"} for code in errors}
    return {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses} | (
        extra
    )


def _error(description: str, *headers: str) -> dict[str, Any]:
    response = json_body(ref("Error"), description)
    if headers:
        response["headers"] = {h: {"schema": {"type": "string"}, "required": True} for h in headers}
    return response


ERRORS: Final = {
    "400": _error("Malformed JSON body"),
    "401": _error("Missing or invalid bearer token", "WWW-Authenticate"),
    "403": _error("The token may only read, or the browser origin is not allowed"),
    "404": _error("No such task (or it expired), or no such queue"),
    "409": _error("The task's status does not allow this"),
    "413": _error("Body larger than server.max_body_bytes"),
    "421": _error(
        "A server without tokens answers only to its own Host names (server.allowed_hosts)"
    ),
    "422": _error("A value is invalid; details.field names it"),
    "429": _error(
        "Too many writes from this client, or too many wrong tokens from this address",
        "Retry-After",
    ),
    "503": _error(
        "Redis is unavailable, or a connection limit is reached; retry later", "Retry-After"
    ),
}
