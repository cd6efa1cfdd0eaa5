"""The ``/ws`` event stream: a snapshot (or a replay since a position), then live batches.

Messages (JSON text frames, documented in the README):

- ``{"type": "snapshot", "reason", "stats", "tasks": [newest 100], "last_event_id"}``
- ``{"type": "events", "events": [...], "last_event_id"}``: live batches (at most ~10/s)
  and replayed history; ``last_event_id`` is the token to reconnect with (``?since=``).
- ``{"type": "resumed", "replayed", "last_event_id"}`` once a replay is complete.
- ``{"type": "stats", "stats": {...}}`` when the overview changed (at most ~1/s).
- ``{"type": "workflow", "kind", "workflow": {id, name, status, created_at, counts}}``
  when a workflow was created or changed status (taskd.engine.flowwatch); live only.

Each client has a bounded buffer in the relay; a client that falls too far behind is
closed with 1013 (try again later) and may reconnect with ``since``. A wrong or missing
token sent as the first message closes with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from taskd.engine.flowwatch import WorkflowUpdate
from taskd.engine.relay import (
    Batch,
    Item,
    Position,
    Relay,
    StatsUpdate,
    Subscription,
    decode_position,
    encode_position,
    merge_positions,
    overview,
    resolve_position,
)
from taskd.errors import RedisUnavailable
from taskd.http import shapes
from taskd.http.guard import Access, Auth, origin_allowed
from taskd.http.middleware import ACCESS, REQUEST_ID, REQUEST_ID_HEADER, Busy, Forbidden
from taskd.http.state import SERVICES, STATE, AppState
from taskd.store import Event, stream_id_key

HEARTBEAT_S: Final = 20.0
MAX_MESSAGE_BYTES: Final = 64 * 1024
AUTH_TIMEOUT_S: Final = 5.0
CLOSE_TIMEOUT_S: Final = 1.0
SNAPSHOT_TASKS: Final = 100
EVENTS_PER_MESSAGE: Final = 500
REPLAY_CHUNK: Final = 1000


@dataclass(slots=True)
class Snapshot:
    """One shared snapshot: stats, newest tasks, and the position it was taken at."""

    stats: dict[str, Any]
    tasks: list[dict[str, Any]]
    position: Position
    texts: dict[str, str] = field(default_factory=dict)

    def text(self, reason: str) -> str:
        """The message, serialised once per reason."""
        found = self.texts.get(reason)
        if found is None:
            found = self.texts[reason] = shapes.dumps(
                {
                    "type": "snapshot",
                    "reason": reason,
                    "stats": self.stats,
                    "tasks": self.tasks,
                    "last_event_id": encode_position(self.position),
                }
            )
        return found


def event_messages(events: list[Event], start: Position) -> list[str]:
    """``events`` messages of at most EVENTS_PER_MESSAGE each; every token covers its chunk."""
    messages: list[str] = []
    running = dict(start)
    for i in range(0, len(events), EVENTS_PER_MESSAGE):
        chunk = events[i : i + EVENTS_PER_MESSAGE]
        for e in chunk:
            running[e.queue] = e.event_id
        messages.append(
            shapes.dumps(
                {
                    "type": "events",
                    "events": [shapes.event(e) for e in chunk],
                    "last_event_id": encode_position(running),
                }
            )
        )
    return messages


def _caught_up(position: Position, after: Position) -> bool:
    return all(stream_id_key(position.get(q, "0-0")) >= stream_id_key(a) for q, a in after.items())


def batch_messages(batch: Batch, sub: Subscription) -> list[str]:
    """A batch for one subscriber: shared text unless events before its position must go."""
    if sub.after is not None and _caught_up(batch.start, sub.after):
        sub.after = None
    if sub.after is None:
        if batch.rendered is None:
            batch.rendered = event_messages(batch.events, batch.start)
        return batch.rendered
    after = sub.after
    events = [
        e
        for e in batch.events
        if stream_id_key(e.event_id) > stream_id_key(after.get(e.queue, "0-0"))
    ]
    return event_messages(events, merge_positions(after, batch.start)) if events else []


class TooManyClients(Busy):
    """Every WebSocket slot (``server.max_ws_clients``) is taken."""

    code = "too_many_clients"


class TooSlow(Exception):
    """A client has unsent data while the queued bytes of all clients exceed the budget."""


class Hub:
    """This process's WebSocket clients: snapshots, replays, fan-out, slow-client drops.

    Memory per client is bounded twice: the relay's per-client buffer (events), and the
    bytes queued in transports, which all clients share (``server.ws_queued_bytes``).
    """

    def __init__(self, state: AppState, auth: Auth) -> None:
        self.state = state
        self.auth = auth
        self.relay: Relay = state.relay
        self.clients: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self.max_clients = state.settings.server.max_ws_clients
        self.max_queued = state.settings.server.ws_queued_bytes
        self.admitted = 0
        self._transports: dict[web.WebSocketResponse, asyncio.BaseTransport] = {}
        self.dropped = 0
        #: Called once per dropped client (the app points it at a metrics counter).
        self.on_drop: Callable[[], None] | None = None
        self._next: asyncio.Future[Snapshot] | None = None
        self._builder: asyncio.Task[None] | None = None

    def admit(self) -> None:
        """Take a client slot (before the upgrade, so waiting handshakes count too)."""
        if self.admitted >= self.max_clients:
            raise TooManyClients(
                f"{self.max_clients} WebSocket clients are connected; try again later"
            )
        self.admitted += 1

    def release(self) -> None:
        """Give a slot back."""
        self.admitted -= 1

    def queued(self) -> int:
        """Bytes written to clients' transports that the peers have not taken yet."""
        return sum(_unsent(transport) for transport in self._transports.values())

    async def send(self, ws: web.WebSocketResponse, text: str) -> None:
        """Send, unless this client is behind while all clients' queues are over budget."""
        transport = self._transports.get(ws)
        if _unsent(transport) > 0 and self.queued() + len(text) > self.max_queued:
            raise TooSlow
        await ws.send_str(text)

    async def snapshot(self) -> Snapshot:
        """A snapshot that starts after this call: concurrent callers share one build."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_retrieve)
        future = self._next
        if self._builder is None or self._builder.done():
            self._builder = asyncio.create_task(self._build_pending())
        return await asyncio.shield(future)

    async def _build_pending(self) -> None:
        while self._next is not None:
            future, self._next = self._next, None
            try:
                future.set_result(await self._build())
            except Exception as exc:  # every waiter gets it; none is left hanging
                future.set_exception(exc)

    async def _build(self) -> Snapshot:
        store = self.state.store
        position = await store.last_event_ids(await store.queues())
        stats = await overview(store, self.relay.throughput)
        tasks, _ = await store.list_tasks(limit=SNAPSHOT_TASKS)
        return Snapshot(stats, shapes.task_rows(tasks), position)

    async def serve(
        self, ws: web.WebSocketResponse, request: web.Request, since: Position | None
    ) -> None:
        """Run one client until it leaves, overflows, or the server shuts down."""
        sub = self.relay.subscribe()
        self.clients.add(ws)
        if request.transport is not None:
            self._transports[ws] = request.transport
        slow = False
        try:
            await self._start(ws, sub, since)
            await self._run(ws, sub)
        except (RedisUnavailable, TimeoutError):
            await close(ws, request, WSCloseCode.TRY_AGAIN_LATER, b"redis unavailable")
        except ConnectionResetError:
            pass
        except TooSlow:
            slow = True
        finally:
            self.relay.unsubscribe(sub)
            self.clients.discard(ws)
            self._transports.pop(ws, None)
        if sub.overflowed or slow:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop()
            await close(
                ws,
                request,
                WSCloseCode.TRY_AGAIN_LATER,
                b"too slow; reconnect with ?since=<last_event_id>",
            )

    async def _start(
        self, ws: web.WebSocketResponse, sub: Subscription, since: Position | None
    ) -> None:
        if since is not None and await self._replay(ws, sub, since):
            return
        snap = await self.snapshot()
        sub.after = snap.position
        await self.send(ws, snap.text("initial" if since is None else "since_too_old"))

    async def _replay(self, ws: web.WebSocketResponse, sub: Subscription, since: Position) -> bool:
        """Send every event after ``since``; False when some were trimmed (too old)."""
        store = self.state.store
        queues = await store.queues()
        after = resolve_position(since, queues)
        if await store.event_gaps(after):
            return False
        ends = await store.last_event_ids(queues)
        replayed = 0
        while todo := {q: a for q, a in after.items() if stream_id_key(a) < stream_id_key(ends[q])}:
            events = await store.read_events(todo, count=REPLAY_CHUNK)
            if not events:
                break
            for text in event_messages(events, after):
                await self.send(ws, text)
            for e in events:
                after[e.queue] = e.event_id
            replayed += len(events)
        sub.after = after
        await self.send(
            ws,
            shapes.dumps(
                {
                    "type": "resumed",
                    "replayed": replayed,
                    "last_event_id": encode_position(after),
                }
            ),
        )
        stats = self.relay.last_stats or await overview(store, self.relay.throughput)
        await self.send(ws, shapes.dumps({"type": "stats", "stats": stats}))
        return True

    async def _run(self, ws: web.WebSocketResponse, sub: Subscription) -> None:
        pump = asyncio.create_task(self._pump(ws, sub))
        reader = asyncio.create_task(_read(ws))
        finished = asyncio.create_task(sub.done.wait())
        jobs = {pump, reader, finished}
        try:
            await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
        if pump.done() and not pump.cancelled() and (error := pump.exception()) is not None:
            raise error

    async def _pump(self, ws: web.WebSocketResponse, sub: Subscription) -> None:
        while (item := await sub.next()) is not None:
            for text in await self._render(item, sub):
                await self.send(ws, text)

    async def _render(self, item: Item, sub: Subscription) -> list[str]:
        if isinstance(item, Batch):
            return batch_messages(item, sub)
        if isinstance(item, StatsUpdate):
            if item.rendered is None:
                item.rendered = [shapes.dumps({"type": "stats", "stats": item.stats})]
            return item.rendered
        if isinstance(item, WorkflowUpdate):
            if item.rendered is None:
                message = {"type": "workflow", "kind": item.kind, "workflow": item.workflow}
                item.rendered = [shapes.dumps(message)]
            return item.rendered
        snap = await self.snapshot()  # Resync: the relay lost events; start over
        sub.after = snap.position
        return [snap.text("resync")]

    async def close_all(self) -> None:
        """Close every client with 1001 (going away), e.g. on shutdown; all at once, so a
        few unresponsive peers cost one timeout, not one each."""

        async def going_away(ws: web.WebSocketResponse) -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

        await asyncio.gather(*(going_away(ws) for ws in list(self.clients)))


def _retrieve(future: asyncio.Future[Snapshot]) -> None:
    """Mark a shared snapshot's exception as seen, whoever stopped waiting for it."""
    if not future.cancelled():
        future.exception()


async def _read(ws: web.WebSocketResponse) -> None:
    """Consume what the client sends (close, pongs); the stream is one-way otherwise."""
    async for _msg in ws:
        pass


async def close(ws: web.WebSocketResponse, request: web.Request, code: int, message: bytes) -> None:
    """Close without waiting long for a peer that may never read again."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close(code=code, message=message, drain=False)
    transport = request.transport
    if transport is not None:
        transport.abort()


async def _first_message_auth(ws: web.WebSocketResponse, auth: Auth, who: str) -> bool:
    """Accept ``{"type": "auth", "token": "..."}`` as the first message (browsers cannot
    set headers on a WebSocket, and a query parameter ends up in access logs). Wrong
    tokens count against ``who`` like the API's, so the socket is no way around the
    failure throttle."""
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_S):
            msg = await ws.receive()
    except TimeoutError:
        return False
    if msg.type is not WSMsgType.TEXT:
        return False
    try:
        data = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return False
    token = data.get("token") if isinstance(data, dict) and data.get("type") == "auth" else None
    if not isinstance(token, str) or auth.failures.wait(who) > 0:
        return False
    access = auth.check(token)
    if access is None:
        auth.failures.take(who)
    return access is not None and access >= Access.READ


async def websocket(request: web.Request) -> web.StreamResponse:
    """GET /ws: upgrade, authenticate, then stream."""
    state = request.app[STATE]
    hub = request.app[SERVICES].hub
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.host, state.settings.server.allowed_origins):
        raise Forbidden("WebSocket connections are not allowed from this origin", origin=origin)
    since_raw = request.query.get("since")
    since = decode_position(since_raw) if since_raw else None
    ws = web.WebSocketResponse(
        heartbeat=HEARTBEAT_S,
        max_msg_size=MAX_MESSAGE_BYTES,
        compress=False,
        timeout=CLOSE_TIMEOUT_S,
    )
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(reason="expected a WebSocket upgrade request")
    ws.headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
    hub.admit()
    try:
        await ws.prepare(request)
        if request.get(ACCESS, Access.NONE) is Access.NONE and not await _first_message_auth(
            ws, hub.auth, "a:" + (request.remote or "?")
        ):
            await close(ws, request, WSCloseCode.POLICY_VIOLATION, b"authentication required")
            return ws
        await hub.serve(ws, request, since)
    finally:
        hub.release()
    return ws


def _unsent(transport: object) -> int:
    """Bytes a transport holds for its peer. Duck-typed: uvloop's transports have the
    method without subclassing asyncio.WriteTransport."""
    size = getattr(transport, "get_write_buffer_size", None)
    return int(size()) if callable(size) else 0
