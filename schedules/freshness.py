"""Hourly: which workspaces have gone stale. A Dagster FreshnessPolicy looks at the latest materialization of
any partition, so one busy workspace would hide every idle one; freshness is a per-workspace check instead.

A sync records ``synced_recently`` passed for the partitions it writes. The ``stale_workspaces`` job lists
the active connections whose last completed sync (``connections.last_sync_at``) is older than
SYNC_MAX_SYNC_AGE_HOURS, records that list as its output's metadata, and records ``synced_recently`` failed
(WARN) for each stale workspace's partition of the connector's assets and of the tables they feed. The
next sync of that workspace turns them green again.
"""

from collections import defaultdict

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)

from resources.warehouse import WarehouseResource, utcnow
from sync_assets import CONNECTORS, CONNECTORS_BY_NAME
from sync_assets.health import StaleConnection, freshness_result, last_syncs, max_sync_age, stale_connections
from sync_assets.state import asset_key
from sync_assets.tables import table_asset_key, writers_by_table


def as_evaluation(result: AssetCheckResult, workspace_id: str) -> AssetCheckEvaluation:
    """A check result recorded outside the run that owns the check (a runless event), for one partition."""
    return AssetCheckEvaluation(
        asset_key=result.asset_key,
        check_name=result.check_name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        partition=workspace_id,
    )


def stale_evaluations(warehouse: WarehouseResource, stale: list[StaleConnection]) -> list[AssetCheckEvaluation]:
    """Failed ``synced_recently`` results for each stale workspace: on its stale connectors' assets, and on
    each table one of them feeds (listing every active source of that table)."""
    now, max_age = utcnow(), max_sync_age()
    by_workspace: dict[str, list[StaleConnection]] = defaultdict(list)
    for connection in stale:
        by_workspace[connection.workspace_id].append(connection)
    sources_of = {table: {key.path[0] for key in keys} for table, keys in writers_by_table(CONNECTORS).items()}
    evaluations = []
    for workspace_id, connections in by_workspace.items():
        for connection in connections:
            connector = CONNECTORS_BY_NAME.get(connection.connector)
            for entity in connector.entities if connector else ():
                result = freshness_result(
                    asset_key(connector, entity), {connection.connector: connection.last_sync_at}, now, max_age
                )
                evaluations.append(as_evaluation(result, workspace_id))
        synced = last_syncs(warehouse.engine, workspace_id)
        stale_names = {c.connector for c in connections}
        for table, sources in sources_of.items():
            if sources & stale_names:
                fed_by = {name: at for name, at in synced.items() if name in sources}
                result = freshness_result(table_asset_key(table), fed_by, now, max_age)
                evaluations.append(as_evaluation(result, workspace_id))
    return evaluations


@op(description="Lists the stale workspaces and records synced_recently failed for their partitions.")
def report_stale_workspaces(context: OpExecutionContext, warehouse: WarehouseResource) -> Output[list[str]]:
    max_age = max_sync_age()
    stale = stale_connections(warehouse.engine, utcnow(), max_age)
    workspaces = sorted({c.workspace_id for c in stale})
    for evaluation in stale_evaluations(warehouse, stale):
        context.instance.report_runless_asset_event(evaluation)
    if workspaces:
        context.log.warning(f"{len(workspaces)} stale workspace(s): {', '.join(workspaces)}")
    return Output(
        workspaces,
        metadata={
            "stale_workspace_count": len(workspaces),
            "stale_workspaces": MetadataValue.json(workspaces),
            "stale_connections": MetadataValue.json(
                [
                    {
                        "workspace_id": c.workspace_id,
                        "connector": c.connector,
                        "last_sync_at": c.last_sync_at.isoformat() if c.last_sync_at else None,
                    }
                    for c in stale
                ]
            ),
            "max_age_hours": MetadataValue.float(max_age.total_seconds() / 3600),
        },
    )


@job(description="Lists workspaces whose connections have not completed a sync lately (hourly).")
def stale_workspaces() -> None:
    report_stale_workspaces()


stale_workspaces_schedule = ScheduleDefinition(
    name="stale_workspaces_hourly",
    job=stale_workspaces,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Runs stale_workspaces at a quarter past every hour.",
)
