"""A sync step's run config (SyncConfig), the legacy full-refresh tag, and a workspace without the connector:
through the real HubSpot assets against the sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance

from definitions import connector_assets
from sync_assets.runs import SyncConfig, full_refresh_requested, sync_run_config
from tests.conftest import register
from tests.support import latest_metadata, rows, run_sync

HUBSPOT = next(a for a in connector_assets if AssetKey(["hubspot", "deals"]) in a.keys)
WS = "acme"
DEALS = ["hubspot/deals"]


@pytest.fixture(autouse=True)
def no_platform_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_RATE_LIMITS", json.dumps({"hubspot": False, "hubspot:search": False}))


@pytest.fixture
def synced_once(warehouse, instance, sandbox) -> DagsterInstance:
    sandbox.reset(sizes={"hubspot": {"deals": 5, "contacts": 1, "companies": 1, "tasks": 1}}, enforce_limits=False)
    register(warehouse, instance, sandbox, WS, ["hubspot"])
    assert run_sync(instance, HUBSPOT, WS, selection=DEALS).success
    return instance


def deals_mode(instance: DagsterInstance) -> str:
    return latest_metadata(instance, "hubspot/deals", WS)["mode"]


def test_run_config_full_refresh_reads_everything(synced_once):
    config = sync_run_config(["hubspot"], full_refresh=True)
    assert run_sync(synced_once, HUBSPOT, WS, selection=DEALS, run_config=config).success
    assert deals_mode(synced_once) == "full"


@pytest.mark.parametrize("tag", ["sales-sync/full_refresh", "full_refresh"])
def test_the_full_refresh_tag_still_forces_a_full_read(synced_once, tag):
    assert run_sync(synced_once, HUBSPOT, WS, selection=DEALS, tags={tag: "true"}).success
    assert deals_mode(synced_once) == "full"


def test_run_config_wins_over_the_tag(synced_once):
    config = sync_run_config(["hubspot"], full_refresh=False)
    result = run_sync(synced_once, HUBSPOT, WS, selection=DEALS, tags={"full_refresh": "true"}, run_config=config)
    assert result.success
    assert deals_mode(synced_once) == "incremental"


def test_lookback_hours_widens_this_run_only(synced_once):
    watermark = datetime.fromtimestamp(latest_metadata(synced_once, "hubspot/deals", WS)["watermark"], UTC)
    config = sync_run_config(["hubspot"], lookback_hours=5)
    result = run_sync(synced_once, HUBSPOT, WS, selection=DEALS, run_config=config)
    assert result.success
    since = (watermark - timedelta(hours=5)).isoformat(timespec="milliseconds")
    messages = [e.message for e in synced_once.all_logs(result.run_id) if e.message]
    assert f"HubSpot deals: incremental from {since} (watermark {watermark.isoformat(timespec='milliseconds')})" in (
        messages
    )


def test_lookback_hours_out_of_range_fails_the_step_before_any_read(synced_once, sandbox):
    sandbox.clear_requests("hubspot")
    config = sync_run_config(["hubspot"], lookback_hours=8761)
    result = run_sync(synced_once, HUBSPOT, WS, selection=DEALS, run_config=config)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    assert "lookback_hours" in failure.step_failure_data.error.to_string()
    assert "less than or equal to 8760" in failure.step_failure_data.error.to_string()
    assert sandbox.requests("hubspot") == []


def test_a_workspace_without_the_connector_materializes_its_assets_as_skipped(warehouse, instance, sandbox):
    register(warehouse, instance, sandbox, "no-hubspot", [])
    result = run_sync(instance, HUBSPOT, "no-hubspot")
    assert result.success
    for key in HUBSPOT.keys:
        metadata = latest_metadata(instance, key.to_user_string(), "no-hubspot")
        assert metadata == {"skipped": "no active connection", "dagster/table_name": f"public.{key.path[1]}"}
    assert rows("SELECT count(*) FROM sync_log WHERE workspace_id = 'no-hubspot'") == [(0,)]


def test_a_skip_carries_the_state_so_a_connection_enabled_again_resumes(synced_once, warehouse):
    before = latest_metadata(synced_once, "hubspot/deals", WS)
    with warehouse.begin() as conn:
        conn.exec_driver_sql("UPDATE connections SET status = 'inactive' WHERE workspace_id = %s", (WS,))
    assert run_sync(synced_once, HUBSPOT, WS, selection=DEALS).success
    skipped = latest_metadata(synced_once, "hubspot/deals", WS)
    assert skipped["skipped"] == "no active connection"
    assert skipped["watermark"] == before["watermark"]
    with warehouse.begin() as conn:
        conn.exec_driver_sql("UPDATE connections SET status = 'active' WHERE workspace_id = %s", (WS,))
    assert run_sync(synced_once, HUBSPOT, WS, selection=DEALS).success
    assert deals_mode(synced_once) == "incremental"


def test_full_refresh_resolution():
    explicit_false = {"ops": {"hubspot_sync": {"config": {"full_refresh": False}}}}
    assert full_refresh_requested(SyncConfig(), {}, "hubspot", {}) is False
    assert full_refresh_requested(SyncConfig(), {}, "hubspot", {"full_refresh": "yes"}) is True
    assert full_refresh_requested(SyncConfig(), {}, "hubspot", {"sales-sync/full_refresh": "true"}) is True
    assert full_refresh_requested(SyncConfig(), explicit_false, "hubspot", {"full_refresh": "true"}) is False
    explicit_true = {"ops": {"hubspot_sync": {"config": {"full_refresh": True}}}}
    assert full_refresh_requested(SyncConfig(full_refresh=True), explicit_true, "hubspot", {}) is True


def test_sync_run_config_names_each_connector_step():
    assert sync_run_config(["gong", "hubspot"], full_refresh=True, lookback_hours=3) == {
        "ops": {
            "gong_sync": {"config": {"full_refresh": True, "lookback_hours": 3}},
            "hubspot_sync": {"config": {"full_refresh": True, "lookback_hours": 3}},
        }
    }
