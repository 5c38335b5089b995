"""Shapes shared by all vendor clients."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar


class SourceRecord(Protocol):
    """What the sync loop needs of any vendor record."""

    @property
    def source_id(self) -> str: ...

    @property
    def payload(self) -> dict[str, Any]: ...


RecordT = TypeVar("RecordT")


@dataclass
class Page(Generic[RecordT]):
    """One page of vendor records, as fetched. ``total`` is the vendor's total when it reports one."""

    records: list[RecordT]
    total: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)


PageStream = Iterator[Page[Any]]
