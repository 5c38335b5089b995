"""Gong: calls, into the ``calls`` table.

Gong calls carry no modified time and the API filters only by call time (``fromDateTime`` /
``toDateTime``: the scheduled time of web conferences, the actual start otherwise). So the watermark
is the greatest committed call **start**, and an incremental sync asks for calls from
``watermark - lookback`` up to now. The lookback (default 1 day, ``config.lookback_hours`` per
connection) re-reads recent calls to catch ones Gong finished processing late and recent edits;
edits to calls older than the lookback are only picked up by a full refresh. The upsert absorbs the
overlap. ``POST /v2/calls/extensive`` is the source, so participants (Gong's parties) are typed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from resources.gong import GongCall, GongClient, GongResource
from resources.models import Page
from sync_assets.entities import CallRow
from sync_assets.recipe import Connector, Entity

# A full sync reads every call since this instant (Gong requires a window start).
FULL_SYNC_FROM = datetime(2010, 1, 1, tzinfo=UTC)


def calls_since(client: GongClient, since: datetime | None) -> Iterator[Page[GongCall]]:
    return client.extensive_calls(since or FULL_SYNC_FROM, datetime.now(UTC))


def participant(party: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": party.get("name"),
        "email": party.get("emailAddress"),
        "title": party.get("title"),
        "affiliation": party.get("affiliation"),
        "user_id": party.get("userId"),
    }


def call(record: GongCall) -> CallRow:
    meta = record.meta_data.model_dump()
    return CallRow(
        source_id=record.meta_data.id,
        source_updated_at=meta.get("started"),
        started_at=meta.get("started"),
        title=meta.get("title"),
        duration_seconds=meta.get("duration"),
        direction=meta.get("direction"),
        url=meta.get("url"),
        participants=[participant(p) for p in record.parties],
    )


CONNECTOR = Connector(
    name="gong",
    title="Gong",
    resource=GongResource(),
    entities=(Entity("calls", "Call", calls_since, call),),
    lookback=timedelta(days=1),
)
