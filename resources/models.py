"""Shapes shared by all vendor clients."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict


class SourceRecord(Protocol):
    """What the sync loop needs of any vendor record."""

    @property
    def source_id(self) -> str: ...

    @property
    def payload(self) -> dict[str, Any]: ...


class VendorRecord(BaseModel):
    """A vendor record as its client returns it, keyed by ``id``: typed where a connector reads it,
    and whole in ``payload`` (stored as ``properties`` and in the dead-letter table)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str

    @property
    def source_id(self) -> str:
        return self.id

    @property
    def payload(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


RecordT = TypeVar("RecordT")


@dataclass
class Page(Generic[RecordT]):
    """One page of vendor records, as fetched. ``total`` is the vendor's total when it reports one."""

    records: list[RecordT]
    total: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)


PageStream = Iterator[Page[Any]]
