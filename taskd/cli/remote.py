"""A client of taskd's own HTTP API and WebSocket: what the ``taskd`` CLI commands use.

It sits in the HTTP layer because it speaks that layer's protocol (routes, error
bodies, WebSocket messages) and needs no Redis, so the CLI works against any server it
can reach. Each failure is a :class:`RemoteError` carrying the exit code the CLI ends
with: 1 the API refused (its own message is shown), 3 the server could not be reached,
4 what was waited for did not happen (the task failed, the queue did not drain in
time). Exit code 2, usage errors, is click's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import orjson

from taskd import __version__
from taskd.cli.display import left
from taskd.errors import TaskdError

FINISHED: Final = frozenset({"completed", "failed", "cancelled"})
ID_DIGITS: Final = 32
RECONNECT_FOR_S: Final = 30.0


class RemoteError(TaskdError):
    """The CLI's request did not get the answer it needed; ``exit_code`` says how."""

    exit_code = 1


class ApiError(RemoteError):
    """The server answered with an error (``{"error": {"code", "message", "details"}}``)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{message} (HTTP {status})", status=status, code=code)
        self.status = status
        self.code = code
        self.api_details = details


class Unreachable(RemoteError):
    """No answer: nothing listens there, the connection broke, or it timed out."""

    code = "unreachable"
    exit_code = 3


class Unfinished(RemoteError):
    """What the command waited for did not happen (a task failed, a drain timed out)."""

    code = "unfinished"
    exit_code = 4


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused (is `taskd serve` running there?)"
        return exc.strerror or str(exc.os_error)
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


class Remote:
    """One HTTP session to a taskd server; use as ``async with Remote(url) as remote``."""

    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"User-Agent": f"taskd-cli/{__version__}"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(5.0, timeout_s))
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session (only inside ``async with``)."""
        if self._session is None:
            raise RuntimeError("use Remote inside 'async with'")
        return self._session

    async def request(
        self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        """One call; the decoded JSON answer, or an ApiError / Unreachable."""
        return (await self.exchange(method, path, body, params))[1]

    async def exchange(
        self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        """:meth:`request`, also returning the HTTP status (where 200 and 202 differ)."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""}
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self.session.request(
                method, self.url + path, data=data, params=query, headers=headers
            ) as reply:
                raw = await reply.read()
                status, reason = reply.status, reply.reason or ""
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise Unreachable(f"cannot reach taskd at {self.url}: {_reason(exc)}") from None
        try:
            decoded = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            decoded = None
            if status < 400:
                raise RemoteError(f"{self.url} did not answer with JSON; is it taskd?") from None
        if status >= 400:
            error = decoded.get("error") if isinstance(decoded, dict) else None
            if not isinstance(error, dict):
                raise ApiError(status, "http_error", reason or "request failed")
            raise ApiError(
                status,
                str(error.get("code", "error")),
                str(error.get("message", reason)),
                error.get("details"),
            )
        return status, decoded

    async def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` with query parameters (None and empty ones are left out)."""
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Any = None) -> Any:
        """POST ``path`` with a JSON body."""
        return await self.request("POST", path, body)

    async def resolve(self, prefix: str, *, max_pages: int = 100) -> str:
        """The id of the one task whose id starts with ``prefix`` (a full id as it is).

        The dashboard shows ids by their first 8 digits. The API's ``q`` filter matches
        id prefixes (and names, hence the second check here); it is paged newest first,
        so the search stops at a second match or after ``max_pages`` pages.
        """
        if len(prefix) == ID_DIGITS:
            return prefix
        found: list[str] = []
        cursor: str | None = None
        for _ in range(max_pages):
            page = await self.get("/api/tasks", q=prefix, limit=1000, cursor=cursor)
            found += [t["id"] for t in page["tasks"] if t["id"].startswith(prefix)]
            cursor = page.get("next_cursor")
            if len(found) > 1 or not cursor:
                break
        if len(found) > 1:
            raise RemoteError(
                f"task id prefix {prefix!r} is ambiguous: {found[0]}, {found[1]} and maybe"
                " more start with it; give more digits"
            )
        if not found:
            raise RemoteError(f"no task id starts with {prefix!r}")
        return found[0]

    async def cancel(self, task_id: str) -> tuple[bool, dict[str, Any]]:
        """Cancel a task: (True, task) when done, (False, task) while a running one stops."""
        status, task = await self.exchange("POST", f"/api/tasks/{task_id}/cancel")
        return status != 202, task

    async def wait(self, task_id: str, *, poll_s: float = 1.0) -> dict[str, Any]:
        """The task once it is completed, failed or cancelled (polling, backing off to poll_s)."""
        interval = 0.05
        while True:
            task: dict[str, Any] = await self.get(f"/api/tasks/{task_id}")
            if task.get("status") in FINISHED:
                return task
            await asyncio.sleep(interval)
            interval = min(poll_s, interval * 1.5)

    async def drain(
        self,
        queue: str,
        timeout_s: float | None,
        on_change: Callable[[dict[str, Any], int], None] | None = None,
        *,
        poll_s: float = 1.0,
    ) -> dict[str, Any]:
        """The queue once no task of it is unfinished (waiting, pending, scheduled, retrying,
        reserved or processing).

        ``on_change`` is called with the queue and its unfinished count whenever that
        count changes. Unfinished (exit 4) after ``timeout_s``.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        interval, last = 0.05, -1
        while True:
            found: dict[str, Any] = await self.get(f"/api/queues/{queue}")
            remaining = left(found)
            if remaining != last and on_change is not None:
                on_change(found, remaining)
            last = remaining
            if remaining == 0:
                return found
            if deadline is not None and time.monotonic() >= deadline:
                raise Unfinished(
                    f"queue {queue} not drained after {timeout_s:g} s: {remaining} tasks left"
                )
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            await asyncio.sleep(max(0.0, pause))
            interval = min(poll_s, interval * 1.5)

    async def messages(
        self, on_reconnect: Callable[[str], None] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """WebSocket messages from ``/ws``, for as long as the caller reads.

        A dropped connection (server restart, 1013 for falling behind) is reopened with
        ``?since=<last_event_id>``, so no event is lost; after RECONNECT_FOR_S seconds
        without success it is Unreachable. ``on_reconnect`` hears why it reconnects.
        """
        ws_url = "ws" + self.url.removeprefix("http") + "/ws"
        since: str | None = None
        down_since: float | None = None
        interval = 0.2
        while True:
            try:
                async with self.session.ws_connect(
                    ws_url, params={"since": since} if since else None, heartbeat=30.0
                ) as ws:
                    down_since, interval = None, 0.2
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        data: dict[str, Any] = orjson.loads(message.data)
                        since = data.get("last_event_id") or since
                        yield data
                    reason = _close_reason(ws.close_code)
            except aiohttp.WSServerHandshakeError as exc:
                hint = " (check TASKD_TOKEN)" if exc.status in (401, 403) else ""
                raise ApiError(exc.status, "websocket", f"WebSocket refused{hint}") from None
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if since is None and down_since is None:
                    raise Unreachable(f"cannot reach taskd at {self.url}: {_reason(exc)}") from None
                reason = _reason(exc)
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since > RECONNECT_FOR_S:
                raise Unreachable(f"lost taskd at {self.url} ({reason}) and could not reconnect")
            if on_reconnect is not None:
                on_reconnect(reason)
            await asyncio.sleep(interval)
            interval = min(2.0, interval * 2)


def _close_reason(code: int | None) -> str:
    if code == 1008:
        raise ApiError(401, "unauthorized", "the server closed the WebSocket: bad or no token")
    names = {1001: "server going away", 1013: "fell behind the event stream"}
    return names.get(code or 0, f"connection closed ({code})")
