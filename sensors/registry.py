"""Keeps the ``workspace`` dynamic partitions in step with the ``workspaces`` table."""

from __future__ import annotations

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor
from sqlalchemy import select

from resources import schema
from resources.warehouse import WarehouseResource
from sync_assets.partitions import WORKSPACE_KEY_PATTERN, workspace_partitions

# Dagster handles ~25k additions per tick; each addition invalidates cached partition status, so
# additions are batched into one request per tick.
MAX_ADDS_PER_TICK = 20_000


@sensor(
    name="workspace_registry",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Adds a `workspace` partition for every active workspace in the warehouse.",
)
def workspace_registry_sensor(context: SensorEvaluationContext, warehouse: WarehouseResource):
    with warehouse.engine.connect() as conn:
        ids = conn.execute(select(schema.workspaces.c.id).where(schema.workspaces.c.status == "active")).scalars().all()
    valid = [i for i in ids if WORKSPACE_KEY_PATTERN.match(i)]
    for bad in sorted(set(ids) - set(valid)):
        context.log.warning(f"workspace id {bad!r} is not a valid partition key; skipped")
    known = set(context.instance.get_dynamic_partitions(workspace_partitions.name))
    missing = sorted(set(valid) - known)[:MAX_ADDS_PER_TICK]
    if not missing:
        return SkipReason(f"all {len(valid)} workspace(s) registered")
    context.log.info(f"registering {len(missing)} workspace partition(s)")
    return SensorResult(dynamic_partitions_requests=[workspace_partitions.build_add_request(missing)])
