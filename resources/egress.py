"""The egress guard: every outbound HTTP call the platform makes (vendor APIs, webhooks) passes here.

A destination is resolved, and every address it resolves to must be public, unless the operator allowed
that host (the vendor sandbox, a webhook receiver on a private network). The connection is then made to
an address that passed, never to a second lookup, so a DNS answer that changes after the check cannot
move it. Each hop of a redirect is a new connection and is checked again. Vendor calls additionally stay
on the vendor's hosts (``Destinations``) and read at most ``max_response_bytes`` of a body.

Why an explicit deny-list: on Python 3.11 ``ipaddress`` calls ``fec0::1``, ``192.88.99.1``, the 6to4
address ``2002:7f00:1::1`` and the NAT64 address ``64:ff9b::7f00:1`` global, although the last two reach
127.0.0.1. Addresses that wrap an IPv4 address (IPv4-mapped, 6to4, NAT64, Teredo) are judged by the IPv4
address inside them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager, ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as urllib3_connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (network, what it is, with its article). Everything an outbound call must not reach without the operator's say-so.
DENIED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), label)
    for net, label in (
        ("0.0.0.0/8", "a 'this network'"),
        ("10.0.0.0/8", "a private"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT, cloud metadata)"),
        ("127.0.0.0/8", "a loopback"),
        ("169.254.0.0/16", "a link-local"),
        ("172.16.0.0/12", "a private"),
        ("192.0.0.0/24", "an IETF protocol assignment"),
        ("192.0.2.0/24", "a documentation"),
        ("192.88.99.0/24", "a 6to4 relay"),
        ("192.168.0.0/16", "a private"),
        ("198.18.0.0/15", "a benchmarking"),
        ("198.51.100.0/24", "a documentation"),
        ("203.0.113.0/24", "a documentation"),
        ("224.0.0.0/4", "a multicast"),
        ("240.0.0.0/4", "a reserved"),
        ("::/128", "an unspecified"),
        ("::1/128", "a loopback"),
        ("::/96", "an IPv4-compatible"),
        ("64:ff9b:1::/48", "a local-use NAT64"),
        ("100::/64", "a discard-only"),
        ("2001::/23", "an IETF protocol assignment"),
        ("2001:db8::/32", "a documentation"),
        ("3fff::/20", "a documentation"),
        ("5f00::/16", "a segment routing"),
        ("fc00::/7", "a unique local"),
        ("fe80::/10", "a link-local"),
        ("fec0::/10", "a site-local"),
        ("ff00::/8", "a multicast"),
    )
)
# IPv6 forms that carry an IPv4 address: judged by that address (unwrapped_ipv4).
NAT64 = ipaddress.ip_network("64:ff9b::/96")

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_REDIRECTS = 5
READ_CHUNK_BYTES = 64 * 1024


class EgressRefused(Exception):
    """The destination is not one this deployment calls. The message names the host and why, never a
    path or query (they often carry tokens)."""


class ResponseTooLarge(Exception):
    """A response body exceeded the cap; the rest of it was never read."""


def unwrapped_ipv4(ip: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address inside an IPv4-mapped, NAT64, 6to4 or Teredo IPv6 address, and the form's name."""
    if ip.version == 4:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip.teredo is not None:
        return ip.teredo[1], "Teredo"
    return None


def non_public_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address ("a loopback address", …), or None when it is public."""
    inner = unwrapped_ipv4(ip)
    if inner is not None:
        address, form = inner
        reason = non_public_reason(address)
        if reason is not None:
            return f"the {form} form of {address}, {reason}"
        if form == "Teredo":  # a tunnel endpoint, never a vendor or receiver address
            return "a Teredo tunnel address"
        return None
    for network, label in DENIED_NETWORKS:
        if ip.version == network.version and ip in network:
            return f"{label} address"
    return None


def parse_ip(text: str) -> IPAddress:
    """An address as getaddrinfo reports it, without an IPv6 zone index."""
    return ipaddress.ip_address(text.split("%")[0])


@dataclass(frozen=True)
class EgressPolicy:
    """Which non-public destinations the operator allowed. ``allowed_hosts`` holds ``host`` or
    ``host:port`` entries (a host alone allows every port), ``allowed_networks`` address ranges."""

    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    allow_private: bool = False
    # Appended to a refusal: which setting would allow the destination (for the operator's eyes).
    hint: str = ""

    @classmethod
    def from_entries(cls, entries: Iterable[str], *, allow_private: bool = False, hint: str = "") -> EgressPolicy:
        """Build from operator entries: host names, ``host:port`` or IP networks (``10.0.0.0/8``)."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks), allow_private, hint)

    def permits(self, host: str, port: int, ip: IPAddress) -> bool:
        if self.allow_private:
            return True
        host = host.lower().strip("[]")
        if host in self.allowed_hosts or f"{host}:{port}" in self.allowed_hosts:
            return True
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)

    def addresses(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` and return its addresses if every one of them may be called; otherwise raise
        EgressRefused (one bad answer is enough: a resolver may rotate between them)."""
        name = host.strip("[]")
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise EgressRefused(f"{name} does not resolve ({exc.strerror or type(exc).__name__})") from None
        found = list(dict.fromkeys(info[4][0] for info in infos))
        for address in found:
            ip = parse_ip(address)
            reason = non_public_reason(ip)
            if reason and not self.permits(name, port, ip):
                suffix = f"; {self.hint}" if self.hint else ""
                raise EgressRefused(f"{name} resolves to {ip}, {reason}{suffix}")
        return found


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


@dataclass(frozen=True)
class Destinations:
    """Where one client may send requests at all: ``scheme://host[:port]`` patterns, a host may start
    with ``*.`` (any subdomain). ``owner`` names them in refusals ("not a Salesforce host")."""

    patterns: tuple[str, ...]
    owner: str

    @classmethod
    def origin_of(cls, url: str, owner: str) -> Destinations:
        parts = urlsplit(url)
        return cls((f"{parts.scheme}://{parts.netloc}",), owner)

    def permits(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or default_port(parts.scheme)
        except ValueError:
            return False
        return any(self._matches(pattern, parts.scheme, host, port) for pattern in self.patterns)

    @staticmethod
    def _matches(pattern: str, scheme: str, host: str, port: int) -> bool:
        allowed = urlsplit(pattern)
        if allowed.scheme != scheme or port != (allowed.port or default_port(allowed.scheme)):
            return False
        wanted = (allowed.hostname or "").lower()
        if wanted.startswith("*."):
            return host.endswith(wanted[1:]) and len(host) > len(wanted) - 1
        return host == wanted


# --- the transport: urllib3 connections that connect only to vetted addresses -----------------------


class _VettedConnectionMixin:
    """Resolves and vets the host each time a socket is opened, then connects to a vetted address."""

    egress_policy: EgressPolicy
    _dns_host: str
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        error: Exception | None = None
        for address in self.egress_policy.addresses(self._dns_host, self.port):
            try:
                return urllib3_connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError:
                error = ConnectTimeoutError(self, f"Connection to {self.host} timed out")
            except OSError as exc:
                error = NewConnectionError(self, f"Failed to establish a new connection: {exc}")
        raise error or NewConnectionError(self, "no address to connect to")


class VettedHTTPConnection(_VettedConnectionMixin, HTTPConnection):
    pass


class VettedHTTPSConnection(_VettedConnectionMixin, HTTPSConnection):
    pass


class _PolicyPoolMixin:
    """Hands the pool's egress policy to each connection it opens."""

    egress_policy: EgressPolicy

    def _new_conn(self) -> Any:
        conn = super()._new_conn()  # type: ignore[misc]
        conn.egress_policy = self.egress_policy
        return conn


class VettedHTTPConnectionPool(_PolicyPoolMixin, HTTPConnectionPool):
    ConnectionCls = VettedHTTPConnection


class VettedHTTPSConnectionPool(_PolicyPoolMixin, HTTPSConnectionPool):
    ConnectionCls = VettedHTTPSConnection


VETTED_POOLS = {"http": VettedHTTPConnectionPool, "https": VettedHTTPSConnectionPool}


class _PolicyManagerMixin:
    egress_policy: EgressPolicy
    pool_classes_by_scheme: Any

    def _new_pool(self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None) -> Any:
        pool = super()._new_pool(scheme, host, port, request_context)  # type: ignore[misc]
        pool.egress_policy = self.egress_policy
        return pool


class VettedPoolManager(_PolicyManagerMixin, PoolManager):
    def __init__(self, policy: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.egress_policy = policy
        self.pool_classes_by_scheme = VETTED_POOLS


class VettedProxyManager(_PolicyManagerMixin, ProxyManager):
    """Through a proxy the socket goes to the proxy, which is vetted like any destination (allow a
    private proxy explicitly); the proxy resolves the target itself, so it must refuse private ranges
    too. The target still has to be one of the client's ``Destinations``."""

    def __init__(self, policy: EgressPolicy, proxy_url: str, **kwargs: Any) -> None:
        super().__init__(proxy_url, **kwargs)
        self.egress_policy = policy
        self.pool_classes_by_scheme = VETTED_POOLS


class GuardedAdapter(HTTPAdapter):
    """requests' transport with the guard: vetted connections, destinations, a response size cap."""

    def __init__(self, policy: EgressPolicy, destinations: Destinations | None, max_response_bytes: int) -> None:
        self.egress_policy = policy
        self.destinations = destinations
        self.max_response_bytes = max_response_bytes
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
        self.poolmanager = VettedPoolManager(
            self.egress_policy, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> ProxyManager:
        if proxy.lower().startswith("socks"):
            raise EgressRefused("SOCKS proxies are not supported: the guard cannot vet their connections")
        if proxy not in self.proxy_manager:
            self.proxy_manager[proxy] = VettedProxyManager(
                self.egress_policy,
                proxy,
                proxy_headers=self.proxy_headers(proxy),
                num_pools=self._pool_connections,
                maxsize=self._pool_maxsize,
                block=self._pool_block,
                **proxy_kwargs,
            )
        return self.proxy_manager[proxy]

    def send(self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any) -> requests.Response:
        url = request.url or ""
        if self.destinations is not None and not self.destinations.permits(url):
            parts = urlsplit(url)
            raise EgressRefused(f"{parts.scheme}://{parts.netloc} is not a {self.destinations.owner} host")
        response = super().send(request, stream=True, **kwargs)
        if not stream:
            response._content = read_capped(response, self.max_response_bytes)  # what .content returns
        return response


def read_capped(response: requests.Response, limit: int) -> bytes:
    """The whole body, read (and decompressed) chunk by chunk; ResponseTooLarge past ``limit`` bytes."""
    host = urlsplit(response.url).netloc
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise ResponseTooLarge(f"the response from {host} declares {declared} bytes, over the {limit}-byte cap")
    chunks, size = [], 0
    for chunk in response.iter_content(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            response.close()
            raise ResponseTooLarge(f"the response from {host} exceeded the {limit}-byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


def guarded_session(
    policy: EgressPolicy,
    destinations: Destinations | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> requests.Session:
    """A requests session whose every request, redirects included, goes through the guard."""
    session = requests.Session()
    adapter = GuardedAdapter(policy, destinations, max_response_bytes)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = MAX_REDIRECTS
    return session
