"""redis-py exceptions in, taskd exceptions out: one place decides what a failure means."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.exceptions as rexc

from taskd.errors import RedisUnavailable, TaskdError
from taskd.store.replies import error_for


def translate(exc: Exception, task_id: str = "", action: str = "") -> Exception:
    """Map a redis-py exception to a taskd one (script codes, credentials, TLS, outages);
    ``task_id`` and ``action`` name what was asked, for a TASKD_STATE reply."""
    if isinstance(exc, rexc.ResponseError) and not isinstance(exc, rexc.AuthenticationError):
        return _script_error(exc, task_id, action)
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return TaskdError(f"redis refused the credentials: {exc}")
    if _tls_failure(exc):  # waiting would not help: the certificate will not change
        return TaskdError(f"TLS connection to redis failed: {exc}")
    if isinstance(exc, rexc.InvalidResponse):  # e.g. taskd's HTTP port given as the Redis URL
        return TaskdError(f"the server at the Redis URL does not speak the Redis protocol: {exc}")
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError):
        return RedisUnavailable(f"redis unavailable: {type(exc).__name__}")
    return exc


def _script_error(exc: rexc.ResponseError, task_id: str = "", action: str = "") -> Exception:
    code, _, detail = str(exc).partition(" ")
    return error_for(code, detail, task_id=task_id, action=action) or exc


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Raise taskd exceptions instead of redis-py ones inside the block."""
    try:
        yield
    except (rexc.RedisError, OSError) as exc:
        raise translate(exc) from exc
