"""Fireflies.ai: meeting transcripts, into the ``calls`` table.

Transcripts carry no modified time; the API filters by meeting date (``fromDate`` / ``toDate``). The
watermark is the greatest committed meeting date, and an incremental sync asks for meetings from
``watermark - lookback`` up to now. The lookback (default 1 day, ``config.lookback_hours`` per
connection) catches transcripts that finish processing hours after the meeting and recent edits;
re-read transcripts that did not change cost no writes.

Deletions: Fireflies has no deletion feed. A full read, forced or every 7 days, names every transcript;
those the warehouse holds that it did not name are looked up one by one (``transcript(id:)``), and the
ones Fireflies no longer has are marked deleted.
Fireflies reports ``date`` in epoch milliseconds and ``duration`` in minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from resources.fireflies import FirefliesClient, FirefliesResource, FirefliesTranscript
from resources.models import Deletion, Page
from sync_assets.entities import CallRow
from sync_assets.recipe import Connector, Entity
from sync_assets.watermark import Cursor, FilterKind, ReadWindow


def read_transcripts(client: FirefliesClient, window: ReadWindow) -> Iterator[Page[FirefliesTranscript]]:
    return client.transcripts(window.since, datetime.now(UTC))


def confirm_transcripts(client: FirefliesClient, ids: list[str]) -> Iterator[Page[FirefliesTranscript]]:
    found = {i: client.transcript(i) for i in ids}
    yield Page(
        [t for t in found.values() if t is not None], deletions=[Deletion(i) for i, t in found.items() if t is None]
    )


def participants(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every participant email, named where the meeting's attendee list knows the name."""
    names = {a.get("email"): a.get("displayName") or a.get("name") for a in record.get("meeting_attendees") or []}
    return [{"name": names.get(email), "email": email} for email in record.get("participants") or []]


def minutes_to_seconds(minutes: Any) -> int | None:
    return None if minutes is None else round(float(minutes) * 60)


def transcript(record: FirefliesTranscript) -> CallRow:
    raw = record.model_dump()
    return CallRow(
        source_id=record.id,
        source_updated_at=raw.get("date"),
        started_at=raw.get("date"),
        title=raw.get("title"),
        duration_seconds=minutes_to_seconds(raw.get("duration")),
        url=raw.get("transcript_url"),
        participants=participants(raw),
    )


CONNECTOR = Connector(
    name="fireflies",
    title="Fireflies",
    resource=FirefliesResource(),
    entities=(
        Entity(
            name="calls",
            label="Call",
            read=read_transcripts,
            transform=transcript,
            confirm=confirm_transcripts,
            from_payload=FirefliesTranscript.model_validate,
            cursor=Cursor(
                field="date",
                filter=FilterKind.WINDOW,
                lookback=timedelta(days=1),
                lag_reason="none: transcripts arrive hours late with the meeting's date, which the lookback re-reads",
                full_refresh_every=timedelta(days=7),
            ),
        ),
    ),
)
