"""Where a webhook may go: http(s) only, and never to private, loopback or link-local addresses unless
``WEBHOOK_ALLOW_PRIVATE=1`` or ``WEBHOOK_ALLOWED_HOSTS`` permits it.

The check runs at send time on the addresses the name resolves to then, and the connection is made to
exactly the address that passed, so a DNS answer that changes after the check cannot redirect it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from resources.settings import allow_private_webhooks

ALLOWED_HOSTS_ENV = "WEBHOOK_ALLOWED_HOSTS"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidWebhookUrl(ValueError):
    """The URL can never be delivered to (wrong scheme, no host)."""


class RefusedDestination(Exception):
    """The URL resolves to an address this deployment does not deliver to."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str  # as written in the URL: the Host header and the TLS server name
    port: int
    address: str  # the vetted IP the connection is made to
    target: str  # path and query

    @property
    def origin(self) -> str:
        """Scheme, host and port only: safe to log (paths and queries often carry tokens)."""
        return f"{self.scheme}://{self.host}:{self.port}"


def validate_webhook_url(url: str) -> str:
    """The check made when a URL is saved: http(s) with a host. Addresses are vetted at send time."""
    parts = urlsplit(url.strip()) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhookUrl("the webhook URL must be an absolute http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise InvalidWebhookUrl("the webhook URL has an invalid port") from exc
    return url.strip()


def safe_origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _allowlist() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks = []
    for item in os.environ.get(ALLOWED_HOSTS_ENV, "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            names.add(item)
    return names, networks


def _forbidden_kind(ip: IPAddress) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private:
        return "private"
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return "reserved"
    return None


def resolve(url: str) -> Destination:
    """Vet the URL now and pick the address to connect to; raises InvalidWebhookUrl or RefusedDestination."""
    validate_webhook_url(url)
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RefusedDestination(f"{host} does not resolve ({exc.strerror or exc})") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    names, networks = _allowlist()
    permitted = allow_private_webhooks() or host.lower() in names
    for ip in addresses:
        kind = _forbidden_kind(ip)
        if kind and not permitted and not any(ip in net for net in networks):
            raise RefusedDestination(
                f"{host} resolves to {ip}, a {kind} address; set WEBHOOK_ALLOW_PRIVATE=1 or list the host in "
                f"{ALLOWED_HOSTS_ENV} to allow it"
            )
    return Destination(parts.scheme, host, port, str(addresses[0]), target)
