"""The code location loads, and the names that carry watermark history never change silently."""

from __future__ import annotations

from dagster import (
    AddDynamicPartitionsRequest,
    AssetSelection,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    DeleteDynamicPartitionsRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)
from sqlalchemy import insert

import definitions
from resources import schema
from sandbox.registry import VENDOR_CLASSES
from sensors import registry
from sensors.registry import workspace_registry_sensor
from sync_assets import CONNECTORS
from sync_assets.partitions import WORKSPACE_PARTITIONS_NAME, InvalidWorkspaceId, validate_workspace_id
from sync_assets.runs import PARTITION_TAG
from tests.support import REPO

# Every connector asset's key: renaming one is a silent full re-sync of every workspace (the sync state
# lives in its materializations), so a change here must be made on purpose, with the snapshot.
ASSET_KEYS_SNAPSHOT = REPO / "tests" / "snapshots" / "connector_asset_keys.txt"
# The warehouse tables' keys: renaming one loses its row-count and check history (no sync state).
WAREHOUSE_KEYS_SNAPSHOT = REPO / "tests" / "snapshots" / "warehouse_asset_keys.txt"
CONNECTOR_CHECKS = {"no_failed_records", "row_count_matches_vendor", "throttle_ratio_below_limit", "synced_recently"}


def test_definitions_load():
    Definitions.validate_loadable(definitions.defs)


def test_connector_asset_keys_and_partitions_name_match_the_snapshot():
    keys = sorted(key.to_user_string() for assets_def in definitions.connector_assets for key in assets_def.keys)
    assert keys == ASSET_KEYS_SNAPSHOT.read_text().split()
    assert WORKSPACE_PARTITIONS_NAME == "workspace"
    for assets_def in definitions.connector_assets:
        assert assets_def.partitions_def.name == "workspace"
        assert assets_def.can_subset


def test_warehouse_asset_keys_match_the_snapshot():
    assert sorted(key.to_user_string() for key in definitions.warehouse_assets.keys) == (
        WAREHOUSE_KEYS_SNAPSHOT.read_text().split()
    )


def test_every_asset_has_its_partitioned_checks_and_group():
    repo = definitions.defs.get_repository_def()
    for key in repo.asset_graph.get_all_asset_keys():
        node = repo.asset_graph.get(key)
        assert node.group_name == key.path[0]
        expected = {"synced_recently"} if key.path[0] == "warehouse" else CONNECTOR_CHECKS
        assert {c.name for c in node.check_keys} == expected, key
        assert {repo.asset_graph.get(c).partitions_def.name for c in node.check_keys} == {"workspace"}


def test_sync_jobs_select_their_connectors_and_the_tables_they_write():
    repo = definitions.defs.get_repository_def()

    def selected(job: str) -> set[str]:
        return {k.to_user_string() for k in repo.get_job(job).asset_layer.selected_asset_keys}

    tables = set(WAREHOUSE_KEYS_SNAPSHOT.read_text().split())
    assert selected("sync_workspace") == set(ASSET_KEYS_SNAPSHOT.read_text().split()) | tables
    assert selected("sync_gong") == {"gong/calls", "warehouse/calls", "warehouse/sync_errors"}
    # warehouse/deals is in sync_hubspot, but not salesforce/deals, its other writer.
    assert selected("sync_hubspot") == {f"hubspot/{e}" for e in ("deals", "contacts", "accounts", "tasks")} | {
        f"warehouse/{t}" for t in ("deals", "contacts", "accounts", "tasks", "sync_errors")
    }


def test_sync_steps_run_in_the_warehouse_pool_or_their_vendor_pool():
    repo = definitions.defs.get_repository_def()
    pools = {node.name: node.definition.pool for node in repo.get_job("sync_workspace").graph.node_dict.values()}
    assert pools == {
        **{f"{c.name}_sync": "warehouse" for c in CONNECTORS if c.name != "google_drive"},
        "google_drive_sync": "google_drive",
        "warehouse_tables": "warehouse",
    }


def test_jobs_schedule_and_sensors_are_registered_and_running_by_default():
    repo = definitions.defs.get_repository_def()
    assert {"sync_workspace", "sync_hubspot", "sync_salesforce"} <= {j.name for j in repo.get_all_jobs()}
    schedule = repo.get_schedule_def("daily_sync")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")
    assert schedule.default_status.value == "RUNNING"
    stale = repo.get_schedule_def("stale_workspaces_hourly")
    assert (stale.job_name, stale.cron_schedule, stale.default_status.value) == (
        "stale_workspaces",
        "15 * * * *",
        "RUNNING",
    )
    for sensor in repo.sensor_defs:
        assert sensor.default_status.value == "RUNNING", sensor.name


def test_every_connector_has_a_sandbox_vendor_of_the_same_name():
    """Connections name their connector; the sandbox serves each vendor under that same name."""
    assert {c.name for c in CONNECTORS} == {v.name for v in VENDOR_CLASSES}


def test_workspace_ids_are_validated():
    assert validate_workspace_id("acme-eu_1") == "acme-eu_1"
    for bad in ("", "Acme", "a/b", "a...b", "-lead", "a" * 64, "a b", "a,b", "a|b"):
        try:
            validate_workspace_id(bad)
        except InvalidWorkspaceId:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def registry_tick(instance: DagsterInstance) -> SensorResult | SkipReason:
    context = build_sensor_context(
        instance=instance,
        definitions=definitions.defs,
        resources={"warehouse": definitions.defs.resources["warehouse"]},
    )
    return workspace_registry_sensor(context)


def apply(instance: DagsterInstance, result: SensorResult) -> None:
    """What the daemon does with a tick's partition requests."""
    for request in result.dynamic_partitions_requests:
        if isinstance(request, AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def test_registry_sensor_removes_the_partitions_of_deleted_and_inactive_workspaces(
    warehouse, instance: DagsterInstance
):
    with warehouse.begin() as conn:
        conn.execute(
            insert(schema.workspaces),
            [
                {"id": "ws-a", "name": "A", "status": "active"},
                {"id": "ws-new", "name": "New", "status": "active"},
                {"id": "ws-off", "name": "Off", "status": "inactive"},
                {"id": "ws-deleted", "name": "Deleted", "status": "deleted"},
                {"id": "ws-busy", "name": "Busy", "status": "deleted"},
            ],
        )
    # ws-dropped has no row at all any more.
    instance.add_dynamic_partitions("workspace", ["ws-a", "ws-off", "ws-deleted", "ws-busy", "ws-dropped"])
    running = DagsterRun(job_name="sync_workspace", status=DagsterRunStatus.STARTED, tags={PARTITION_TAG: "ws-busy"})
    instance.add_run(running)

    result = registry_tick(instance)
    assert isinstance(result, SensorResult)
    added, deleted = result.dynamic_partitions_requests
    assert isinstance(added, AddDynamicPartitionsRequest) and list(added.partition_keys) == ["ws-new"]
    assert isinstance(deleted, DeleteDynamicPartitionsRequest)
    assert (deleted.partitions_def_name, list(deleted.partition_keys)) == (
        "workspace",
        ["ws-deleted", "ws-dropped", "ws-off"],
    )
    apply(instance, result)
    assert sorted(instance.get_dynamic_partitions("workspace")) == ["ws-a", "ws-busy", "ws-new"]

    instance.report_run_failed(running)
    result = registry_tick(instance)
    (deleted,) = result.dynamic_partitions_requests
    assert list(deleted.partition_keys) == ["ws-busy"]
    apply(instance, result)
    assert sorted(instance.get_dynamic_partitions("workspace")) == ["ws-a", "ws-new"]
    assert isinstance(registry_tick(instance), SkipReason)


def test_registry_sensor_removes_at_most_a_batch_per_tick(warehouse, instance: DagsterInstance, monkeypatch):
    monkeypatch.setattr(registry, "MAX_DELETES_PER_TICK", 2)
    instance.add_dynamic_partitions("workspace", ["ws-1", "ws-2", "ws-3"])
    (deleted,) = registry_tick(instance).dynamic_partitions_requests
    assert list(deleted.partition_keys) == ["ws-1", "ws-2"]


def test_registry_sensor_adds_new_active_workspaces_in_one_request(warehouse, instance: DagsterInstance):
    with warehouse.begin() as conn:
        conn.execute(
            insert(schema.workspaces),
            [
                {"id": "ws-a", "name": "A", "status": "active"},
                {"id": "ws-b", "name": "B", "status": "active"},
                {"id": "ws-gone", "name": "Gone", "status": "deleted"},
                {"id": "Bad Id", "name": "Bad", "status": "active"},
            ],
        )
    instance.add_dynamic_partitions("workspace", ["ws-a"])
    context = build_sensor_context(
        instance=instance,
        definitions=definitions.defs,
        resources={"warehouse": definitions.defs.resources["warehouse"]},
    )
    result = workspace_registry_sensor(context)
    assert isinstance(result, SensorResult)
    (request,) = result.dynamic_partitions_requests
    assert (request.partitions_def_name, list(request.partition_keys)) == ("workspace", ["ws-b"])


def test_sync_workspace_selects_the_connector_groups_and_the_warehouse_group_only():
    job = definitions.defs.resolve_job_def("sync_workspace")
    graph = definitions.defs.get_repository_def().asset_graph
    groups = {c.name for c in CONNECTORS} | {"warehouse"}
    assert {graph.get(key).group_name for key in job.asset_layer.selected_asset_keys} == groups
    assert definitions.sync_workspace_selection == AssetSelection.groups(*(c.name for c in CONNECTORS), "warehouse")


def test_kinds_name_dagster_icons():
    """Only kinds change: the asset keys stay (test_connector_asset_keys_and_partitions_name_match_the_snapshot)."""
    graph = definitions.defs.get_repository_def().asset_graph
    kinds = {key.path[0]: graph.get(key).kinds for key in graph.get_all_asset_keys()}
    # The warehouse's kind (postgres or sqlite) follows WAREHOUSE_URL as it was when the definitions loaded.
    (warehouse,) = kinds["warehouse"] - {"table"}
    assert warehouse in {"postgres", "sqlite"}
    assert kinds["google_drive"] == {"googledrive", warehouse}
    assert kinds["salesforce"] == {"salesforce", warehouse}
    assert kinds["hubspot"] == {"hubspot", warehouse}
