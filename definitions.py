"""The code location: every asset, check, job, sensor, schedule and resource."""

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from resources.notifier import NotifierResource
from resources.warehouse import WarehouseResource
from schedules.daily import build_daily_schedule
from sensors.reaper import stale_run_reaper
from sensors.registry import workspace_registry_sensor
from sensors.run_status import run_status_sensors
from sensors.webhook_delivery import webhook_delivery_sensor
from sync_assets import CONNECTORS
from sync_assets.factory import build_connector_assets

connector_assets = [build_connector_assets(c) for c in CONNECTORS]

sync_workspace_job = define_asset_job(
    "sync_workspace",
    selection=AssetSelection.all(),
    description="Sync every connector of one workspace (a run selects its active connections).",
)

connector_jobs = [
    define_asset_job(
        f"sync_{c.name}",
        selection=AssetSelection.groups(c.name),
        description=f"Sync {c.title} for one workspace.",
        executor_def=in_process_executor,  # one step: skip the per-step process start
    )
    for c in CONNECTORS
]

defs = Definitions(
    assets=connector_assets,
    jobs=[sync_workspace_job, *connector_jobs],
    schedules=[build_daily_schedule(sync_workspace_job)],
    sensors=[workspace_registry_sensor, stale_run_reaper, *run_status_sensors, webhook_delivery_sensor],
    resources={
        "warehouse": WarehouseResource(),
        "notifier": NotifierResource(),
        **{c.resource_key: c.resource for c in CONNECTORS},
    },
)
