"""What every vendor resource shares: retry settings, timeouts and the credential rate limiter."""

from __future__ import annotations

from typing import Any, ClassVar

from dagster import ConfigurableResource
from pydantic import Field

from resources.connections import Connection
from resources.db import get_engine
from resources.http import RetrySettings
from resources.rate_limit import CredentialLimiter, RateLimit, SlotStore, credential_key
from resources.settings import warehouse_url


class VendorResource(ConfigurableResource):
    """Base of the per-vendor client factories. A run asks ``client_for(connection)`` once per
    connector; the client hides the session, auth refresh, retries and the rate limit."""

    max_retries: int = Field(default=3, description="Retries after the first attempt on 429/5xx.")
    backoff_base_s: float = Field(default=2.0, description="First backoff delay; doubles per retry.")
    max_backoff_s: float = Field(default=60.0)
    timeout_s: float = Field(default=30.0, description="Per-request connect/read timeout.")
    rate_limit_store_url: str = Field(
        default="",
        description="Database holding the shared rate-limit slots; empty means WAREHOUSE_URL. "
        "'memory' keeps them in-process (single-process use only).",
    )

    # Each vendor sets its documented default (requests, per seconds).
    default_rate_limit: ClassVar[tuple[int, float]] = (100, 60.0)

    def retry_settings(self, connection: Connection) -> RetrySettings:
        overrides: dict[str, Any] = connection.config.get("retry") or {}
        return RetrySettings(
            max_retries=int(overrides.get("max_retries", self.max_retries)),
            backoff_base_s=float(overrides.get("backoff_base_s", self.backoff_base_s)),
            max_backoff_s=float(overrides.get("max_backoff_s", self.max_backoff_s)),
            timeout_s=float(overrides.get("timeout_s", self.timeout_s)),
        )

    def limiter(
        self,
        vendor: str,
        identity: str,
        connection: Connection,
        *,
        scope: str = "",
        config_key: str = "rate_limit",
        default: tuple[int, float] | None = None,
    ) -> CredentialLimiter:
        """The limiter of one credential (and optional endpoint ``scope``), overridable per connection
        through ``config[config_key]``."""
        fallback = RateLimit(*(default or self.default_rate_limit))
        limit = RateLimit.parse(connection.config.get(config_key), fallback)
        if connection.config.get("rate_limit") is False:
            limit = None  # switching limiting off covers every scope of the credential
        url = self.rate_limit_store_url or warehouse_url()
        store = SlotStore(None if url == "memory" else get_engine(url))
        key = credential_key(vendor, identity) + (f":{scope}" if scope else "")
        return CredentialLimiter(store, key, limit)

    @staticmethod
    def base_url(connection: Connection, default: str) -> str:
        return str(connection.config.get("base_url") or default)
