"""monday.com: board items as tasks.

monday filters by last update only to the day (the ``__last_updated__`` rule), so an incremental sync
asks for items updated on or after the watermark's day (widened by 12 h for the account's time zone),
ordered by last update; the sync loop then drops items older than the watermark and the boundary
items it already committed. The lookback stays 0: an item updated earlier on the watermark's day is
not re-counted, one updated later that day is picked up.

Known limit: the watermark is shared by all boards, so an item edited on an already-read board while
a later board still holds newer edits is caught only when it is edited again (or by a full refresh).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from resources.models import Page
from resources.monday import MondayClient, MondayItem, MondayResource
from sync_assets.entities import TaskRow
from sync_assets.recipe import Connector, Entity

STATUS_COLUMN_IDS = ("status", "status_1", "task_status")
DUE_COLUMN_IDS = ("date4", "due_date", "date", "deadline")


def items(client: MondayClient, since: datetime | None) -> Iterator[Page[MondayItem]]:
    return client.items_updated_since(since)


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
    return TaskRow(
        source_id=item.id,
        source_updated_at=item.updated_at,
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
    entities=(Entity("tasks", "Task", items, task),),
)
