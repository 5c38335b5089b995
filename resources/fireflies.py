"""Fireflies.ai GraphQL client: Bearer API key, the ``transcripts`` query within a ``fromDate``/``toDate``
window, keyset-paged by meeting date.

Errors come as an ``errors`` array, in a 200 or not: ``too_many_requests`` is throttling (retried when
``extensions.metadata.retryAfter`` says), ``auth_failed`` a refused key; anything else fails the call
with Fireflies' code and message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from resources.graphql import GraphQLClient
from resources.http import MAX_RETRY_AFTER_S, ErrorRule, Outcome, VendorError
from resources.models import Page, VendorRecord
from resources.vendor import VendorResource

PAGE_SIZE = 50  # the most Fireflies returns per transcripts query
THROTTLED_CODE = "too_many_requests"
AUTH_FAILED_CODE = "auth_failed"
NOT_FOUND_CODE = "object_not_found"
# retryAfter's unit is undocumented: values this large are read as an epoch-ms instant, smaller ones
# as a delay in milliseconds.
EPOCH_MS_THRESHOLD = 10**11

TRANSCRIPT_FIELDS = """
    id title date dateString duration participants organizer_email host_email
    transcript_url meeting_link calendar_id privacy
    speakers { id name }
    meeting_attendees { displayName email name }
    summary { keywords action_items overview short_summary }
    user { user_id email name }
"""
TRANSCRIPTS_QUERY = (
    "query Transcripts($fromDate: DateTime, $toDate: DateTime, $limit: Int, $skip: Int) {"
    f" transcripts(fromDate: $fromDate, toDate: $toDate, limit: $limit, skip: $skip) {{ {TRANSCRIPT_FIELDS} }} }}"
)
TRANSCRIPT_QUERY = f"query Transcript($id: String!) {{ transcript(id: $id) {{ {TRANSCRIPT_FIELDS} }} }}"


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


class FirefliesClient(GraphQLClient):
    vendor = "Fireflies"
    graphql_path = "/graphql"
    error_rules = (ErrorRule(Outcome.THROTTLED, code=THROTTLED_CODE), ErrorRule(Outcome.AUTH, code=AUTH_FAILED_CODE))

    def authorize(self, headers: dict[str, str]) -> None:
        headers["Authorization"] = f"Bearer {self.credentials['api_key']}"

    def refresh_auth(self) -> None:
        raise VendorError(self.vendor, "the API key was rejected (auth_failed)", status=401, code=AUTH_FAILED_CODE)

    def account_identity(self) -> str | None:
        """The Fireflies user the API key belongs to."""
        return f"user {self.query('query { user { user_id } }', {})['user']['user_id']}"

    def retry_hint(self, error: dict[str, Any], body: Any, response: requests.Response) -> float | None:
        return retry_after_seconds(((error.get("extensions") or {}).get("metadata") or {}).get("retryAfter"))

    # --- reads ----------------------------------------------------------------------------------

    def transcripts(self, since: datetime | None, until: datetime) -> Iterator[Page[FirefliesTranscript]]:
        """Transcripts of meetings dated in [since, until] (all up to ``until`` when ``since`` is None),
        newest first as Fireflies returns them, 50 per request.

        Keyset paging on the meeting date: each request asks for meetings up to the oldest date read so far
        (``toDate`` one millisecond past it, so an inclusive and an exclusive bound both return it) and skips
        the transcripts already read at that date. ``skip`` alone would shift one past the reader whenever
        a transcript read earlier is deleted. Only a page that is all one date falls back to ``skip``."""
        edge, read_at_edge, skip = _epoch_ms(until), set[str](), 0
        while True:
            variables: dict[str, Any] = {"toDate": _fireflies_ms(edge + 1), "limit": PAGE_SIZE, "skip": skip}
            if since is not None:
                variables["fromDate"] = fireflies_time(since)
            records = [
                FirefliesTranscript.model_validate(r)
                for r in self.query(TRANSCRIPTS_QUERY, variables).get("transcripts") or []
            ]
            fresh = [r for r in records if not (_date_ms(r) == edge and r.id in read_at_edge)]
            yield Page(fresh)
            if len(records) < PAGE_SIZE:
                return
            oldest = min((d for d in map(_date_ms, records) if d is not None), default=edge)
            if oldest == edge:  # the whole page is one date (or none is readable): page on by offset
                skip += len(records)
            else:
                edge, read_at_edge, skip = oldest, set(), 0
            read_at_edge |= {r.id for r in records if _date_ms(r) == edge}

    def transcript(self, transcript_id: str) -> FirefliesTranscript | None:
        """One transcript; None when Fireflies no longer has it (``object_not_found``)."""
        try:
            record = self.query(TRANSCRIPT_QUERY, {"id": transcript_id}).get("transcript")
        except VendorError as exc:
            if exc.code == NOT_FOUND_CODE:
                return None
            raise
        return None if record is None else FirefliesTranscript.model_validate(record)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _fireflies_ms(epoch_ms: int) -> str:
    return fireflies_time(datetime.fromtimestamp(epoch_ms / 1000, UTC))


def _date_ms(record: FirefliesTranscript) -> int | None:
    """A transcript's ``date`` (epoch ms); None when it is malformed (the row model rejects that record)."""
    try:
        return int(float(getattr(record, "date", None)))
    except (TypeError, ValueError):
        return None


class FirefliesResource(VendorResource):
    """Fireflies client factory. Default limit: the Business/Enterprise plan's 60 requests/minute per
    API key (Free/Pro allow 50 a day: set ``config.rate_limit`` for those)."""

    default_rate_limit: ClassVar[tuple[int, float]] = (60, 60.0)

    client_class = FirefliesClient
    credential_sets = (("api_key",),)
    credentials_hint = "an api_key"
    quota_identity = (("api_key",),)
