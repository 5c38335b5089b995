"""The unified entity schemas: one validated row model per warehouse table.

Transforms build these from vendor records; validation failures become per-record errors.
Timestamps are normalised to UTC; ``source_updated_at`` is required because it drives the watermark.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator


def _utc_timestamp(value: Any) -> Any:
    """Vendors send ISO-8601 (with ``Z``, ``+0000`` or ``+00:00``) or epoch milliseconds; the result is UTC
    (a time without an offset is taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        value = datetime.fromisoformat(text)  # Python 3.11+ reads "Z" and Salesforce's "+0000" itself
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


# One Python validator per timestamp field; every other field is validated by pydantic's core alone.
UtcDatetime = Annotated[datetime, BeforeValidator(_utc_timestamp)]
OptionalUtc = Annotated[datetime | None, BeforeValidator(_utc_timestamp)]


class EntityRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: str
    source_updated_at: UtcDatetime

    @model_validator(mode="before")
    @classmethod
    def _blank_is_none(cls, data: Any) -> Any:
        """Vendors send "" for an empty field: it is None in every column (once per row, not per field)."""
        if isinstance(data, dict) and "" in data.values():
            return {key: None if value == "" else value for key, value in data.items()}
        return data

    def as_row(self) -> dict[str, Any]:
        """The validated columns (what ``model_dump()`` gives for these flat models, without its cost)."""
        return dict(self.__dict__)


class DealRow(EntityRow):
    name: str | None = None
    amount: Decimal | None = None
    stage: str | None = None
    pipeline: str | None = None
    close_date: OptionalUtc = None
    owner_id: str | None = None


class ContactRow(EntityRow):
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    company: str | None = None
    title: str | None = None


class AccountRow(EntityRow):
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    phone: str | None = None


class CallRow(EntityRow):
    title: str | None = None
    started_at: OptionalUtc = None
    duration_seconds: int | None = None
    direction: str | None = None
    url: str | None = None
    participants: list[Any] | None = None


class DocumentRow(EntityRow):
    title: str | None = None
    mime_type: str | None = None
    url: str | None = None
    owner_email: str | None = None
    size_bytes: int | None = None
    modified_at: OptionalUtc = None
    trashed: bool | None = None


class TaskRow(EntityRow):
    title: str | None = None
    status: str | None = None
    priority: str | None = None
    due_date: OptionalUtc = None
    board: str | None = None
    group_name: str | None = None


ROW_MODELS: dict[str, type[EntityRow]] = {
    "deals": DealRow,
    "contacts": ContactRow,
    "accounts": AccountRow,
    "calls": CallRow,
    "documents": DocumentRow,
    "tasks": TaskRow,
}
