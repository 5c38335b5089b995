"""The shape of a connector: a short recipe the shared machinery turns into Dagster assets."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from resources.models import Page
from sync_assets.entities import EntityRow

# Given the connector's client and the lower bound (None = full sync), page the vendor's records.
Fetch = Callable[[Any, datetime | None], Iterator[Page[Any]]]
# One vendor record to one unified row; raising marks that record failed (captured, never fatal).
Transform = Callable[[Any], EntityRow]


@dataclass(frozen=True)
class Entity:
    name: str  # asset key suffix and the unified table it lands in
    label: str  # singular noun used in error strings: "Deal: <error> (<id>)"
    fetch: Fetch
    transform: Transform

    @property
    def table(self) -> str:
        return self.name


@dataclass(frozen=True)
class Connector:
    name: str  # asset key prefix, group name, ``source`` column and ``connections.connector_name``
    title: str
    entities: tuple[Entity, ...]
    # The vendor's client factory (a VendorResource), bound under ``name`` in the Definitions.
    resource: Any
    # How far before the watermark an incremental sync re-reads; vendors without a modified-time
    # filter need one to catch late edits.
    lookback: timedelta = timedelta(0)

    def lookback_for(self, config: Mapping[str, Any]) -> timedelta:
        """The connection's ``config.lookback_hours`` overrides the connector's lookback."""
        hours = config.get("lookback_hours")
        if hours is None:
            return self.lookback
        if isinstance(hours, bool) or not isinstance(hours, int | float) or hours < 0:
            raise ValueError(f"lookback_hours must be a non-negative number, not {hours!r}")
        return timedelta(hours=hours)

    @property
    def resource_key(self) -> str:
        return self.name

    @property
    def asset_names(self) -> list[str]:
        return [f"{self.name}/{e.name}" for e in self.entities]
