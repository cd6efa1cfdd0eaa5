"""The ``api_call`` task: one HTTP request, with the SSRF guard and a response size cap.

Outcomes follow what a caller of a remote API can act on: 2xx (or ``expect_status``)
completes; 5xx, 429 (after its Retry-After) and network errors are retried with back-off;
other 4xx, refused addresses and invalid URLs fail at once, since repeating the same
request cannot change the answer.
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from taskd import __version__
from taskd.config import ApiCallSettings, Settings
from taskd.engine.context import Context
from taskd.engine.payload_schema import known_keys
from taskd.engine.registry import task
from taskd.errors import Fail, Retry, ValidationError
from taskd.handlers.ssrf import AddressRefused, Policy, check_url, guarded_session, literal_address

METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_URL_CHARS = 2048
MAX_HEADERS = 100
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 300.0
MAX_RETRY_AFTER_S = 3600.0
EXCERPT_CHARS = 200
CHUNK_BYTES = 1 << 16
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_NUMERIC_HOST: Final = re.compile(r"(0x[0-9a-f]+|[0-9.]+)", re.IGNORECASE)
_TEXTUAL: Final = re.compile(r"^text/|json|xml|javascript|x-www-form-urlencoded", re.IGNORECASE)
EXAMPLE: Final = {
    "url": "https://httpbin.org/anything",
    "method": "POST",
    "headers": {"X-Request-Source": "taskd"},
    "json": {"event": "signup", "user": 42},
    "timeout_s": 10,
    "expect_status": [200, 201],
}

SCHEMA: Final = known_keys(
    {
        "url": "http:// or https:// URL (required).",
        "method": f"One of {', '.join(METHODS)} [GET].",
        "headers": "Object of header name: value strings.",
        "json": "JSON request body (or use body).",
        "body": "Text request body (or use json).",
        "timeout_s": f"Seconds, at most {MAX_TIMEOUT_S:g} [{DEFAULT_TIMEOUT_S:g}].",
        "expect_status": "A status code or a list of them that count as success [2xx].",
        "follow_redirects": "Follow redirects [true].",
    }
)


def validate(payload: dict[str, Any], settings: Settings | None) -> None:
    """Submit-time checks; a literal address the guard would refuse is a 422 here."""
    _check_url(payload.get("url"), Policy.from_settings(settings))
    method = payload.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ValidationError("payload.method", f"must be one of {', '.join(METHODS)}")
    _check_headers(payload.get("headers", {}))
    if "json" in payload and "body" in payload:
        raise ValidationError("payload.body", "give either json or body, not both")
    if not isinstance(payload.get("body", ""), str):
        raise ValidationError("payload.body", "must be a string (use json for structured data)")
    timeout = payload.get("timeout_s", DEFAULT_TIMEOUT_S)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT_S
    ):
        raise ValidationError("payload.timeout_s", f"must be a number > 0 and <= {MAX_TIMEOUT_S:g}")
    expected_statuses(payload)
    if not isinstance(payload.get("follow_redirects", True), bool):
        raise ValidationError("payload.follow_redirects", "must be true or false")


def _check_url(value: Any, policy: Policy) -> URL:
    if value is None:
        raise ValidationError("payload.url", "is required")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL_CHARS:
        raise ValidationError("payload.url", f"must be a URL of at most {MAX_URL_CHARS} chars")
    try:
        url = URL(value)
    except ValueError as exc:
        raise ValidationError("payload.url", f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise ValidationError("payload.url", "must be an absolute http:// or https:// URL")
    host = url.raw_host
    if literal_address(host) is None and _NUMERIC_HOST.fullmatch(host):
        raise ValidationError("payload.url", f"{host!r} is not a canonical IP address")
    try:
        check_url(url, policy)
    except AddressRefused as exc:
        raise ValidationError("payload.url", str(exc)) from None
    return url


def _check_headers(headers: Any) -> None:
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
        raise ValidationError(
            "payload.headers", f"must be an object of at most {MAX_HEADERS} name: value strings"
        )
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValidationError(f"payload.headers.{name}", "is not a valid header name")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ValidationError(f"payload.headers.{name}", "must be a one-line string")


def expected_statuses(payload: dict[str, Any]) -> frozenset[int] | None:
    """``expect_status`` as a set (an int or a list of ints), None when absent."""
    raw = payload.get("expect_status")
    if raw is None:
        return None
    codes = raw if isinstance(raw, list) else [raw]
    if not codes or not all(
        isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes
    ):
        raise ValidationError("payload.expect_status", "must be a status code or a list of them")
    return frozenset(codes)


@task("api_call", example=EXAMPLE, schema=SCHEMA, validate=validate)
async def api_call(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Make one HTTP request (method, headers, json or body) and return the response.

    5xx, 429 and network errors are retried (honouring Retry-After); other 4xx fail.
    Loopback, private, link-local and reserved addresses are refused unless allowed in
    the ``[api_call]`` settings; the body read is capped at ``max_response_bytes``.
    """
    try:
        validate(payload, ctx.settings)
    except ValidationError as exc:
        raise Fail(str(exc)) from None
    limits = ctx.settings.api_call if ctx.settings is not None else ApiCallSettings()
    method, url = payload.get("method", "GET").upper(), payload["url"]
    await ctx.progress(5, f"{method} {URL(url).host}")
    started = time.monotonic()
    try:
        result = await _request(payload, method, url, limits, Policy.from_settings(ctx.settings))
    except AddressRefused as exc:
        raise Fail(str(exc)) from None
    except aiohttp.TooManyRedirects:
        raise Fail(f"{method} {url}: more than {limits.max_redirects} redirects") from None
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlRedirectClientError) as exc:
        raise Fail(f"{method} {url}: invalid URL {exc}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Retry(f"{method} {url}: {type(exc).__name__}: {exc or 'timed out'}") from None
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    judge(result, expected_statuses(payload))
    await ctx.progress(100, f"HTTP {result['status']}")
    return result


async def _request(
    payload: dict[str, Any], method: str, url: str, limits: ApiCallSettings, policy: Policy
) -> dict[str, Any]:
    """Send the request and read at most ``max_response_bytes`` of the answer."""
    timeout = aiohttp.ClientTimeout(total=payload.get("timeout_s", DEFAULT_TIMEOUT_S))
    headers = {"User-Agent": f"taskd/{__version__}", **payload.get("headers", {})}
    follow = payload.get("follow_redirects", True) and limits.max_redirects > 0
    body: dict[str, Any] = {"json": payload["json"]} if "json" in payload else {}
    if "body" in payload:
        body = {"data": payload["body"].encode()}
    async with (
        guarded_session(policy, timeout=timeout) as session,
        session.request(
            method,
            url,
            headers=headers,
            allow_redirects=follow,
            max_redirects=limits.max_redirects + 1,
            **body,  # aiohttp counts the final hop
        ) as response,
    ):
        data, truncated = await read_capped(response, limits.max_response_bytes)
        return {
            "status": response.status,
            "reason": response.reason,
            "url": str(response.url),
            "method": method,
            "redirects": len(response.history),
            "headers": _headers(response.headers),
            "size": len(data),
            "truncated": truncated,
            **decode_body(
                data, truncated, response.headers.get("Content-Type", ""), response.charset
            ),
        }


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body (decompressed), and whether it was longer."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def decode_body(
    data: bytes, truncated: bool, content_type: str, charset: str | None
) -> dict[str, Any]:
    """``body``: parsed JSON when it is complete JSON, else text; binary as ``body_base64``."""
    if content_type and not _TEXTUAL.search(content_type):
        return {"body": None, "body_base64": base64.b64encode(data).decode()}
    text = data.decode(charset or "utf-8", errors="replace")
    if not truncated and "json" in content_type.lower():
        try:
            return {"body": json.loads(text)}
        except ValueError:
            pass
    return {"body": text}


def _headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    # str(): the keys are multidict's istr, which JSON encoders (orjson) refuse as keys
    return {str(name): ", ".join(headers.getall(name)) for name in dict.fromkeys(headers.keys())}


def judge(result: dict[str, Any], expect: frozenset[int] | None) -> None:
    """Raise Retry or Fail unless the status is a success (or one of ``expect``)."""
    status = result["status"]
    if (expect is not None and status in expect) or (expect is None and 200 <= status < 300):
        return
    where = f"{result['method']} {result['url']}: HTTP {status} {result['reason'] or ''}".strip()
    if status == 429 or status >= 500:
        delay = retry_after(result["headers"].get("Retry-After", ""))
        raise Retry(where, delay_s=delay)
    body = result.get("body")
    excerpt = body if isinstance(body, str) else json.dumps(body)[:EXCERPT_CHARS]
    wanted = f" (expected {sorted(expect)})" if expect is not None else ""
    raise Fail(f"{where}{wanted}: {excerpt[:EXCERPT_CHARS]}")


def retry_after(value: str) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), capped at an hour."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), MAX_RETRY_AFTER_S)
