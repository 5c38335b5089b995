"""Where a webhook may go: http(s) only, and only to public addresses (the egress guard's deny-list,
resources/egress.py) unless ``WEBHOOK_ALLOW_PRIVATE=1`` or ``WEBHOOK_ALLOWED_HOSTS`` permits it.

The check runs at send time on the addresses the name resolves to then, and the connection is made to
exactly the address that passed, so a DNS answer that changes after the check cannot redirect it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from resources.egress import EgressPolicy, EgressRefused
from resources.settings import allow_private_webhooks, webhook_allowed_hosts

ALLOWED_HOSTS_ENV = "WEBHOOK_ALLOWED_HOSTS"


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


def webhook_policy() -> EgressPolicy:
    return EgressPolicy.from_entries(
        webhook_allowed_hosts(),
        allow_private=allow_private_webhooks(),
        hint=f"set WEBHOOK_ALLOW_PRIVATE=1 or list the host in {ALLOWED_HOSTS_ENV} to allow it",
    )


def resolve(url: str) -> Destination:
    """Vet the URL now and pick the address to connect to; raises InvalidWebhookUrl or RefusedDestination."""
    validate_webhook_url(url)
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        addresses = webhook_policy().addresses(host, port)
    except EgressRefused as exc:
        raise RefusedDestination(str(exc)) from None
    return Destination(parts.scheme, host, port, addresses[0], target)
