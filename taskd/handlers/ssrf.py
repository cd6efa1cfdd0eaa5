"""The SSRF guard for outgoing HTTP: which addresses a task may make taskd connect to.

A task payload is user input, and taskd often runs next to things that trust anything
coming from inside (admin ports on loopback, a cloud metadata service on 169.254.169.254,
databases on private addresses). The guard refuses such addresses *after* DNS resolution,
inside the connector's resolver, so the address checked is the address connected to (no
window for DNS rebinding). aiohttp skips the resolver for IP literals, so those are
checked per request URL with :func:`check_url`, in a client middleware that aiohttp runs
for every redirect hop as well.

Use :func:`guarded_session` in your own handlers (webhooks, callbacks) for the same
protection; see ``examples/webhooks.py``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType
from yarl import URL

from taskd.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES: Final = ("http", "https")
_THIS_NETWORK: Final = ipaddress.ip_network("0.0.0.0/8")
_SHARED: Final = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT


class AddressRefused(Exception):
    """The guard refused to connect to this host or address."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        shown = host if host == address else f"{host} ({address})"
        super().__init__(
            f"refusing to connect to {shown}: {reason} address "
            "(allow it with api_call.allow_hosts or api_call.allow_private)"
        )
        self.host = host
        self.address = address
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Policy:
    """What may be reached besides public addresses (from the ``[api_call]`` settings)."""

    allow_hosts: tuple[str, ...] = ()
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: Settings | None) -> Policy:
        """The configured policy; without settings the strictest one."""
        if settings is None:
            return cls()
        return cls(settings.api_call.allow_hosts, settings.api_call.allow_private)

    def host_listed(self, host: str) -> bool:
        """Whether ``host`` is named in allow_hosts (exactly, or by a ``*.domain`` entry)."""
        name = host.lower().rstrip(".")
        for entry in self.allow_hosts:
            pattern = entry.lower().rstrip(".")
            if name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
                return True
        return False

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused (loopback, private, …), or None when it is allowed."""
        address = embedded_ipv4(address) or address
        for entry in self.allow_hosts:
            network = _network(entry)
            if network is not None and address in network:
                return None
        reason = _category(address)
        if reason is None or (self.allow_private and reason in ("private", "loopback")):
            return None
        return reason

    def check(self, host: str, address: str) -> None:
        """Raise AddressRefused unless connecting to ``address`` for ``host`` is allowed."""
        if self.host_listed(host):
            return
        reason = self.refusal(ipaddress.ip_address(address.split("%", 1)[0]))
        if reason is not None:
            raise AddressRefused(host, address, reason)


# NAT64's well-known prefix (RFC 6052); the local-use 64:ff9b:1::/48 counts as private.
_NAT64: Final = (ipaddress.ip_network("64:ff9b::/96"),)
_COMPATIBLE: Final = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches (mapped ::ffff:a.b.c.d, 6to4
    2002:AABB:CCDD::, NAT64 64:ff9b::a.b.c.d, compatible ::a.b.c.d), else None.

    Those packets end up at the IPv4 address, so that is the one to judge: 2002:7f00:1::
    is loopback, 64:ff9b::10.0.0.1 is private.
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64[0] or (address in _COMPATIBLE and int(address) > 1):  # not ::, ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


# In order: the first matching kind names the address (169.254/16 is "private" too, but
# must be reported, and treated, as link-local).
_KINDS: Final[tuple[tuple[str, Callable[[IPAddress], bool]], ...]] = (
    ("loopback", lambda a: a.is_loopback),
    ("link-local", lambda a: a.is_link_local),
    ("multicast", lambda a: a.is_multicast),
    ("unspecified", lambda a: a.is_unspecified or (a.version == 4 and a in _THIS_NETWORK)),
    ("reserved", lambda a: a.is_reserved),
    ("private", lambda a: a.is_private or (a.version == 4 and a in _SHARED)),
    ("reserved", lambda a: not a.is_global),
)


def _category(address: IPAddress) -> str | None:
    """The kind of non-public address, or None for a public (global unicast) one."""
    return next((kind for kind, test in _KINDS if test(address)), None)


def literal_address(host: str) -> IPAddress | None:
    """The IP address a URL host spells, or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_url(url: URL, policy: Policy) -> None:
    """Refuse non-HTTP schemes and literal addresses the policy does not allow.

    Host names are checked later, by :class:`GuardedResolver`, once they are resolved.
    """
    if url.scheme not in SCHEMES:
        raise AddressRefused(str(url), str(url), f"non-HTTP ({url.scheme or 'no'} scheme)")
    host = url.raw_host or ""
    if not host:
        raise AddressRefused(str(url), "", "missing host in the URL;")
    if literal_address(host) is not None:
        policy.check(host, host.strip("[]"))


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses disallowed addresses.

    A name is refused when any of its addresses is refused: connecting to "whichever
    answers" would let a record with one public and one internal address through.
    """

    def __init__(self, policy: Policy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self.policy.check(host, result["host"])
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def url_guard(policy: Policy) -> ClientMiddlewareType:
    """A client middleware checking each request's URL, redirect hops included."""

    async def guard(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        check_url(request.url, policy)
        return await handler(request)

    return guard


def guarded_session(policy: Policy, **kwargs: Any) -> aiohttp.ClientSession:
    """A ClientSession whose every connection passes the guard.

    It never uses proxies from the environment: a proxy would connect on our behalf,
    to whatever the URL names, unchecked.
    """
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy))
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, middlewares=(url_guard(policy),), **kwargs
    )
