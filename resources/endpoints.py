"""Where each vendor is called: the platform's setting, never a connection's.

In production every vendor is called at its real hosts, and a client may only reach hosts matching its
vendor's patterns (Salesforce's data host comes from the OAuth response's ``instance_url``, so it is a
pattern). When the operator sets ``SYNC_VENDOR_SANDBOX_URL``, every vendor is called at the sandbox
instead (``<sandbox>/<vendor>``), and the sandbox's origin is then the only host a client may reach.
"""

from __future__ import annotations

from dataclasses import dataclass

from resources.egress import Destinations, EgressPolicy
from resources.settings import egress_allowed_hosts, vendor_sandbox_url


@dataclass(frozen=True)
class VendorEndpoints:
    base_url: str
    destinations: Destinations
    # An OAuth token endpoint that is not under base_url (Google's).
    token_url: str | None = None


@dataclass(frozen=True)
class _Production:
    title: str
    base_url: str
    hosts: tuple[str, ...]
    token_url: str | None = None


PRODUCTION = {
    "hubspot": _Production("HubSpot", "https://api.hubapi.com", ("https://api.hubapi.com", "https://api.hubspot.com")),
    "salesforce": _Production(
        "Salesforce",
        "https://login.salesforce.com",
        ("https://login.salesforce.com", "https://test.salesforce.com", "https://*.salesforce.com"),
    ),
    "google_drive": _Production(
        "Google Drive",
        "https://www.googleapis.com",
        ("https://www.googleapis.com", "https://oauth2.googleapis.com"),
        token_url="https://oauth2.googleapis.com/token",
    ),
    "gong": _Production("Gong", "https://api.gong.io", ("https://api.gong.io", "https://*.api.gong.io")),
    "fireflies": _Production("Fireflies", "https://api.fireflies.ai", ("https://api.fireflies.ai",)),
    "monday": _Production("Monday", "https://api.monday.com", ("https://api.monday.com",)),
}
# Token paths the sandbox serves for vendors whose production token endpoint is on another host.
SANDBOX_TOKEN_PATHS = {"google_drive": "/token"}


def vendor_endpoints(vendor: str) -> VendorEndpoints:
    """The endpoints of ``vendor`` (a connector name) under the current platform settings."""
    production = PRODUCTION[vendor]
    sandbox = vendor_sandbox_url()
    if sandbox is None:
        return VendorEndpoints(
            production.base_url, Destinations(production.hosts, production.title), production.token_url
        )
    base = f"{sandbox}/{vendor}"
    token_path = SANDBOX_TOKEN_PATHS.get(vendor)
    destinations = Destinations.origin_of(sandbox, f"{production.title} (sandbox)")
    return VendorEndpoints(base, destinations, f"{base}{token_path}" if token_path else None)


def vendor_egress_policy() -> EgressPolicy:
    """Vendor calls may reach the operator's sandbox and SYNC_EGRESS_ALLOWED_HOSTS although not public."""
    entries = list(egress_allowed_hosts())
    sandbox = vendor_sandbox_url()
    if sandbox is not None:
        origin = Destinations.origin_of(sandbox, "sandbox").patterns[0]
        entries.append(origin.split("://", 1)[1])
    return EgressPolicy.from_entries(
        entries, hint="vendor calls reach only public addresses, the sandbox and SYNC_EGRESS_ALLOWED_HOSTS"
    )
