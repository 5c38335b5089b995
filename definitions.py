"""The code location: every asset, check, job, sensor, schedule and resource."""

import os

import yaml
from dagster import (
    AssetSelection,
    Config,
    Definitions,
    ExecutorDefinition,
    OpExecutionContext,
    Output,
    define_asset_job,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from resources.notifier import NotifierResource
from resources.settings import REPO_ROOT
from resources.warehouse import WarehouseResource
from schedules.daily import build_daily_schedule
from schedules.freshness import stale_workspaces, stale_workspaces_schedule
from sensors.reaper import stale_run_reaper
from sensors.registry import workspace_registry_sensor
from sensors.run_status import run_status_sensors
from sensors.webhook_delivery import webhook_delivery_sensor
from sync_assets import CONNECTORS, CONNECTORS_BY_NAME
from sync_assets.factory import build_connector_assets
from sync_assets.recipe import Connector
from sync_assets.replay import replay_dead_letters
from sync_assets.tables import WAREHOUSE_GROUP, build_warehouse_assets, tables_written_by

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
warehouse_assets = build_warehouse_assets(CONNECTORS)


def connector_job_selection(connector: Connector) -> AssetSelection:
    """One connector's assets and the tables it writes. Not the tables' other writers: a table asset whose
    other writers are outside the job runs after this connector alone."""
    return AssetSelection.groups(connector.name) | AssetSelection.assets(*tables_written_by(connector))


# What `sync_workspace` may select: the connector groups and, on purpose, the `warehouse` group (the tables
# they feed, recorded in the same run). Any other asset is left to its own job. A launch narrows this to the
# workspace's active connections and the tables they write (sync_assets/runs.py, sync_asset_names).
sync_workspace_selection = AssetSelection.groups(*(c.name for c in CONNECTORS), WAREHOUSE_GROUP)

sync_workspace_job = define_asset_job(
    "sync_workspace",
    selection=sync_workspace_selection,
    description="Sync every connector of one workspace (a run selects its active connections).",
    executor_def=workspace_executor(),
)

connector_jobs = [
    define_asset_job(
        f"sync_{c.name}",
        selection=connector_job_selection(c),
        description=f"Sync {c.title} for one workspace.",
        executor_def=in_process_executor,  # two steps (sync, then tables): skip the per-step process start
    )
    for c in CONNECTORS
]


class ReplayConfig(Config):
    workspace_id: str = Field(description="The workspace whose dead letters are replayed")
    connector: str | None = Field(default=None, description="Only this connector's (e.g. hubspot)")
    entity: str | None = Field(default=None, description="Only this entity's (e.g. contacts)")
    error_ids: list[int] | None = Field(default=None, description="Only these sync_errors ids")


@op(description="Replay a workspace's unresolved dead letters through the current transforms.")
def replay_dead_letters_op(
    context: OpExecutionContext, config: ReplayConfig, warehouse: WarehouseResource
) -> Output[dict[str, int]]:
    if config.connector is not None and config.connector not in CONNECTORS_BY_NAME:
        raise ValueError(f"unknown connector {config.connector!r}; one of: {', '.join(sorted(CONNECTORS_BY_NAME))}")
    counts = replay_dead_letters(
        warehouse.engine,
        config.workspace_id,
        connector=config.connector,
        entity=config.entity,
        error_ids=config.error_ids,
    )
    context.log.info(f"replayed the dead letters of {config.workspace_id}: {counts.as_dict()}")
    return Output(counts.as_dict(), metadata={"workspace_id": config.workspace_id, **counts.as_dict()})


@job(
    name="replay_dead_letters",
    description="Replay one workspace's dead letters (sync_errors) through the current transforms; "
    "counts of replayed, resolved, still failing and skipped (warehouse newer) are the op's output metadata.",
    executor_def=in_process_executor,
)
def replay_dead_letters_job() -> None:
    replay_dead_letters_op()


defs = Definitions(
    assets=[*connector_assets, warehouse_assets],
    jobs=[sync_workspace_job, *connector_jobs, replay_dead_letters_job, stale_workspaces],
    schedules=[build_daily_schedule(sync_workspace_job), stale_workspaces_schedule],
    sensors=[workspace_registry_sensor, stale_run_reaper, *run_status_sensors, webhook_delivery_sensor],
    resources={
        "warehouse": WarehouseResource(),
        "notifier": NotifierResource(),
        **{c.name: c.resource for c in CONNECTORS},
    },
)
