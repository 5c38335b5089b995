"""Shapes shared by all vendor clients."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
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


class FullReadNeeded(Exception):
    """An incremental read cannot be trusted (the vendor no longer covers its window): read everything."""


@dataclass(frozen=True)
class Deletion:
    """A record the vendor reports gone without sending the record itself: deleted, or merged into
    ``merged_into``. ``at`` is when, if the vendor says."""

    source_id: str
    at: datetime | None = None
    merged_into: str | None = None


@dataclass
class Page(Generic[RecordT]):
    """One page of what a read found.

    ``records`` are vendor records, ``deletions`` records reported gone, ``present_ids`` ids known to
    exist without their records (an id-only listing). ``total`` is the vendor's total when it reports
    one; ``resume_token`` is where a change-log read resumes next time, set on its last page.
    ``enumerates_all`` on the last page says whether the read has now named every record that exists
    (None: a full read has, an incremental one has not): only then may records never named be swept."""

    records: list[RecordT] = field(default_factory=list)
    total: int | None = None
    resume_token: str | None = None
    deletions: list[Deletion] = field(default_factory=list)
    present_ids: list[str] = field(default_factory=list)
    enumerates_all: bool | None = None


PageStream = Iterator[Page[Any]]
