"""The shape of a connector: a short recipe the shared machinery turns into Dagster assets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from resources.http import VendorClient
from resources.models import Page
from resources.vendor import VendorResource
from sync_assets.entities import EntityRow
from sync_assets.watermark import Cursor, ReadWindow

ClientT = TypeVar("ClientT", bound=VendorClient)
# Given the connector's client and the window to read, page the vendor's records.
Read = Callable[[ClientT, ReadWindow], Iterator[Page[Any]]]
# One vendor record to one unified row; raising marks that record failed (captured, never fatal).
Transform = Callable[[Any], EntityRow]
# A record's stored payload (a dead letter's) as the vendor record its transform takes: for a replay.
FromPayload = Callable[[dict[str, Any]], Any]
# Given the client and ids a complete read left in doubt, page what the vendor says of each: records still
# there (a read can miss one: a live order shifted under it, an index lagged) or deletions. Ids it does
# not mention are left alone.
Confirm = Callable[[ClientT, list[str]], Iterator[Page[Any]]]


def ending_with(pages: Iterator[Page[Any]], **last: Any) -> Iterator[Page[Any]]:
    """``pages`` with ``last`` set on the final one (a resume token, whether the read named every record)."""
    held: Page[Any] | None = None
    for page in pages:
        if held is not None:
            yield held
        held = page
    yield replace(held if held is not None else Page(), **last)


@dataclass(frozen=True, kw_only=True)
class Entity(Generic[ClientT]):
    name: str  # asset key suffix and the unified table it lands in
    label: str  # singular noun used in error strings: "Deal: <error> (<id>)"
    read: Read[ClientT]
    transform: Transform
    cursor: Cursor
    confirm: Confirm[ClientT]
    from_payload: FromPayload


@dataclass(frozen=True, kw_only=True)
class Connector(Generic[ClientT]):
    name: str  # asset key prefix, group name, resource key, ``source`` column and ``connections.connector_name``
    title: str
    entities: tuple[Entity[ClientT], ...]
    # The vendor's client factory, bound under ``name`` in the Definitions; its clients are ClientT.
    resource: VendorResource
    # The Dagster concurrency pool of its sync step: "warehouse" (the writers' connections), or the vendor's
    # own pool where its rate limit is shared by every workspace (docs/dagster.md, "Pools").
    pool: str = "warehouse"

    @property
    def asset_names(self) -> list[str]:
        return [f"{self.name}/{e.name}" for e in self.entities]
