"""Gong: calls, into the ``calls`` table.

Gong calls carry no modified time and the API filters only by call time (``fromDateTime`` /
``toDateTime``): the scheduled time of web conferences, the actual start otherwise. A call's metadata
does not say reliably which of the two Gong used, so the cursor is the earlier of ``scheduled`` and
``started``: never later than the value Gong filtered on. An incremental sync asks for calls from
``watermark - lookback`` up to now. The lookback (default 1 day, ``config.lookback_hours`` per
connection) re-reads recent calls to catch ones Gong finished processing late, calls imported with past
start times, and recent edits; edits to calls older than the lookback are only picked up by a full
refresh. Re-read calls that did not change cost no writes. ``POST /v2/calls/extensive`` is the source,
so participants (Gong's parties) are typed.

Deletions: Gong has no deletion feed. A full read, forced or every 7 days, names every call; calls the
warehouse holds that it did not name are looked up by id (``filter.callIds``), and those Gong no longer
has are marked deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from resources.gong import GongCall, GongClient, GongResource
from resources.http import VendorError
from resources.models import Deletion, Page
from sync_assets.entities import CallRow, utc_timestamp
from sync_assets.recipe import Connector, Entity
from sync_assets.watermark import Cursor, FilterKind, ReadWindow

# A full sync reads every call since this instant (Gong requires a window start).
FULL_SYNC_FROM = datetime(2010, 1, 1, tzinfo=UTC)


READS = 3  # reads of a window tried before giving up on one that no call left while it ran


def read_calls(client: GongClient, window: ReadWindow) -> Iterator[Page[GongCall]]:
    """Calls of the window, read again when calls left it while it was paged.

    Gong's cursor pages a live list: a call deleted while the read runs can shift the next one past the
    reader. Every page reports the window's ``totalRecords``; when it falls during the read, the window is
    read again (re-read calls cost nothing). A window that never settles fails the entity, so its
    watermark stays and nothing is swept."""
    since, until = window.since or FULL_SYNC_FROM, datetime.now(UTC)
    for attempt in range(1, READS + 1):
        first_total: int | None = None
        shrank = False
        for page in client.extensive_calls(since, until):
            first_total = page.total if first_total is None else first_total
            shrank = shrank or (page.total is not None and first_total is not None and page.total < first_total)
            yield page
        if not shrank:
            return
        client.log.warning(f"[Gong Client] calls left the window while it was read (try {attempt}); reading it again")
    raise VendorError("Gong", f"calls kept leaving the window while it was read ({READS} tries); the next sync retries")


def confirm_calls(client: GongClient, ids: list[str]) -> Iterator[Page[GongCall]]:
    found = [call for page in client.extensive_calls(FULL_SYNC_FROM, datetime.now(UTC), ids) for call in page.records]
    known = {call.source_id for call in found}
    yield Page(found, deletions=[Deletion(i) for i in ids if i not in known])


def filter_time(meta: dict[str, Any]) -> Any:
    """The earlier of the scheduled and actual start (Gong filters on one of them); a malformed time is
    passed on as it is, for the row model to reject with the field named."""
    try:
        times = [utc_timestamp(meta.get(key)) for key in ("scheduled", "started")]
    except ValueError:
        return meta.get("started")
    known = [t for t in times if t is not None]
    return min(known) if known else meta.get("started")


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
        source_updated_at=filter_time(meta),
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
    entities=(
        Entity(
            name="calls",
            label="Call",
            read=read_calls,
            transform=call,
            confirm=confirm_calls,
            from_payload=GongCall.model_validate,
            cursor=Cursor(
                field="min(scheduled, started)",
                filter=FilterKind.WINDOW,
                lookback=timedelta(days=1),
                lag_reason="none: calls arrive late with old times, which the lookback re-reads",
                full_refresh_every=timedelta(days=7),
            ),
        ),
    ),
)
