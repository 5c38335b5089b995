"""monday.com: board items as tasks.

monday filters by last update only to the day (the ``__last_updated__`` rule), so an incremental sync
asks for items updated on or after the watermark's day (widened by 12 h for the account's time zone).
Items come in creation order, not by last update: an item edited while its board is read then stays
where it was instead of jumping to the end and shifting an unread item behind the reader. Items from
earlier on the watermark's day are re-read and, unchanged, cost no writes. One watermark covers every
board; it never passes the read's start, so an item edited on a board already read is found next time.

Deletions: items_page returns active items only, and monday has no feed of deleted items. So every sync
names every active item (an id-only listing, 500 a page, after the read), and the items the warehouse
holds live that it did not name are looked up with ``items(ids:, exclude_nonactive: false)``:
archived or deleted items come back with their state, purged ones not at all, and an item on an archived
or deleted board counts as deleted too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from resources.models import Deletion, Page
from resources.monday import MondayClient, MondayItem, MondayResource
from sync_assets.entities import TaskRow, utc_timestamp
from sync_assets.recipe import Connector, Entity, ending_with
from sync_assets.watermark import Cursor, FilterKind, ReadWindow

STATUS_COLUMN_IDS = ("status", "status_1", "task_status")
DUE_COLUMN_IDS = ("date4", "due_date", "date", "deadline")


def read_items(client: MondayClient, window: ReadWindow) -> Iterator[Page[MondayItem]]:
    """The items updated in the window (all of them in a full read), then every active item's id: the
    sweep looks up the live rows not named and the named ids the warehouse lacks (items_page pages a live
    order, so an item archived while it runs can shift another past it; the ids of the next sync find it)."""
    yield from client.items_updated_since(window.since)
    ids = (Page(present_ids=page) for board in client.boards() for page in client.active_item_ids(str(board["id"])))
    yield from ending_with(ids, enumerates_all=True)


def confirm_items(client: MondayClient, ids: list[str]) -> Iterator[Page[MondayItem]]:
    live_boards = {str(b["id"]) for b in client.boards()}
    found = {item.id: item for item in client.items_by_id(ids)}
    on_live_boards = [item for item in found.values() if str((item.board or {}).get("id")) in live_boards]
    gone = [
        Deletion(i, at=None if i not in found else _instant(found[i].updated_at))
        for i in ids
        if i not in found or str((found[i].board or {}).get("id")) not in live_boards
    ]
    yield Page(on_live_boards, deletions=gone)


def _instant(value: str | None) -> datetime | None:
    try:
        return utc_timestamp(value)
    except ValueError:
        return None


def _column(item: MondayItem, ids: tuple[str, ...], column_type: str) -> dict[str, Any] | None:
    """The column with one of the conventional ids, else the first of that type."""
    of_type = [c for c in item.column_values if c.get("type") == column_type]
    by_id = {c.get("id"): c for c in of_type}
    return next((by_id[i] for i in ids if i in by_id), of_type[0] if of_type else None)


def _due_date(column: dict[str, Any] | None) -> str | None:
    """A date column's value is JSON: {"date": "YYYY-MM-DD", "time": "HH:MM:SS" (UTC, optional)}."""
    if not column or not column.get("value"):
        return None
    value = json.loads(column["value"])
    if not value.get("date"):
        return None
    return f"{value['date']}T{value.get('time') or '00:00:00'}Z"


def task(item: MondayItem) -> TaskRow:
    columns = {c.get("id"): c for c in item.column_values}
    status = _column(item, STATUS_COLUMN_IDS, "status")
    deleted = item.state in ("archived", "deleted")
    return TaskRow(
        source_id=item.id,
        source_updated_at=item.updated_at,
        is_deleted=deleted,
        deleted_at=item.updated_at if deleted else None,
        title=item.name,
        status=status.get("text") if status else None,
        priority=(columns.get("priority") or {}).get("text"),
        due_date=_due_date(_column(item, DUE_COLUMN_IDS, "date")),
        board=(item.board or {}).get("name"),
        group_name=(item.group or {}).get("title"),
    )


CONNECTOR = Connector(
    name="monday",
    title="Monday",
    resource=MondayResource(),
    entities=(
        Entity(
            name="tasks",
            label="Task",
            read=read_items,
            transform=task,
            confirm=confirm_items,
            from_payload=MondayItem.model_validate,
            cursor=Cursor(
                field="updated_at",
                filter=FilterKind.DAY,
                lag_reason="none: the day filter already re-reads the watermark's whole day",
            ),
        ),
    ),
)
