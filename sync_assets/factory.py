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
    RetryRequested,
    multi_asset,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from resources.notifier import NotifierResource, job_id_of
from resources.warehouse import WarehouseResource
from sync_assets.loop import FAILED_RECORDS_CHECK, ConnectorSync, ProgressSink, asset_key, describe_error
from sync_assets.partitions import workspace_partitions
from sync_assets.recipe import Connector

WAREHOUSE_RETRIES = 2
WAREHOUSE_RETRY_WAIT_S = 5


def connector_specs(connector: Connector) -> list[AssetSpec]:
    return [
        AssetSpec(
            asset_key(connector, entity),
            group_name=connector.name,
            kinds={connector.name, "postgres"},
            description=f"{connector.title} {entity.name}, upserted into the `{entity.table}` table.",
            metadata={"table": entity.table},
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


def build_connector_assets(connector: Connector) -> AssetsDefinition:
    by_key = {asset_key(connector, e): e for e in connector.entities}

    @multi_asset(
        name=f"{connector.name}_sync",
        specs=connector_specs(connector),
        check_specs=[
            AssetCheckSpec(
                FAILED_RECORDS_CHECK,
                asset=key,
                description="Warns when records failed to transform or load (see the sync_errors table).",
            )
            for key in by_key
        ],
        can_subset=True,
        partitions_def=workspace_partitions,
        required_resource_keys={connector.resource_key, "warehouse", "notifier"},
        op_tags={"connector": connector.name},
    )
    def _sync(context: AssetExecutionContext) -> Iterator[Any]:
        warehouse: WarehouseResource = context.resources.warehouse
        workspace_id = context.partition_key
        selected = [e for k, e in by_key.items() if k in context.selected_asset_keys]
        try:
            connection = warehouse.get_connection(workspace_id, connector.name)
            if connection is None:
                context.log.warning(
                    f"workspace {workspace_id} has no active {connector.name} connection; nothing to sync"
                )
                return
            # What is alive at step start (Dagster, imports, definitions) outlives the step: moving it to the
            # permanent generation stops the collector rescanning it as pages churn (bench/salesforce_bulk.py:
            # about +30% records/s on the bulk path).
            gc.freeze()
            vendor = getattr(context.resources, connector.resource_key)
            client = vendor.client_for(connection, log=context.log)
            progress = progress_sink(context, context.resources.notifier)
            lookback = connector.lookback_for(connection.config)
            yield from ConnectorSync(context, connector, warehouse, client, progress, lookback=lookback).run(selected)
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not isinstance(exc, OperationalError):
                raise
            # The warehouse connection dropped: the step restarts from the committed watermarks.
            context.log.error(f"warehouse connection lost ({type(exc.orig).__name__}); retrying the step")
            raise RetryRequested(max_retries=WAREHOUSE_RETRIES, seconds_to_wait=WAREHOUSE_RETRY_WAIT_S) from exc

    return _sync
