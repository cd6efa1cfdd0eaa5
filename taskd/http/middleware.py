"""Errors become JSON in one place, with one exception -> status table; plus the request guard.

Every error body is ``{"error": {"code", "message", "details"}}``. Anything not in the
table is a bug: it is logged with its traceback and answered with 500, a request id and
no traceback. The guard runs inside it: request id, CORS, authentication, the write rate
limit, the body size limit, and a deadline so a hung Redis gives 503, never a hang.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import structlog
from aiohttp import web

from taskd.errors import (
    RedisUnavailable,
    TaskdError,
    TaskNotFound,
    UniqueKeyTaken,
    ValidationError,
    WorkflowNotFound,
    WrongState,
)
from taskd.http.guard import (
    Access,
    Auth,
    HostCheck,
    RateLimiter,
    bearer,
    client_key,
    origin_allowed,
)
from taskd.http.guard import retry_after as retry_after_header
from taskd.http.methods import MethodTable
from taskd.http.shapes import json_response

log = structlog.get_logger("taskd.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID_HEADER: Final = "X-Request-ID"
REQUEST_ID = web.RequestKey("request_id", str)
ACCESS = web.RequestKey("access", Access)
TOKEN = web.RequestKey("token", str)
CORS_ORIGIN = web.RequestKey("cors_origin", str)
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SAFE_ID: Final = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_QUIET_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
CORS_REQUEST_HEADERS: Final = ("Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID")


class HTTPProblem(TaskdError):
    """A request the HTTP layer itself refuses (the engine never raises these)."""


class BadRequest(HTTPProblem):
    """The body is not JSON, or not the JSON value expected."""

    code = "bad_request"


class Unauthorized(HTTPProblem):
    """No token, or a token that matches none configured."""

    code = "unauthorized"


class Forbidden(HTTPProblem):
    """A valid token without the right to do this, or a foreign browser origin."""

    code = "forbidden"


class KeyConflict(HTTPProblem):
    """The Idempotency-Key header and the body's unique_key disagree."""

    code = "idempotency_conflict"


class MisdirectedHost(HTTPProblem):
    """A ``Host`` this open server does not answer to (a DNS rebinding attempt)."""

    code = "misdirected_request"


class Busy(HTTPProblem):
    """A bounded resource (connections, WebSocket slots) is full; retry later."""

    code = "busy"


class RateLimited(HTTPProblem):
    """Too many writes from one client; ``retry_after_s`` says when to try again."""

    code = "rate_limited"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many requests; slow down", retry_after_s=round(retry_after_s, 3))
        self.retry_after_s = retry_after_s


# The one table: exception class -> HTTP status (the nearest class in the MRO wins).
STATUS: Final[Mapping[type[BaseException], int]] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    KeyConflict: 409,
    MisdirectedHost: 421,
    TaskNotFound: 404,
    WorkflowNotFound: 404,
    UniqueKeyTaken: 409,
    WrongState: 409,
    ValidationError: 422,
    RateLimited: 429,
    RedisUnavailable: 503,
    TimeoutError: 503,
    Busy: 503,
}
_HTTP_CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error shape."""
    return {"error": {"code": code, "message": message, "details": details}}


def status_of(exc: BaseException) -> int | None:
    """The table's status for an exception, or None when it is not an expected one."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return None


def _problem(exc: BaseException, status: int) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(exc, TaskdError):
        body = error_body(exc.code, exc.message, exc.details or None)
    else:  # TimeoutError from the request deadline
        body = error_body("redis_unavailable", "Redis did not answer in time; try again")
    if status == 503:
        headers["Retry-After"] = "1"
    elif isinstance(exc, RateLimited):
        headers["Retry-After"] = retry_after_header(exc.retry_after_s)
    elif status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="taskd"'
    return json_response(body, status=status, headers=headers)


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    status = exc.status
    code = _HTTP_CODES.get(status, "http_error")
    message = exc.reason if status != 404 else "no such route"
    if status == 405:
        message = f"method not allowed; use {exc.headers.get('Allow', 'another method')}"
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
    if status == 204:  # OPTIONS: no body
        return web.Response(status=204, headers=headers)
    return json_response(error_body(code, message), status=status, headers=headers)


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": "Location, Retry-After, X-Request-ID",
        "Vary": "Origin",
    }


def request_id(header: str | None) -> str:
    """Echo a caller's sane request id, else make one."""
    if header and _SAFE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: request id, access log line, and every exception to its JSON answer."""
    rid = request_id(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID] = rid
    started = time.perf_counter()
    with structlog.contextvars.bound_contextvars(request_id=rid):
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _from_http_exception(exc)
        except Exception as exc:
            status = status_of(exc)
            if status is None:
                log.exception("request_failed", method=request.method, path=request.path)
                status = 500
                response = json_response(
                    error_body(
                        "internal", "internal server error; see the server log", {"request_id": rid}
                    ),
                    status=500,
                )
            else:
                response = _problem(exc, status)
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = rid
            if (origin := request.get(CORS_ORIGIN)) is not None:  # errors too: readable
                response.headers.update(_cors_headers(origin))
        level = "debug" if request.path in _QUIET_PATHS else "info"
        getattr(log, level)(
            "request_finished",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            remote=request.remote,
        )
        return response


class Guard:
    """Authentication, origins, CORS, rate limit, body limit and deadline for each request."""

    def __init__(
        self,
        auth: Auth,
        limiter: RateLimiter,
        allowed_origins: tuple[str, ...],
        deadline_s: float,
        hosts: HostCheck | None = None,
        methods: MethodTable | None = None,
    ) -> None:
        self.auth = auth
        self.hosts = hosts
        self.methods = methods
        self.limiter = limiter
        self.allowed_origins = allowed_origins
        self.deadline_s = deadline_s

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Let a request through, or raise the problem that stops it."""
        self._check_host(request)
        path = request.path
        protected = path == "/api" or path.startswith("/api/") or path == "/ws"
        origin = request.headers.get("Origin")
        cors = origin is not None and self._cors_allowed(origin)
        if (
            request.method == "OPTIONS"
            and cors
            and "Access-Control-Request-Method" in (request.headers)
        ):
            return self._preflight(origin or "")
        self._check_method(request)
        if cors and origin is not None:
            request[CORS_ORIGIN] = origin
        if protected:
            self._authenticate(request)
        if path == "/ws":
            return await handler(request)  # long-lived: no deadline; it checks origins itself
        if request.method in WRITE_METHODS and protected:
            if not origin_allowed(origin, request.host, self.allowed_origins):
                raise Forbidden(
                    "cross-origin writes are not allowed from this origin", origin=origin
                )
            wait = self.limiter.take(client_key(request.get(TOKEN), request.remote))
            if wait > 0:
                raise RateLimited(wait)
        if request.can_read_body:
            await request.read()  # over client_max_size: 413, before any work is done
        async with asyncio.timeout(self.deadline_s):
            return await handler(request)

    def _check_method(self, request: web.Request) -> None:
        """OPTIONS answers 204 with the path's methods; another method it lacks, 405."""
        allowed = self.methods.allowed(request.path) if self.methods is not None else None
        if allowed is None or request.method in allowed[:-1]:
            return
        allow = ", ".join(allowed)
        if request.method == "OPTIONS":
            raise web.HTTPNoContent(headers={"Allow": allow})
        refused = web.HTTPMethodNotAllowed(request.method, allowed[:-1])
        refused.headers["Allow"] = allow
        raise refused

    def _check_host(self, request: web.Request) -> None:
        if self.hosts is None:
            return
        header = request.headers.get("Host")
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        local = str(sockname[0]) if isinstance(sockname, tuple) and sockname else None
        if not self.hosts.accepts(header, local):
            raise MisdirectedHost(
                "this server does not answer to that Host name; add it to "
                "server.allowed_hosts (TASKD_ALLOWED_HOSTS) or set auth.tokens",
                host=(header or "")[:100],
            )

    def _authenticate(self, request: web.Request) -> None:
        token = bearer(request.headers.get("Authorization"))
        if token is None and request.path == "/ws":
            token = request.query.get("token") or None
        who = "a:" + (request.remote or "?")
        guessing = token is not None and self.auth.required
        if guessing and (wait := self.auth.failures.wait(who)) > 0:
            raise RateLimited(wait)  # too many wrong tokens: stop comparing any more
        access = self.auth.check(token)
        if access is None:
            self.auth.failures.take(who)
            raise Unauthorized("invalid token")
        if token is not None and self.auth.required:
            request[TOKEN] = token  # verified: the rate limit may key on it
        if access is Access.NONE and request.path != "/ws":  # the socket may send it first
            raise Unauthorized("this server needs 'Authorization: Bearer <token>'")
        if request.method in WRITE_METHODS and access < Access.FULL:
            if token is None:
                raise Unauthorized("writing needs 'Authorization: Bearer <token>'")
            raise Forbidden("this token may only read")
        request[ACCESS] = access

    def _cors_allowed(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin.rstrip("/") in self.allowed_origins

    def _preflight(self, origin: str) -> web.Response:
        return web.Response(
            status=204,
            headers=_cors_headers(origin)
            | {
                "Access-Control-Allow-Methods": "GET, POST, DELETE",
                "Access-Control-Allow-Headers": ", ".join(CORS_REQUEST_HEADERS),
                "Access-Control-Max-Age": "600",
            },
        )
