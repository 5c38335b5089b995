"""The code location loads, and the names that carry watermark history never change silently."""

from __future__ import annotations

from dagster import DagsterInstance, Definitions, SensorResult, build_sensor_context
from sqlalchemy import insert

import definitions
from resources import schema
from sensors.registry import workspace_registry_sensor
from sync_assets.partitions import WORKSPACE_PARTITIONS_NAME, InvalidWorkspaceId, validate_workspace_id

# Renaming any of these is a silent full re-sync of every workspace: change them only on purpose.
EXPECTED_ASSET_KEYS = {
    "google_drive/documents",
    "hubspot/accounts",
    "hubspot/contacts",
    "hubspot/deals",
    "hubspot/tasks",
    "monday/tasks",
    "salesforce/accounts",
    "salesforce/contacts",
    "salesforce/deals",
    "salesforce/tasks",
}


def test_definitions_load():
    Definitions.validate_loadable(definitions.defs)


def test_asset_keys_and_partitions_name_snapshot():
    repo = definitions.defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert keys >= EXPECTED_ASSET_KEYS
    assert WORKSPACE_PARTITIONS_NAME == "workspace"
    for assets_def in definitions.connector_assets:
        assert assets_def.partitions_def.name == "workspace"
        assert assets_def.can_subset


def test_every_asset_has_its_failed_records_check_and_group():
    repo = definitions.defs.get_repository_def()
    for key in repo.asset_graph.get_all_asset_keys():
        node = repo.asset_graph.get(key)
        assert node.group_name == key.path[0]
        assert any(c.name == "no_failed_records" for c in node.check_keys), key


def test_jobs_schedule_and_sensors_are_registered_and_running_by_default():
    repo = definitions.defs.get_repository_def()
    assert {"sync_workspace", "sync_hubspot", "sync_salesforce"} <= {j.name for j in repo.get_all_jobs()}
    schedule = repo.get_schedule_def("daily_sync")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")
    assert schedule.default_status.value == "RUNNING"
    for sensor in repo.sensor_defs:
        assert sensor.default_status.value == "RUNNING", sensor.name


def test_workspace_ids_are_validated():
    assert validate_workspace_id("acme-eu_1") == "acme-eu_1"
    for bad in ("", "Acme", "a/b", "a...b", "-lead", "a" * 64, "a b", "a,b", "a|b"):
        try:
            validate_workspace_id(bad)
        except InvalidWorkspaceId:
            continue
        raise AssertionError(f"{bad!r} was accepted")


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
