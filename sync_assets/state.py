"""Where an entity's sync state lives: the metadata of the latest materialization of (asset, workspace).

Asset keys carry this history: renaming one silently starts its workspaces over with a full sync
(tests/test_definitions.py snapshots them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, MetadataValue

from sync_assets.recipe import Connector, Entity
from sync_assets.watermark import StoredState

WATERMARK = "watermark"
RESUME_TOKEN = "resume_token"
VENDOR_ACCOUNT = "vendor_account"
LAST_FULL_READ = "last_full_read_at"
READ_STARTED = "read_started_at"
SKIPPED = "skipped"  # why a step materialized an asset without syncing it (the workspace lacks the connector)


def asset_key(connector: Connector, entity: Entity) -> AssetKey:
    return AssetKey([connector.name, entity.name])


def read_state(instance: DagsterInstance, key: AssetKey, partition: str) -> StoredState | None:
    """The state the latest materialization of (asset, partition) recorded; None before the first."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    metadata = records[0].asset_materialization.metadata
    return StoredState(
        watermark=_instant(_value(metadata, WATERMARK)),
        resume_token=_value(metadata, RESUME_TOKEN),
        account=_value(metadata, VENDOR_ACCOUNT),
        last_full_at=_instant(_value(metadata, LAST_FULL_READ)),
        read_started_at=_instant(_value(metadata, READ_STARTED)),
    )


def state_metadata(state: StoredState) -> dict[str, Any]:
    """The metadata entries that carry ``state`` to the next sync."""
    entries: dict[str, Any] = {}
    if state.watermark is not None:
        entries[WATERMARK] = MetadataValue.timestamp(state.watermark)
    if state.resume_token is not None:
        entries[RESUME_TOKEN] = MetadataValue.text(state.resume_token)
    if state.account is not None:
        entries[VENDOR_ACCOUNT] = MetadataValue.text(state.account)
    if state.last_full_at is not None:
        entries[LAST_FULL_READ] = MetadataValue.timestamp(state.last_full_at)
    if state.read_started_at is not None:
        entries[READ_STARTED] = MetadataValue.timestamp(state.read_started_at)
    return entries


def watermark_text(metadata: dict[str, Any]) -> str | None:
    """The watermark of a materialization's metadata as ISO-8601 text (webhooks, summaries), or None."""
    moment = _instant(_value(metadata, WATERMARK))
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment else None


def _value(metadata: dict[str, Any], key: str) -> Any:
    return getattr(metadata.get(key), "value", None)


def _instant(value: Any) -> datetime | None:
    """A timestamp entry (epoch seconds), or the ISO text that materializations before it recorded."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))
