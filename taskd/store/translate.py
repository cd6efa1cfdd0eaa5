"""redis-py exceptions in, taskd exceptions out: one place decides what a failure means."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.exceptions as rexc

from taskd.errors import RedisUnavailable, StaleAttempt, TaskdError, TaskNotFound

# Script error codes (``redis.error_reply("TASKD_<CODE> detail")``) and their exceptions.
SCRIPT_CODES = ("TASKD_STALE", "TASKD_NOTFOUND")


def translate(exc: Exception) -> Exception:
    """Map a redis-py exception to a taskd one (script codes, credentials, TLS, outages)."""
    if isinstance(exc, rexc.ResponseError) and not isinstance(exc, rexc.AuthenticationError):
        return _script_error(exc)
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return TaskdError(f"redis refused the credentials: {exc}")
    if _tls_failure(exc):  # waiting would not help: the certificate will not change
        return TaskdError(f"TLS connection to redis failed: {exc}")
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError):
        return RedisUnavailable(f"redis unavailable: {type(exc).__name__}")
    return exc


def _script_error(exc: rexc.ResponseError) -> Exception:
    code, _, detail = str(exc).partition(" ")
    if code == "TASKD_STALE":
        task_id, _, attempt = detail.partition(" ")
        return StaleAttempt(task_id, int(attempt or 0))
    if code == "TASKD_NOTFOUND":
        return TaskNotFound(detail.rsplit(":", 1)[-1])
    return exc


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
