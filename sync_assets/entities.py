"""The unified entity schemas: one validated row model per warehouse table.

Transforms build these from vendor records; validation failures become per-record errors.
Timestamps are normalised to UTC; ``source_updated_at`` is required because it drives the watermark.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict


def _parse_timestamp(value: Any) -> Any:
    """Vendors send ISO-8601 (with ``Z``, ``+0000`` or ``+00:00``) or epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        return datetime.fromisoformat(text)  # Python 3.11+ reads "Z" and Salesforce's "+0000" itself
    return value


def _to_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


UtcDatetime = Annotated[datetime, BeforeValidator(_parse_timestamp), AfterValidator(_to_utc)]
OptionalUtc = Annotated[datetime | None, BeforeValidator(_parse_timestamp), AfterValidator(_to_utc)]
OptionalDecimal = Annotated[Decimal | None, BeforeValidator(_blank_to_none)]
OptionalInt = Annotated[int | None, BeforeValidator(_blank_to_none)]
OptionalStr = Annotated[str | None, BeforeValidator(_blank_to_none)]


class EntityRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: str
    source_updated_at: UtcDatetime


class DealRow(EntityRow):
    name: OptionalStr = None
    amount: OptionalDecimal = None
    stage: OptionalStr = None
    pipeline: OptionalStr = None
    close_date: OptionalUtc = None
    owner_id: OptionalStr = None


class ContactRow(EntityRow):
    email: OptionalStr = None
    first_name: OptionalStr = None
    last_name: OptionalStr = None
    phone: OptionalStr = None
    company: OptionalStr = None
    title: OptionalStr = None


class AccountRow(EntityRow):
    name: OptionalStr = None
    domain: OptionalStr = None
    industry: OptionalStr = None
    phone: OptionalStr = None


class CallRow(EntityRow):
    title: OptionalStr = None
    started_at: OptionalUtc = None
    duration_seconds: OptionalInt = None
    direction: OptionalStr = None
    url: OptionalStr = None
    participants: list[Any] | None = None


class DocumentRow(EntityRow):
    title: OptionalStr = None
    mime_type: OptionalStr = None
    url: OptionalStr = None
    owner_email: OptionalStr = None
    size_bytes: OptionalInt = None
    modified_at: OptionalUtc = None
    trashed: bool | None = None


class TaskRow(EntityRow):
    title: OptionalStr = None
    status: OptionalStr = None
    priority: OptionalStr = None
    due_date: OptionalUtc = None
    board: OptionalStr = None
    group_name: OptionalStr = None


ROW_MODELS: dict[str, type[EntityRow]] = {
    "deals": DealRow,
    "contacts": ContactRow,
    "accounts": AccountRow,
    "calls": CallRow,
    "documents": DocumentRow,
    "tasks": TaskRow,
}
