"""docs/graphql.md's recipes, each against the real dagster-webserver and daemon, through scripts/trigger.py:
one workspace, one connector, a full refresh, the Launchpad's config check, a backfill over chosen
workspaces, and reading a run's status and an asset's metadata."""

from __future__ import annotations

import time
from typing import Any

import pytest

from scripts import trigger
from tests.e2e.api_client import ADMIN, Api

SMALL = {"hubspot": {"deals": 30, "contacts": 20, "companies": 10, "tasks": 10}, "gong": {"calls": 10}}
RUN_TIMEOUT_S = 180
BACKFILL_TIMEOUT_S = 300
HUBSPOT_ASSETS = ["hubspot/deals", "hubspot/contacts", "hubspot/accounts", "hubspot/tasks"]


@pytest.fixture
def recipes(e2e) -> tuple[Any, Api, str]:
    e2e.sandbox.reset(sizes=SMALL)
    return e2e, Api(e2e.api_url, ADMIN), f"http://127.0.0.1:{e2e.dagster_port}/graphql"


def workspace_with(api: Api, stack, workspace_id: str, connectors: list[str]) -> None:
    """A workspace made through the REST API, which also registers its partition."""
    assert api.create_workspace(workspace_id)["id"] == workspace_id
    offered = stack.sandbox.connections()
    for connector in connectors:
        assert api.connect(workspace_id, connector, offered).status_code == 201


def active_connectors(api: Api, workspace_id: str) -> list[str]:
    """What a caller asks before launching a workspace sync (docs/graphql.md)."""
    listed = api.call("GET", f"/api/workspaces/{workspace_id}/connections").json()["connections"]
    return [c["connector"] for c in listed if c["status"] == "active"]


def finished(url: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        run = trigger.run_status(run_id, url)
        if run["status"] in {"SUCCESS", "FAILURE", "CANCELED"}:
            return run
        assert time.monotonic() < deadline, f"run {run_id} is {run['status']}"
        time.sleep(1)


def metadata(url: str, asset: str, workspace_id: str) -> dict[str, Any]:
    """The latest materialization's entries by label: (type, value)."""
    latest = trigger.latest_materialization(asset, workspace_id, url)
    assert latest is not None
    value_of = ("timestamp", "intValue", "text")
    return {
        e["label"]: (e["__typename"], next((e[k] for k in value_of if k in e), None)) for e in latest["metadataEntries"]
    }


def test_one_workspace_syncs_its_active_connectors_and_reports_status_and_metadata(recipes):
    stack, api, url = recipes
    workspace_with(api, stack, "gql-ws", ["gong", "hubspot"])
    connectors = active_connectors(api, "gql-ws")
    assert connectors == ["gong", "hubspot"]

    run_id = trigger.launch_run(trigger.workspace_run("gql-ws", connectors), url)
    run = finished(url, run_id)
    assert run["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert (tags["dagster/partition"], tags["sales-sync/sync_type"]) == ("gql-ws", "manual")

    deals = metadata(url, "hubspot/deals", "gql-ws")
    assert deals["records_synced"] == ("IntMetadataEntry", 30)
    assert deals["mode"] == ("TextMetadataEntry", "full")
    assert deals["watermark"][0] == "TimestampMetadataEntry"
    assert metadata(url, "gong/calls", "gql-ws")["records_synced"] == ("IntMetadataEntry", 10)


def test_one_connector_then_a_full_refresh_through_run_config(recipes):
    stack, api, url = recipes
    workspace_with(api, stack, "gql-one", ["hubspot"])
    first = trigger.launch_run(trigger.connector_run("gql-one", "hubspot"), url)
    assert finished(url, first)["status"] == "SUCCESS"
    again = trigger.launch_run(trigger.connector_run("gql-one", "hubspot"), url)
    assert finished(url, again)["status"] == "SUCCESS"
    assert metadata(url, "hubspot/deals", "gql-one")["mode"] == ("TextMetadataEntry", "incremental")

    full = trigger.launch_run(trigger.connector_run("gql-one", "hubspot", full_refresh=True), url)
    assert finished(url, full)["status"] == "SUCCESS"
    assert metadata(url, "hubspot/deals", "gql-one")["mode"] == ("TextMetadataEntry", "full")
    assert stack.instance.get_run_by_id(full).run_config == {
        "ops": {"hubspot_sync": {"config": {"full_refresh": True}}}
    }


def test_the_launchpad_rejects_a_run_config_of_the_wrong_type(recipes):
    _, _, url = recipes
    variables = trigger.connector_run("gql-bad", "hubspot")
    variables["executionParams"]["runConfigData"] = {"ops": {"hubspot_sync": {"config": {"lookback_hours": "a day"}}}}
    result = trigger.execute(trigger.LAUNCH_RUN, variables, url)["launchRun"]
    assert result["__typename"] == "RunConfigValidationInvalid"
    assert [e["message"] for e in result["errors"]] == [
        'Invalid scalar at path root:ops:hubspot_sync:config:lookback_hours. Value "a day" of type '
        '"<class \'str\'>" is not valid for expected type "Int".'
    ]
    variables["executionParams"]["runConfigData"] = {"ops": {"gong_sync": {"config": {}}}}
    result = trigger.execute(trigger.LAUNCH_RUN, variables, url)["launchRun"]
    assert result["__typename"] == "RunConfigValidationInvalid"
    assert result["errors"][0]["reason"] == "FIELD_NOT_DEFINED"


def test_a_backfill_over_chosen_workspaces_succeeds_where_a_workspace_lacks_a_connector(recipes):
    stack, api, url = recipes
    workspace_with(api, stack, "gql-fill-a", ["hubspot"])
    workspace_with(api, stack, "gql-fill-b", [])
    backfill_id = trigger.launch_backfill(trigger.backfill(["gql-fill-a", "gql-fill-b"], ["hubspot"]), url)

    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    while (status := trigger.backfill_status(backfill_id, url))["status"] == "REQUESTED":
        assert time.monotonic() < deadline, f"backfill {backfill_id} still {status}"
        time.sleep(2)
    assert status["status"] == "COMPLETED_SUCCESS"
    assert sorted(status["partitionNames"]) == ["gql-fill-a", "gql-fill-b"]
    assert {r["status"] for r in status["runs"]} == {"SUCCESS"}
    for run in status["runs"]:
        assert {t["key"]: t["value"] for t in run["tags"]}["sales-sync/sync_type"] == "backfill"

    assert metadata(url, "hubspot/deals", "gql-fill-a")["records_synced"] == ("IntMetadataEntry", 30)
    for asset in HUBSPOT_ASSETS:
        skipped = metadata(url, asset, "gql-fill-b")
        assert skipped["skipped"] == ("TextMetadataEntry", "no active connection")
