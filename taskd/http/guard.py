"""Who may do what: bearer tokens, browser origins and the per-client write rate limit.

Kept free of aiohttp request objects where it can be, so the rules read (and test) as
plain functions of their inputs.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from enum import IntEnum
from urllib.parse import urlsplit

from taskd.config import AuthSettings


class Access(IntEnum):
    """What a request may do; ordered, so ``access >= Access.READ`` reads naturally."""

    NONE = 0
    READ = 1
    FULL = 2


FAILURE_RATE = 1.0
FAILURE_BURST = 20.0
MIN_TOKEN_LEN = 16


def weak_tokens(settings: AuthSettings) -> list[str]:
    """Which kinds of configured token are shorter than MIN_TOKEN_LEN (never the tokens)."""
    kinds = (("auth.tokens", settings.tokens), ("auth.read_tokens", settings.read_tokens))
    return [kind for kind, tokens in kinds if any(len(t) < MIN_TOKEN_LEN for t in tokens)]


class Auth:
    """Bearer-token checks with constant-time comparison.

    No tokens configured: everyone has full access (the daemon refuses to listen beyond
    loopback like that unless ``auth.allow_anonymous``). With tokens: a full token may do
    everything, a read token may only read, a wrong token is refused, and a missing one is
    refused unless ``allow_anonymous`` (then it may read).
    """

    def __init__(self, settings: AuthSettings) -> None:
        self._full = [t.encode() for t in settings.tokens]
        self._read = [t.encode() for t in settings.read_tokens]
        self.allow_anonymous = settings.allow_anonymous
        #: Wrong tokens per peer address: a burst of FAILURE_BURST, then FAILURE_RATE/s;
        #: beyond it 429, so guessing tokens is slow. Shared by the API and /ws.
        self.failures = RateLimiter(FAILURE_RATE, burst=FAILURE_BURST)

    @property
    def required(self) -> bool:
        """True when any token is configured."""
        return bool(self._full or self._read)

    def check(self, token: str | None) -> Access | None:
        """The access a token grants; None for a token that matches nothing."""
        if not self.required:
            return Access.FULL
        if token is None:
            return Access.READ if self.allow_anonymous else Access.NONE
        given = token.encode()
        # Compare against every token, without early exit, so timing reveals nothing.
        full = _matches(given, self._full)
        read = _matches(given, self._read)
        if full:
            return Access.FULL
        if read:
            return Access.READ
        return None


def _matches(given: bytes, tokens: Iterable[bytes]) -> bool:
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given, token)
    return found


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def origin_allowed(origin: str | None, host: str, allowed: tuple[str, ...]) -> bool:
    """Same origin (host and port, any scheme: a TLS proxy may sit in front), or listed.

    Requests without an Origin header come from non-browser clients, which an origin
    check cannot constrain anyway; they go on to authentication.
    """
    if origin is None:
        return True
    if "*" in allowed or origin.rstrip("/") in allowed:
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.lower()


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a ``Host`` header without its port: ``[::1]:80`` -> ``::1``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


class HostCheck:
    """Which ``Host`` headers an open (tokenless) server answers: the DNS rebinding defence.

    After a rebind, an attacker's page and taskd share an origin, so origin checks pass;
    only the name in ``Host`` still tells them apart. Accepted: loopback names and
    addresses, the address the client connected to, ``server.host`` and the
    ``server.allowed_hosts`` entries (``*.example.com`` matches sub-domains; ``*`` any).
    A request without ``Host`` (HTTP/1.0 tools) cannot come from a browser and passes.
    """

    def __init__(self, server_host: str, allowed: Iterable[str]) -> None:
        names = {host_name(a) for a in allowed}
        self.any = "*" in names
        self._suffixes = tuple(n[1:] for n in names if n.startswith("*."))
        self._names = {n for n in names if not n.startswith("*")}
        if server_host not in {"0.0.0.0", "::", ""}:  # noqa: S104 - names, not binds
            self._names.add(host_name(server_host))

    def accepts(self, header: str | None, local_address: str | None) -> bool:
        """True when ``header`` names this server rather than some other site."""
        if self.any or header is None:
            return True
        name = host_name(header)
        if name == "localhost" or name.endswith(".localhost") or is_loopback(name):
            return True
        if name in self._names or name.endswith(self._suffixes):
            return True
        return local_address is not None and _same_address(name, local_address)


def _same_address(name: str, local: str) -> bool:
    try:
        given = ipaddress.ip_address(name)
        here = ipaddress.ip_address(local.partition("%")[0])
    except ValueError:
        return False
    if isinstance(here, ipaddress.IPv6Address) and here.ipv4_mapped is not None:
        here = here.ipv4_mapped  # a dual-stack listener reports IPv4 peers this way
    return given == here


class RateLimiter:
    """Token buckets per client: ``rate`` writes per second, bursts up to one second's worth.

    At most ``max_clients`` buckets are kept (least recently used evicted), so a flood of
    distinct clients cannot grow memory without bound.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, client: str) -> float:
        """Seconds until ``client`` may spend a token (0.0: now); spends nothing."""
        if self.rate <= 0 or client not in self._buckets:
            return 0.0
        tokens, last = self._buckets[client]
        tokens = min(self.burst, tokens + (self._clock() - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, client: str) -> float:
        """Spend one token; 0.0 when allowed, else seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def client_key(token: str | None, remote: str | None) -> str:
    """Rate-limit identity: a verified token (hashed, never kept in clear), else the peer
    address; an unverified bearer value must never count, or each request could bring a
    fresh one and escape the limit."""
    if token:
        return "t:" + hashlib.sha256(token.encode()).hexdigest()[:32]
    return "a:" + (remote or "?")


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
