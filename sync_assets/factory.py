"""Turns a connector recipe into one partitioned, subsettable multi_asset.

No `from __future__ import annotations` here: Dagster inspects the `context` annotation at runtime.
"""

import gc
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    RetryRequested,
    multi_asset,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from resources.notifier import NotifierResource, job_id_of
from resources.warehouse import WarehouseResource
from sync_assets.entity_read import describe_error
from sync_assets.health import FAILED_RECORDS_CHECK, FRESHNESS_CHECK, RECONCILIATION_CHECK, THROTTLING_CHECK
from sync_assets.loop import ConnectorSync, ProgressSink
from sync_assets.partitions import workspace_partitions
from sync_assets.recipe import Connector, Entity
from sync_assets.runs import SyncConfig, full_refresh_requested, sync_op_name
from sync_assets.state import SKIPPED, asset_key, read_state, state_metadata
from sync_assets.tables import qualified_table_name, table_metadata, warehouse_kind

# Waits before each retry of a step that lost the warehouse: 75 s in all, so a Postgres restart or
# failover of up to a minute is survived; the retried step resumes from the committed watermarks.
WAREHOUSE_RETRY_WAITS_S = (5, 10, 20, 40)
# Kinds name Dagster's icons where it has one (its icon for Google Drive is "googledrive").
DAGSTER_KINDS = {"google_drive": "googledrive"}
NO_CONNECTION = "no active connection"
# What each check of a connector asset says; all are partitioned by workspace (sync_assets/health.py).
CHECK_DESCRIPTIONS = {
    FAILED_RECORDS_CHECK: "Warns when records failed to transform or load (see the sync_errors table); errors "
    "when more than the allowed share of those read did (connection config max_failed_share, else "
    "SYNC_MAX_FAILED_SHARE, default 5%).",
    RECONCILIATION_CHECK: "After a full sync, warns when the workspace's live rows from this source differ from "
    "the vendor's own total (less the records that failed); passes with 'no total' when the vendor gives none.",
    THROTTLING_CHECK: "Warns when the vendor throttled more than SYNC_MAX_THROTTLE_RATIO (default 10%) of the calls.",
    FRESHNESS_CHECK: "Passes when a sync completes; the hourly stale_workspaces job fails it for workspaces whose "
    "connection has not completed a sync within SYNC_MAX_SYNC_AGE_HOURS (default 26).",
}


class WarehouseError(RuntimeError):
    """A warehouse failure as the step reports it to Dagster: described, never the driver's text."""


def connector_specs(connector: Connector) -> list[AssetSpec]:
    return [
        AssetSpec(
            asset_key(connector, entity),
            group_name=connector.name,
            kinds={DAGSTER_KINDS.get(connector.name, connector.name), warehouse_kind()},
            description=f"{connector.title} {entity.name}, upserted into the `{entity.name}` table.",
            metadata=table_metadata(entity.name),
        )
        for entity in connector.entities
    ]


def progress_sink(context: AssetExecutionContext, notifier: NotifierResource) -> ProgressSink | None:
    """Webhook progress is best effort: trouble reading its configuration never stops a sync."""
    try:
        return notifier.progress_sink(context.partition_key, job_id_of(context.run.run_id, context.run.tags))
    except Exception as exc:
        context.log.warning(f"webhook progress disabled for this step: {describe_error(exc)}")
        return None


def skipped_outputs(context: AssetExecutionContext, connector: Connector, selected: list[Entity]) -> Iterator[Any]:
    """A workspace without this connector still materializes each selected asset, marked skipped: a
    step without its outputs would fail a backfill over many workspaces (it ends COMPLETED_FAILED). The
    stored state is carried over, so a connection enabled again resumes from its watermark."""
    for entity in selected:
        key = asset_key(connector, entity)
        stored = read_state(context.instance, key, context.partition_key)
        metadata = {
            SKIPPED: NO_CONNECTION,
            "dagster/table_name": qualified_table_name(entity.name),
            **(state_metadata(stored) if stored else {}),
        }
        yield MaterializeResult(asset_key=key, metadata=metadata)


def warehouse_lost(context: AssetExecutionContext, exc: DBAPIError) -> Exception:
    """A retry after the next wait, or, once the waits are spent, the failure that names the outage."""
    attempt, cause = context.retry_number, type(exc.orig).__name__
    if attempt >= len(WAREHOUSE_RETRY_WAITS_S):
        waited = sum(WAREHOUSE_RETRY_WAITS_S)
        return WarehouseError(
            f"warehouse unreachable: connection lost ({cause}) on {attempt + 1} attempts over {waited}s of retries"
        )
    wait = WAREHOUSE_RETRY_WAITS_S[attempt]
    context.log.error(f"warehouse connection lost ({cause}); retrying the step in {wait}s")
    return RetryRequested(max_retries=len(WAREHOUSE_RETRY_WAITS_S), seconds_to_wait=wait)


def build_connector_assets(connector: Connector) -> AssetsDefinition:
    by_key = {asset_key(connector, e): e for e in connector.entities}

    @multi_asset(
        name=sync_op_name(connector.name),
        specs=connector_specs(connector),
        check_specs=[
            AssetCheckSpec(name, asset=key, description=description, partitions_def=workspace_partitions)
            for key in by_key
            for name, description in CHECK_DESCRIPTIONS.items()
        ],
        can_subset=True,
        partitions_def=workspace_partitions,
        required_resource_keys={connector.name, "warehouse", "notifier"},
        op_tags={"connector": connector.name},
        pool=connector.pool,
    )
    def _sync(context: AssetExecutionContext, config: SyncConfig) -> Iterator[Any]:
        warehouse: WarehouseResource = context.resources.warehouse
        workspace_id = context.partition_key
        selected = [e for k, e in by_key.items() if k in context.selected_asset_keys]
        try:
            if context.retry_number:
                warehouse.close_open_syncs(
                    context.run.run_id, "warehouse connection lost; the step was retried", connector.name
                )
            connection = warehouse.get_connection(workspace_id, connector.name)
            if connection is None:
                context.log.warning(
                    f"workspace {workspace_id} has no active {connector.name} connection; nothing to sync"
                )
                yield from skipped_outputs(context, connector, selected)
                return
            # What is alive at step start (Dagster, imports, definitions) outlives the step: moving it to the
            # permanent generation stops the collector rescanning it as pages churn (bench/salesforce_bulk.py:
            # about +30% records/s on the bulk path).
            gc.freeze()
            vendor = getattr(context.resources, connector.name)
            client = vendor.client_for(connection, log=context.log)
            progress = progress_sink(context, context.resources.notifier)
            full_refresh = full_refresh_requested(config, context.run.run_config, connector.name, context.run.tags)
            # A run's lookback_hours overrides the connection's (sync_assets/watermark.py Cursor.with_overrides).
            overrides = {} if config.lookback_hours is None else {"lookback_hours": config.lookback_hours}
            sync = ConnectorSync(
                context, connector, warehouse, client, progress, {**connection.config, **overrides}, full_refresh
            )
            yield from sync.run(selected)
        except (OperationalError, DBAPIError) as exc:
            # Raised "from None" both ways: Dagster stores an exception's causes in the event log, and a
            # driver's message quotes the statement and the rows it carried.
            if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not isinstance(exc, OperationalError):
                raise WarehouseError(describe_error(exc)) from None
            # The warehouse connection dropped: the step restarts from the committed watermarks.
            raise warehouse_lost(context, exc) from None

    return _sync
