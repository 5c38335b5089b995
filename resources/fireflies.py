"""Fireflies.ai GraphQL client: Bearer API key, the ``transcripts`` query paged by ``skip``/``limit``
within a ``fromDate``/``toDate`` window.

GraphQL reports failures as an ``errors`` array, in a 200 response or not: ``too_many_requests`` is
throttling (retried, waiting until ``extensions.metadata.retryAfter`` when given), everything else is
a VendorError naming Fireflies' code and message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from resources.connections import Connection
from resources.http import MAX_RETRY_AFTER_S, AuthExpired, RetryableError, VendorClient, VendorError
from resources.models import Page, VendorRecord
from resources.vendor import VendorResource

DEFAULT_BASE_URL = "https://api.fireflies.ai"
PAGE_SIZE = 50  # the most Fireflies returns per transcripts query
THROTTLED_CODE = "too_many_requests"
AUTH_FAILED_CODE = "auth_failed"
# retryAfter's unit is undocumented: values this large are read as an epoch-ms instant, smaller ones
# as a delay in milliseconds.
EPOCH_MS_THRESHOLD = 10**11

TRANSCRIPTS_QUERY = """
query Transcripts($fromDate: DateTime, $toDate: DateTime, $limit: Int, $skip: Int) {
  transcripts(fromDate: $fromDate, toDate: $toDate, limit: $limit, skip: $skip) {
    id title date dateString duration participants organizer_email host_email
    transcript_url meeting_link calendar_id privacy
    speakers { id name }
    meeting_attendees { displayName email name }
    summary { keywords action_items overview short_summary }
    user { user_id email name }
  }
}
"""


class FirefliesTranscript(VendorRecord):
    """A transcript as the ``transcripts`` query returns it."""


def fireflies_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def retry_after_seconds(value: Any) -> float | None:
    """``extensions.metadata.retryAfter`` as a delay in seconds (epoch ms, ms delay or ISO instant)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 - time.time() if value >= EPOCH_MS_THRESHOLD else value / 1000
    else:
        try:
            seconds = datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() - time.time()
        except ValueError:
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class FirefliesClient(VendorClient):
    vendor = "Fireflies"

    def __init__(self, api_key: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._authorization = f"Bearer {api_key}"

    def authorize(self, headers: dict[str, str]) -> None:
        headers["Authorization"] = self._authorization

    def refresh_auth(self) -> None:
        raise VendorError(self.vendor, "the API key was rejected (auth_failed)", status=401, code=AUTH_FAILED_CODE)

    def classify_success(self, response: requests.Response) -> None:
        self._raise_graphql_errors(response)

    def classify(self, response: requests.Response) -> None:
        self._raise_graphql_errors(response)
        super().classify(response)

    def _raise_graphql_errors(self, response: requests.Response) -> None:
        errors = _graphql_errors(response)
        if not errors:
            return
        detail = self.error_detail(response)
        codes = [_code(e) for e in errors]
        if THROTTLED_CODE in codes:
            metadata = (errors[codes.index(THROTTLED_CODE)].get("extensions") or {}).get("metadata") or {}
            retry_after = retry_after_seconds(metadata.get("retryAfter"))
            if retry_after is None:
                retry_after = self._retry_after(response)
            raise RetryableError("throttled", 429, detail, retry_after)
        if AUTH_FAILED_CODE in codes:
            raise AuthExpired()
        if response.status_code >= 500:
            raise RetryableError("transient", response.status_code, detail, self._retry_after(response))
        raise VendorError(self.vendor, detail, status=response.status_code, code=codes[0])

    def error_detail(self, response: requests.Response) -> str:
        errors = _graphql_errors(response)
        where = f"{response.request.method} {self._path(response.url)}"
        if not errors:
            return f"HTTP {response.status_code} on {where}: {response.text[:300]}"
        parts = [f"{_code(e) or 'error'}: {e.get('message', '')}".strip() for e in errors]
        return f"HTTP {response.status_code} on {where}: {'; '.join(parts)}"

    # --- reads ----------------------------------------------------------------------------------

    def transcripts(self, since: datetime | None, until: datetime) -> Iterator[Page[FirefliesTranscript]]:
        """Transcripts of meetings dated in [since, until] (all up to ``until`` when ``since`` is None),
        newest first as Fireflies returns them, 50 per request."""
        variables: dict[str, Any] = {"toDate": fireflies_time(until), "limit": PAGE_SIZE, "skip": 0}
        if since is not None:
            variables["fromDate"] = fireflies_time(since)
        while True:
            body = self.request("POST", "/graphql", json={"query": TRANSCRIPTS_QUERY, "variables": variables}).json()
            records = ((body.get("data") or {}).get("transcripts")) or []
            yield Page([FirefliesTranscript.model_validate(r) for r in records])
            if len(records) < PAGE_SIZE:
                return
            variables["skip"] += len(records)


def _graphql_errors(response: requests.Response) -> list[dict[str, Any]]:
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _code(error: dict[str, Any]) -> str | None:
    return error.get("code") or (error.get("extensions") or {}).get("code")


class FirefliesResource(VendorResource):
    """Fireflies client factory. Default limit: the Business/Enterprise plan's 60 requests/minute per
    API key (Free/Pro allow 50 a day: set ``config.rate_limit`` for those)."""

    default_rate_limit: ClassVar[tuple[int, float]] = (60, 60.0)

    def client_for(self, connection: Connection, log: Any = None) -> FirefliesClient:
        api_key = connection.credentials.get("api_key")
        if not api_key:
            raise VendorError("Fireflies", "credentials need an api_key")
        return FirefliesClient(
            api_key=api_key,
            base_url=self.base_url(connection, DEFAULT_BASE_URL),
            limiter=self.limiter("fireflies", api_key, connection),
            retry=self.retry_settings(connection),
            log=log,
        )
