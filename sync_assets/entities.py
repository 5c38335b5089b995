"""The unified entity schemas: one validated row model per warehouse table.

Transforms build these from vendor records; validation failures become per-record errors.
Timestamps are normalised to UTC; ``source_updated_at`` is required because it drives the watermark.

Each model holds its table's limits (``fits``, read off resources/schema.py), so a value the warehouse
cannot store fails its one record, never the batch it came in:

* NUL characters are removed from every string (a clean-up: Postgres cannot store them in text or JSON);
* text longer than its column is truncated where a prefix still says what the value is (names, titles,
  labels: ``TRUNCATED``; the whole value stays in ``properties``), and refused everywhere else, where a
  shortened value would be a wrong one (ids, emails, phones, domains, stages, statuses);
* a number outside its column's range is refused.

A refusal names the field and the rule (``phone: longer than 64 characters``), never the value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import Table

from resources import schema
from resources.limits import NUL, ColumnLimit, column_limit, fits_bound, is_json, without_nul


def utc_timestamp(value: Any) -> Any:
    """Vendors send ISO-8601 (with ``Z``, ``+0000`` or ``+00:00``) or epoch milliseconds; the result is UTC
    (a time without an offset is taken as UTC)."""
    if value is None:
        return None
    # The errors name the rule, never the value: a dead letter's message reaches sync_log and webhooks.
    try:
        if isinstance(value, str):
            text = value.strip()
            if text.isdigit():
                return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
            value = datetime.fromisoformat(text)  # Python 3.11+ reads "Z" and Salesforce's "+0000" itself
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError("not an ISO-8601 timestamp or epoch milliseconds in range") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


# One Python validator per timestamp field; every other field is validated by pydantic's core alone.
UtcDatetime = Annotated[datetime, BeforeValidator(utc_timestamp)]
OptionalUtc = Annotated[datetime | None, BeforeValidator(utc_timestamp)]


# Text columns whose value, cut to the column's length, is still the value's meaning (a name, a title):
# truncated. Every other limited text column refuses a longer value.
TRUNCATED = frozenset({"first_name", "last_name", "company", "title", "industry", "board", "group_name"})


class EntityRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Set by ``fits``: the length each truncated text field is cut to, and the JSON fields.
    truncated_at: ClassVar[dict[str, int]] = {}
    json_fields: ClassVar[frozenset[str]] = frozenset()

    source_id: str
    source_updated_at: UtcDatetime
    # The vendor's own version number where it has one (Drive); else derived from source_updated_at.
    source_version: int | None = None
    # Set when the vendor reports the record deleted, archived, trashed or merged away.
    is_deleted: bool = False
    deleted_at: OptionalUtc = None
    merged_into: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _clean(cls, data: Any) -> Any:
        """Vendors send "" for an empty field: it is None in every column. NULs are removed and long names
        truncated (the module's docstring says which). Once per row, not per field."""
        if not isinstance(data, dict):
            return data
        if "" in data.values():
            data = {key: None if value == "" else value for key, value in data.items()}
        cleaned: dict[str, Any] | None = None
        for key, value in data.items():
            if type(value) is str:
                fixed = value.replace(NUL, "") if NUL in value else value
                cut = cls.truncated_at.get(key)
                if cut is not None and len(fixed) > cut:
                    fixed = fixed[:cut]
                fixed = fixed or None  # a value of NULs only is empty
            elif key in cls.json_fields and value is not None:
                fixed = without_nul(value)
            else:
                continue
            if fixed is not value:
                cleaned = cleaned if cleaned is not None else dict(data)
                cleaned[key] = fixed
        return data if cleaned is None else cleaned

    def as_row(self) -> dict[str, Any]:
        """The validated columns (what ``model_dump()`` gives for these flat models, without its cost)."""
        row = dict(self.__dict__)
        if row["source_version"] is None:
            row["source_version"] = version_of(row["source_updated_at"])
        return row


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def version_of(moment: datetime) -> int:
    """A record's version when the vendor numbers none: microseconds since the epoch of its cursor value."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


RowT = TypeVar("RowT", bound=type[EntityRow])


def _within(limit: ColumnLimit) -> AfterValidator:
    def check(value: Any) -> Any:
        if value is not None and not fits_bound(value, limit):
            raise PydanticCustomError("warehouse_limit", limit.rule)
        return value

    return AfterValidator(check)


def fits(table: Table):
    """The row model, made to hold what ``table``'s columns hold (the module's docstring)."""

    def fit(model: RowT) -> RowT:
        fields: dict[str, Any] = {}
        truncated_at: dict[str, int] = {}
        for name, info in model.model_fields.items():
            column = table.c[name]
            limit = column_limit(column)
            if limit is None:
                continue
            if limit.max_length is not None and name in TRUNCATED:
                truncated_at[name] = limit.max_length
            elif limit.max_length is not None:
                fields[name] = (Annotated[info.annotation, Field(max_length=limit.max_length)], info)
            else:
                fields[name] = (Annotated[info.annotation, _within(limit)], info)
        fitted = create_model(model.__name__, __base__=model, __module__=model.__module__, **fields)
        fitted.__doc__ = model.__doc__
        fitted.truncated_at = truncated_at
        fitted.json_fields = frozenset(n for n in model.model_fields if is_json(table.c[n]))
        return fitted

    return fit


def refusal(error: dict[str, Any]) -> str:
    """A row model's validation error in the words of a dead letter: the rule, without the value."""
    if error["type"] == "string_too_long":
        return f"longer than {error['ctx']['max_length']} characters"
    return error["msg"].removeprefix("Value error, ")


@fits(schema.deals)
class DealRow(EntityRow):
    name: str | None = None
    amount: Decimal | None = None
    stage: str | None = None
    pipeline: str | None = None
    close_date: OptionalUtc = None
    owner_id: str | None = None


@fits(schema.contacts)
class ContactRow(EntityRow):
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    company: str | None = None
    title: str | None = None


@fits(schema.accounts)
class AccountRow(EntityRow):
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    phone: str | None = None


@fits(schema.calls)
class CallRow(EntityRow):
    title: str | None = None
    started_at: OptionalUtc = None
    duration_seconds: int | None = None
    direction: str | None = None
    url: str | None = None
    participants: list[Any] | None = None


@fits(schema.documents)
class DocumentRow(EntityRow):
    title: str | None = None
    mime_type: str | None = None
    url: str | None = None
    owner_email: str | None = None
    size_bytes: int | None = None
    modified_at: OptionalUtc = None
    trashed: bool | None = None


@fits(schema.tasks)
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
