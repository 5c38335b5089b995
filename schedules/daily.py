"""The daily sync at 02:00 UTC: one run per workspace with active connections, selecting only those
connections' assets, skipping workspaces that already have a sync queued or running."""

from __future__ import annotations

import uuid
from collections import defaultdict

from dagster import (
    AssetKey,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from sqlalchemy import select

from resources import schema
from resources.warehouse import WarehouseResource
from sync_assets import CONNECTORS_BY_NAME
from sync_assets.partitions import workspace_partitions
from sync_assets.runs import (
    IN_FLIGHT,
    PARTITION_TAG,
    PRIORITY_TAG,
    SCHEDULED_PRIORITY,
    SYNC_ID_TAG,
    SYNC_TYPE_TAG,
    sync_asset_names,
    sync_run_config,
)


def active_connections(warehouse: WarehouseResource) -> dict[str, list[str]]:
    ws, c = schema.workspaces, schema.connections
    query = (
        select(ws.c.id, c.c.connector_name)
        .join(c, c.c.workspace_id == ws.c.id)
        .where(ws.c.status == "active", c.c.status == "active")
        .order_by(ws.c.id, c.c.connector_name)
    )
    by_workspace: dict[str, list[str]] = defaultdict(list)
    with warehouse.engine.connect() as conn:
        for workspace_id, connector in conn.execute(query):
            if connector in CONNECTORS_BY_NAME:
                by_workspace[workspace_id].append(connector)
    return dict(by_workspace)


def accepted_not_launched(warehouse: WarehouseResource) -> set[str]:
    """Workspaces with a sync the API accepted whose run its launcher has not created yet."""
    launches = schema.sync_launches
    with warehouse.engine.connect() as conn:
        pending = select(launches.c.workspace_id).where(launches.c.status == schema.LAUNCH_PENDING)
        return set(conn.execute(pending).scalars())


def asset_selection(connectors: list[str]) -> list[AssetKey]:
    return [AssetKey(name.split("/")) for name in sync_asset_names(connectors)]


def build_daily_schedule(job):
    @schedule(
        name="daily_sync",
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        job=job,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Queues one sync per workspace with active connections at 02:00 UTC.",
    )
    def daily_sync(context: ScheduleEvaluationContext, warehouse: WarehouseResource):
        workspaces = active_connections(warehouse)
        if not workspaces:
            context.log.info("No workspaces")
            return SkipReason("No workspaces")
        context.log.info(f"Queueing daily sync jobs for {len(workspaces)} workspace(s)")
        busy = {run.tags.get(PARTITION_TAG) for run in context.instance.get_runs(RunsFilter(statuses=IN_FLIGHT))}
        busy |= accepted_not_launched(warehouse)
        registered = set(context.instance.get_dynamic_partitions(workspace_partitions.name))
        when = context.scheduled_execution_time
        day = when.strftime("%Y-%m-%d") if when else f"manual-{uuid.uuid4().hex[:8]}"
        requests = []
        for workspace_id, connectors in workspaces.items():
            if workspace_id in busy:
                context.log.info(f"Skipping workspace {workspace_id}: a sync is already queued or running")
                continue
            if workspace_id not in registered:
                # An unknown partition key would fail the whole tick; the registry sensor adds it soon.
                context.log.info(f"Skipping workspace {workspace_id}: not registered as a partition yet")
                continue
            # The partition goes in as its tag (as GraphQL launches do) rather than `partition_key`:
            # Dagster would otherwise re-validate every key against the partition store, one query per
            # request, and this tick must stay fast at 10,000 workspaces. Keys were checked just above.
            requests.append(
                RunRequest(
                    run_key=f"daily:{workspace_id}:{day}",
                    asset_selection=asset_selection(connectors),
                    # Explicit, so the run's config in the UI says what the steps did.
                    run_config=sync_run_config(connectors, full_refresh=False),
                    tags={
                        PARTITION_TAG: workspace_id,
                        SYNC_TYPE_TAG: "scheduled",
                        SYNC_ID_TAG: str(uuid.uuid4()),
                        PRIORITY_TAG: SCHEDULED_PRIORITY,
                    },
                )
            )
        context.log.info(f"Daily sync jobs queued: {len(requests)}/{len(workspaces)} workspaces")
        return requests

    return daily_sync
