"""Where rule actions may connect: public addresses only, unless the operator allows more.

A rule's ``http``, ``openSearch``/``elasticsearch`` and ``salesforce`` actions, and the confirmation request
of a topic rule destination, make requests to URLs that a rule author (or, through substitution templates,
a message) chooses. Without a check they reach whatever the server can reach: its loopback-only admin API,
the cloud metadata service at ``169.254.169.254``, private networks. So every connection these requests open
goes through :class:`PinnedBackend`: the host name is resolved once, **every** address it resolves to must be
allowed by :class:`AddressPolicy`, and the connection is made to the address that was checked (TLS still
verifies the name), so a DNS answer that changes between the check and the connection (rebinding) cannot
move it. Allowed: global unicast addresses; anything else (loopback, link-local, private, shared,
multicast, reserved...) only inside ``[rules] allowed_destination_networks`` or with
``allow_private_destinations``. Origins the operator configured (``[search] endpoints``) are trusted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # embeds an IPv4 address that a NAT64 gateway reaches


class AddressRefused(Exception):
    """A connection the address policy refuses. Not an httpcore error, so httpx lets it through unchanged and
    callers can tell it from a network failure (it is never worth trying again)."""


def address_kind(ip: IPAddress) -> str | None:
    """None for a public (global unicast) address, else what it is: the reason it needs an allowance."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if mapped is not None:
            return address_kind(mapped)
    for kind, test in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                       ("unspecified", ip.is_unspecified), ("multicast", ip.is_multicast),
                       ("private", ip.is_private)):
        if test:
            return kind
    if not ip.is_global:
        return "non-public"
    return None


class AddressPolicy:
    """Which addresses rule actions may connect to (built from ``[rules]`` and ``[search]`` settings)."""

    def __init__(self, networks: Iterable[str] = (), *, allow_private: bool = False,
                 trusted_origins: Iterable[tuple[str, int]] = ()) -> None:
        self.networks: list[IPNetwork] = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.allow_private = allow_private
        self.trusted = {(h.lower(), p) for h, p in trusted_origins}

    @classmethod
    def from_settings(cls, settings: typing.Any) -> AddressPolicy:
        trusted = []
        for url in settings.search.endpoints.values():  # the operator's own clusters
            parts = urlsplit(url)
            if parts.hostname:
                trusted.append((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
        rules = settings.rules
        return cls(rules.allowed_destination_networks, allow_private=rules.allow_private_destinations,
                   trusted_origins=trusted)

    def refusal(self, ip: IPAddress) -> str | None:
        """None when ``ip`` may be connected to, else why not (for the error message)."""
        kind = address_kind(ip)
        if kind is None or self.allow_private:
            return None
        check = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        if any(check in net for net in self.networks):
            return None
        return (f"{ip} is a {kind} address: rule actions may not connect to it unless [rules] "
                "allowed_destination_networks (or allow_private_destinations) allows it")

    def check_literal(self, url: str) -> str | None:
        """Why a URL whose host is an IP address literal is refused (None: allowed, or a name to resolve later)."""
        host = urlsplit(url).hostname
        if not host:
            return None
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None
        return self.refusal(ip)

    async def resolve_and_check(self, host: str, port: int, resolve: Resolver | None = None) -> list[str]:
        """The addresses of ``host``, all allowed; raises :class:`AddressRefused` otherwise."""
        if (host.lower(), port) in self.trusted:
            return [host]
        try:
            addresses = await (resolve or system_resolve)(host, port)
        except OSError as exc:
            raise AddressRefused(f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise AddressRefused(f"{host} resolves to no address")
        for address in addresses:
            why = self.refusal(ipaddress.ip_address(address.split("%", 1)[0]))
            if why is not None:
                raise AddressRefused(f"{host} resolves to {why}" if address != host else why)
        return addresses


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address of ``host`` (IP literals stay as they are), in the resolver's order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy in front: connects only to checked addresses."""

    def __init__(self, policy: AddressPolicy, resolve: Resolver | None = None) -> None:
        self.policy = policy
        self.resolve = resolve
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.AsyncNetworkStream:
        resolving = self.policy.resolve_and_check(host, port, self.resolve)
        addresses = await (asyncio.wait_for(resolving, timeout) if timeout else resolving)
        error: Exception | None = None
        for address in addresses:  # the checked addresses, never the name: no second lookup to rebind
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[typing.Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("rule actions do not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose every connection passes the policy.

    httpx offers no public way to give its pool a network backend, so the pool it built is replaced by an
    identical one that has it (``handle_async_request`` only uses ``self._pool``). Being a custom transport,
    it also keeps httpx from routing through ``HTTP(S)_PROXY`` from the environment, which would hide the
    real destination from the check."""

    def __init__(self, policy: AddressPolicy, *, max_connections: int, resolve: Resolver | None = None) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), max_connections=max_connections,
            max_keepalive_connections=max_connections, keepalive_expiry=5.0,
            network_backend=PinnedBackend(policy, resolve))


def guarded_client(policy: AddressPolicy, *, max_connections: int = 200, resolve: Resolver | None = None,
                   user_agent: str = "thingcore-rules") -> httpx.AsyncClient:
    """The HTTP client of rule actions and destination confirmations: no redirects, no proxies, checked addresses."""
    return httpx.AsyncClient(transport=GuardedTransport(policy, max_connections=max_connections, resolve=resolve),
                             follow_redirects=False, trust_env=False, headers={"user-agent": user_agent})
