"""The code location: every asset, check, job, sensor, schedule and resource."""

import os

import yaml
from dagster import AssetSelection, Definitions, ExecutorDefinition, define_asset_job, in_process_executor

from resources.notifier import NotifierResource
from resources.settings import REPO_ROOT
from resources.warehouse import WarehouseResource
from schedules.daily import build_daily_schedule
from sensors.reaper import stale_run_reaper
from sensors.registry import workspace_registry_sensor
from sensors.run_status import run_status_sensors
from sensors.webhook_delivery import webhook_delivery_sensor
from sync_assets import CONNECTORS
from sync_assets.factory import build_connector_assets

CELERY_CONFIG_PATH = REPO_ROOT / "dagster.celery.yaml"


def workspace_executor() -> ExecutorDefinition | None:
    """The executor of `sync_workspace`: Dagster's multiprocess default, or Celery workers when
    SYNC_EXECUTOR=celery (settings in dagster.celery.yaml, shared with the workers)."""
    choice = os.environ.get("SYNC_EXECUTOR", "multiprocess")
    if choice == "multiprocess":
        return None
    if choice != "celery":
        raise ValueError(f"SYNC_EXECUTOR must be 'multiprocess' or 'celery', not {choice!r}")
    from dagster_celery import celery_executor  # the optional `celery` extra

    config = yaml.safe_load(CELERY_CONFIG_PATH.read_text())["execution"]["config"]
    return celery_executor.configured(config, name="sync_celery_executor")


connector_assets = [build_connector_assets(c) for c in CONNECTORS]

sync_workspace_job = define_asset_job(
    "sync_workspace",
    selection=AssetSelection.all(),
    description="Sync every connector of one workspace (a run selects its active connections).",
    executor_def=workspace_executor(),
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
