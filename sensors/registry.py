"""Keeps the ``workspace`` dynamic partitions in step with the ``workspaces`` table: active workspaces
are added, deleted or inactive ones removed.

Removing a partition keeps its history: materializations (and the watermarks they carry) stay in the event
log under the key, so a workspace that becomes active again resumes incrementally.
"""

from __future__ import annotations

from dagster import (
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from sqlalchemy import select

from resources import schema
from resources.warehouse import WarehouseResource
from sync_assets.partitions import WORKSPACE_KEY_PATTERN, workspace_partitions
from sync_assets.runs import IN_FLIGHT, PARTITION_TAG

# Dagster handles ~25k additions per tick; each addition or removal invalidates cached partition status,
# so each kind of change is batched into one request per tick.
MAX_ADDS_PER_TICK = 20_000
MAX_DELETES_PER_TICK = 20_000


@sensor(
    name="workspace_registry",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Adds a `workspace` partition for every active workspace in the warehouse and removes those "
    "of deleted or inactive workspaces.",
)
def workspace_registry_sensor(context: SensorEvaluationContext, warehouse: WarehouseResource):
    with warehouse.engine.connect() as conn:
        ids = conn.execute(select(schema.workspaces.c.id).where(schema.workspaces.c.status == "active")).scalars().all()
    valid = [i for i in ids if WORKSPACE_KEY_PATTERN.fullmatch(i)]
    for bad in sorted(set(ids) - set(valid)):
        context.log.warning(f"workspace id {bad!r} is not a valid partition key; skipped")
    known = set(context.instance.get_dynamic_partitions(workspace_partitions.name))
    missing = sorted(set(valid) - known)[:MAX_ADDS_PER_TICK]
    stale = known - set(valid)
    if stale:
        # A queued or running sync keeps its partition until it ends: its run resolves the key when it starts.
        busy = {run.tags.get(PARTITION_TAG) for run in context.instance.get_runs(RunsFilter(statuses=IN_FLIGHT))}
        for workspace_id in sorted(stale & busy):
            context.log.info(f"workspace {workspace_id} is no longer active; its partition goes once its sync ends")
        stale -= busy
    removed = sorted(stale)[:MAX_DELETES_PER_TICK]
    if not missing and not removed:
        return SkipReason(f"all {len(valid)} workspace(s) registered")
    requests = []
    if missing:
        context.log.info(f"registering {len(missing)} workspace partition(s)")
        requests.append(workspace_partitions.build_add_request(missing))
    if removed:
        context.log.info(f"removing {len(removed)} partition(s) of deleted or inactive workspaces")
        requests.append(workspace_partitions.build_delete_request(removed))
    return SensorResult(dynamic_partitions_requests=requests)
