"""What every vendor resource shares: endpoints, retry settings, timeouts and the rate limiters."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from dagster import ConfigurableResource
from pydantic import Field

from resources.connections import Connection
from resources.db import get_engine
from resources.egress import DEFAULT_MAX_RESPONSE_BYTES
from resources.endpoints import VendorEndpoints, vendor_endpoints
from resources.http import RetrySettings, VendorClient, VendorError
from resources.rate_limit import (
    CredentialLimiter,
    Limiter,
    LimiterChain,
    RateLimit,
    SlotStore,
    connection_key,
    credential_key,
)
from resources.settings import rate_limit_max_wait_s, rate_limit_overrides, warehouse_url


class VendorResource(ConfigurableResource):
    """Base of the per-vendor client factories. A run asks ``client_for(connection)`` once per
    connector; the client hides the session, auth refresh, retries and the rate limit.

    A vendor declares its client class, the credentials it needs and whose quota a call spends; what
    is truly its own (extra limiters, settings read from the connection) goes in ``client_options``.
    Endpoints and the shared rate limits are platform settings (resources/endpoints.py, SYNC_RATE_LIMITS):
    a connection's config can only make its own calls slower, never reach another host."""

    client_class: ClassVar[type[VendorClient]]
    # Alternative sets of credential fields: a connection must hold every field of one set.
    credential_sets: ClassVar[tuple[tuple[str, ...], ...]]
    credentials_hint: ClassVar[str]  # what the error says when none is complete
    # Whose quota a call spends: the first set of credential fields present, joined.
    quota_identity: ClassVar[tuple[tuple[str, ...], ...]]

    max_retries: int = Field(default=3, description="Retries after the first attempt on 429/5xx.")
    backoff_base_s: float = Field(default=2.0, description="First backoff delay; doubles per retry.")
    max_backoff_s: float = Field(default=60.0)
    timeout_s: float = Field(default=30.0, description="Per-request connect/read timeout.")
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES, description="The largest response body a call reads."
    )
    rate_limit_store_url: str = Field(
        default="",
        description="Database holding the shared rate-limit slots; empty means WAREHOUSE_URL. "
        "'memory' keeps them in-process (single-process use only).",
    )

    # Each vendor sets its documented default (requests, per seconds).
    default_rate_limit: ClassVar[tuple[int, float]] = (100, 60.0)

    def client_for(self, connection: Connection, log: logging.Logger | Any | None = None) -> Any:
        creds = connection.credentials
        if not any(all(creds.get(f) for f in fields) for fields in self.credential_sets):
            raise VendorError(self.client_class.vendor, f"credentials need {self.credentials_hint}")
        identity = next(
            (
                ":".join(str(creds[f]) for f in fields)
                for fields in self.quota_identity
                if all(creds.get(f) for f in fields)
            ),
            "",
        )
        return self.client_class(
            credentials=creds,
            limiter=self.limiter(connection.connector, identity, connection),
            **self.http_settings(connection, log),
            **self.client_options(connection, identity),
        )

    def client_options(self, connection: Connection, identity: str) -> dict[str, Any]:
        """Constructor arguments only this vendor's client takes."""
        return {}

    def retry_settings(self, connection: Connection) -> RetrySettings:
        overrides: dict[str, Any] = connection.config.get("retry") or {}
        return RetrySettings(
            max_retries=int(overrides.get("max_retries", self.max_retries)),
            backoff_base_s=float(overrides.get("backoff_base_s", self.backoff_base_s)),
            max_backoff_s=float(overrides.get("max_backoff_s", self.max_backoff_s)),
            timeout_s=float(overrides.get("timeout_s", self.timeout_s)),
        )

    def endpoints(self, connection: Connection) -> VendorEndpoints:
        return vendor_endpoints(connection.connector)

    def http_settings(self, connection: Connection, log: logging.Logger | Any | None) -> dict[str, Any]:
        """The VendorClient arguments every vendor shares: where to call, how to retry, what to log."""
        endpoints = self.endpoints(connection)
        return {
            "base_url": endpoints.base_url,
            "destinations": endpoints.destinations,
            "max_response_bytes": self.max_response_bytes,
            "retry": self.retry_settings(connection),
            "log": log,
        }

    def limiter(
        self,
        vendor: str,
        identity: str,
        connection: Connection,
        *,
        scope: str = "",
        config_key: str = "rate_limit",
        default: tuple[int, float] | None = None,
    ) -> Limiter:
        """The limiter of one credential (and optional endpoint ``scope``).

        The credential's key may be shared by tenants (Drive's OAuth client is the platform's app), so
        its limit is the platform's: the vendor's default or the operator's SYNC_RATE_LIMITS entry. A
        connection's ``config[config_key]`` can only add a tighter limit, kept on a key of its own."""
        name = f"{vendor}:{scope}" if scope else vendor
        platform = RateLimit.parse(rate_limit_overrides().get(name), RateLimit(*(default or self.default_rate_limit)))
        url = self.rate_limit_store_url or warehouse_url()
        store = SlotStore(None if url == "memory" else get_engine(url))
        max_wait_s = rate_limit_max_wait_s()
        key = credential_key(vendor, identity) + (f":{scope}" if scope else "")
        shared = CredentialLimiter(store, key, platform, max_wait_s=max_wait_s, label=f"the {name} credential")
        requested = RateLimit.parse(connection.config.get(config_key), None)
        if requested is None or (platform is not None and requested.interval_s <= platform.interval_s):
            return shared
        own = CredentialLimiter(
            store,
            connection_key(connection.workspace_id, connection.connector, scope),
            requested,
            max_wait_s=max_wait_s,
            label=f"this connection's {config_key}",
        )
        return LimiterChain(own, shared)
