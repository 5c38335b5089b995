"""What a connection's ``config`` may hold. It is tenant input: it can tune how its own sync runs, but it
names no host (endpoints are platform settings: resources/endpoints.py) and no limit it cannot honour."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resources.rate_limit import RateLimit
from resources.settings import rate_limit_max_wait_s

# Keys that once pointed a connection at a host; refused so that no one believes they still work.
ENDPOINT_KEYS = ("base_url", "token_url", "login_url", "instance_url", "api_url")
RATE_LIMIT_KEYS = ("rate_limit", "search_rate_limit")
# The share of a read's records that may fail before its failed-records check errors (sync_assets/health.py).
FAILED_SHARE_KEY = "max_failed_share"


class InvalidConnectionConfig(ValueError):
    """The message names the key and the rule, never the rejected value."""


def validate_connection_config(config: Mapping[str, Any]) -> dict[str, Any]:
    for key in ENDPOINT_KEYS:
        if key in config:
            raise InvalidConnectionConfig(
                f"config.{key}: vendor endpoints are platform settings; a connection cannot set them"
            )
    max_wait_s = rate_limit_max_wait_s()
    for key in RATE_LIMIT_KEYS:
        try:
            limit = RateLimit.parse(config.get(key), None)
        except (KeyError, TypeError, ValueError):
            raise InvalidConnectionConfig(
                f'config.{key}: must be {{"requests": N, "per_seconds": S}} with positive numbers, or false'
            ) from None
        if limit is not None and limit.interval_s > max_wait_s:
            raise InvalidConnectionConfig(
                f"config.{key}: one request per {limit.interval_s:g} s is slower than a call may wait for its "
                f"slot ({max_wait_s:g} s)"
            )
    share = config.get(FAILED_SHARE_KEY)
    if share is not None and (isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1):
        raise InvalidConnectionConfig(f"config.{FAILED_SHARE_KEY}: must be a number from 0 to 1")
    return dict(config)
