"""HubSpot end to end: sandbox over HTTP -> client -> sync loop -> Postgres, through Dagster."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dagster import AssetKey, AssetRecordsFilter

from definitions import connector_assets
from resources.hubspot import HubSpotObject, HubSpotResource
from resources.warehouse import WarehouseResource
from sync_assets.hubspot import PROPERTIES
from tests.conftest import register
from tests.support import latest_metadata, rows, run_sync

HUBSPOT = next(a for a in connector_assets if AssetKey(["hubspot", "deals"]) in a.keys)
WS = "acme"
SIZES = {"hubspot": {"deals": 120, "contacts": 150, "companies": 60, "tasks": 80}}


def metadata(instance, entity: str, workspace: str = WS) -> dict:
    return latest_metadata(instance, f"hubspot/{entity}", workspace)


def sandbox_deal_ids(count: int) -> list[str]:
    """The first deal ids the sandbox serves, read through the real client."""
    connection = WarehouseResource().get_connection(WS, "hubspot")
    page = next(HubSpotResource().client_for(connection).list_objects("deals", ["dealname"]))
    return [r.id for r in page.records[:count]]


@pytest.fixture
def hubspot_ws(warehouse, instance, sandbox):
    sandbox.reset(sizes=SIZES)
    register(warehouse, instance, sandbox, WS, ["hubspot"])
    return warehouse


def test_full_then_incremental_fetches_only_modified_records(hubspot_ws, instance, sandbox):
    first = run_sync(instance, HUBSPOT, WS)
    assert first.success
    counts = dict(
        rows(
            "SELECT 'deals', count(*) FROM deals UNION ALL SELECT 'contacts', count(*) FROM contacts "
            "UNION ALL SELECT 'accounts', count(*) FROM accounts UNION ALL SELECT 'tasks', count(*) FROM tasks"
        )
    )
    assert counts == {"deals": 120, "contacts": 150, "accounts": 60, "tasks": 80}
    deals_meta = metadata(instance, "deals")
    assert deals_meta["mode"] == "full"
    assert deals_meta["records_synced"] == 120
    assert deals_meta["records_failed"] == 0
    assert deals_meta["pages"] == 2  # list endpoint, 100 per page
    (max_modified,) = rows("SELECT max(source_updated_at) FROM deals")[0]
    assert datetime.fromisoformat(deals_meta["watermark"]) == max_modified
    first_requests = sandbox.requests("hubspot")
    assert not [r for r in first_requests if r["path"].endswith("/search")]

    mutated = sandbox.mutate("hubspot", "deals", 3)["ids"]
    sandbox.clear_requests("hubspot")
    second = run_sync(instance, HUBSPOT, WS)
    assert second.success

    searches = [r for r in sandbox.requests("hubspot") if r["path"] == "/hubspot/crm/v3/objects/deals/search"]
    assert len(searches) == 1
    watermark_ms = str(int(datetime.fromisoformat(deals_meta["watermark"]).timestamp() * 1000))
    assert searches[0]["body"]["filterGroups"] == [
        {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": watermark_ms}]}
    ]
    assert searches[0]["body"]["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    contact_search = next(r for r in sandbox.requests("hubspot") if r["path"].endswith("/contacts/search"))
    assert contact_search["body"]["filterGroups"][0]["filters"][0]["propertyName"] == "lastmodifieddate"

    after = metadata(instance, "deals")
    assert after["mode"] == "incremental"
    assert after["records_synced"] == 3
    assert metadata(instance, "contacts")["records_synced"] == 0
    assert datetime.fromisoformat(after["watermark"]) > datetime.fromisoformat(deals_meta["watermark"])
    synced_ids = {
        r[0]
        for r in rows(
            "SELECT source_id FROM deals WHERE source_updated_at > :w",
            w=datetime.fromisoformat(deals_meta["watermark"]),
        )
    }
    assert synced_ids == set(mutated)
    assert rows("SELECT count(*) FROM deals") == [(120,)]
    log = rows("SELECT status, mode, records_synced FROM sync_log WHERE connector_type = 'hubspot' ORDER BY id")
    assert log == [("completed", "full", 410), ("completed", "incremental", 3)]
    (last_sync_at,) = rows("SELECT last_sync_at FROM connections WHERE workspace_id = :w", w=WS)[0]
    assert last_sync_at is not None


def test_each_row_keeps_the_vendor_record_exactly_as_served(hubspot_ws, instance, sandbox):
    assert run_sync(instance, HUBSPOT, WS).success
    client = HubSpotResource().client_for(WarehouseResource().get_connection(WS, "hubspot"))
    served = client.request(
        "GET",
        "/crm/v3/objects/deals",
        params={"limit": 100, "properties": ",".join(PROPERTIES["deals"] + ["hs_lastmodifieddate", "createdate"])},
    ).json()["results"]
    stored = dict(rows("SELECT source_id, properties FROM deals"))
    assert len(served) == 100
    for record in served:
        assert stored[record["id"]] == record
    assert HubSpotObject.model_validate(served[0]).payload == HubSpotObject.model_validate(served[0]).model_dump(
        by_alias=True
    )


def test_zero_new_records_completes_with_zero_and_keeps_watermark(hubspot_ws, instance, sandbox):
    assert run_sync(instance, HUBSPOT, WS).success
    before = {e: metadata(instance, e)["watermark"] for e in ("deals", "contacts", "accounts", "tasks")}
    assert run_sync(instance, HUBSPOT, WS).success
    for entity, watermark in before.items():
        meta = metadata(instance, entity)
        assert (meta["records_synced"], meta["mode"], meta["watermark"]) == (0, "incremental", watermark)
    assert rows("SELECT status, records_synced FROM sync_log ORDER BY id DESC LIMIT 1") == [("completed", 0)]


def test_existing_row_is_updated_in_place_not_duplicated(hubspot_ws, instance, sandbox):
    """LW-2: a row seeded by hand with the same source id ends up single and updated."""
    (deal_id,) = sandbox_deal_ids(1)
    rows_before = rows(
        "INSERT INTO deals (workspace_id, source, source_id, name, updated_at) "
        "VALUES (:w, 'hubspot', :id, 'Test Deal', '2020-01-01T00:00:00Z') RETURNING id, created_at",
        w=WS,
        id=deal_id,
    )
    assert run_sync(instance, HUBSPOT, WS).success
    (count, name, updated_at, row_id) = rows(
        "SELECT count(*), max(name), max(updated_at), max(id) FROM deals "
        "WHERE workspace_id = :w AND source = 'hubspot' AND source_id = :id",
        w=WS,
        id=deal_id,
    )[0]
    assert count == 1
    assert name != "Test Deal" and name
    assert updated_at > datetime(2020, 1, 2, tzinfo=UTC)
    assert row_id == rows_before[0][0]
    assert rows("SELECT count(*) FROM deals WHERE workspace_id = :w", w=WS) == [(120,)]


def test_bad_record_is_captured_and_the_rest_land(hubspot_ws, instance, sandbox):
    """LW-1: the bad deal is dead-lettered with its id; good rows land; completed_with_errors."""
    bad_id = sandbox_deal_ids(6)[5]
    sandbox.faults("hubspot", bad_records=[bad_id])
    result = run_sync(instance, HUBSPOT, WS)
    assert result.success
    assert rows("SELECT count(*) FROM deals") == [(119,)]
    assert rows("SELECT count(*) FROM deals WHERE source_id = :id", id=bad_id) == [(0,)]
    status, errors, failed = rows("SELECT status, errors, records_failed FROM sync_log")[0]
    assert (status, failed) == ("completed_with_errors", 1)
    assert len(errors) == 1
    assert errors[0].startswith("Deal: source_updated_at: ") and errors[0].endswith(f" ({bad_id})")
    dead = rows("SELECT connector, entity, source_id, error, payload FROM sync_errors")
    assert len(dead) == 1
    connector, entity, source_id, error, payload = dead[0]
    assert (connector, entity, source_id, error) == ("hubspot", "deals", bad_id, errors[0])
    assert payload["id"] == bad_id and payload["properties"]["hs_lastmodifieddate"] == "not-a-date"
    checks = {(ev.asset_key.path[1], ev.passed, ev.severity.value) for ev in result.get_asset_check_evaluations()}
    assert checks == {
        ("deals", False, "WARN"),
        ("contacts", True, "WARN"),
        ("accounts", True, "WARN"),
        ("tasks", True, "WARN"),
    }
    assert metadata(instance, "deals")["records_failed"] == 1


def test_retry_after_is_honoured(hubspot_ws, instance, sandbox):
    sandbox.faults("hubspot", next_429=2, retry_after_s=1)
    assert run_sync(instance, HUBSPOT, WS).success
    data = [r for r in sandbox.requests("hubspot") if "/crm/" in r["path"]]
    assert [r["status"] for r in data[:3]] == [429, 429, 200]
    assert data[1]["ts_ms"] - data[0]["ts_ms"] >= 1000
    assert data[2]["ts_ms"] - data[1]["ts_ms"] >= 1000
    assert rows("SELECT count(*) FROM deals") == [(120,)]


def test_persistent_429_fails_after_three_retries_with_a_clear_error(hubspot_ws, instance, sandbox):
    sandbox.faults("hubspot", rate_429=1.0, retry_after_s=0.2)
    result = run_sync(instance, HUBSPOT, WS)
    assert not result.success
    data = [r for r in sandbox.requests("hubspot") if "/crm/" in r["path"]]
    assert [r["status"] for r in data] == [429, 429, 429, 429]
    status, error = rows("SELECT status, error FROM sync_log")[0]
    assert status == "failed"
    assert error.startswith("[HubSpot] Rate limited (429) on GET /crm/v3/objects/deals; gave up after 3 retries")


def test_backoff_without_retry_after_is_2_4_8_seconds(hubspot_ws, instance, sandbox):
    sandbox.faults("hubspot", next_429=3)
    assert run_sync(instance, HUBSPOT, WS, selection=["hubspot/deals"]).success
    data = [r for r in sandbox.requests("hubspot") if "/crm/" in r["path"]]
    assert [r["status"] for r in data[:4]] == [429, 429, 429, 200]
    gaps = [(b["ts_ms"] - a["ts_ms"]) / 1000 for a, b in zip(data, data[1:4], strict=False)]
    for gap, expected in zip(gaps, (2, 4, 8), strict=True):
        assert expected <= gap < expected + 1.5


def test_search_cap_beyond_10000_results_loses_nothing(warehouse, instance, sandbox):
    sandbox.reset(sizes={"hubspot": {"deals": 10_450, "contacts": 1, "companies": 1, "tasks": 1}}, enforce_limits=False)
    register(warehouse, instance, sandbox, WS, ["hubspot"], rate_limit=False)
    assert run_sync(instance, HUBSPOT, WS, selection=["hubspot/deals"]).success
    mutated = sandbox.mutate("hubspot", "deals", 10_450)["ids"]
    assert len(mutated) == 10_450
    sandbox.clear_requests("hubspot")
    assert run_sync(instance, HUBSPOT, WS, selection=["hubspot/deals"]).success
    searches = [r for r in sandbox.requests("hubspot") if r["path"].endswith("/deals/search")]
    assert all(r["status"] == 200 for r in searches)
    offsets = [int(r["body"]["after"]) for r in searches]
    assert max(offsets) < 10_000
    assert offsets.count(0) >= 2  # the window restarted past the cap
    meta = metadata(instance, "deals")
    assert meta["records_synced"] == 10_450
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM deals") == [(10_450, 10_450)]
    (stale,) = rows(
        "SELECT count(*) FROM deals WHERE properties->'properties'->>'hs_lastmodifieddate' < :w", w="2026-01-01"
    )[0]
    assert stale == 0


def test_crash_after_commit_before_metadata_replays_without_duplicates(hubspot_ws, instance, sandbox):
    """Pages committed before a crash are re-read next time (no watermark was recorded): no loss,
    no duplicates."""
    import dataclasses

    from sync_assets import hubspot as hubspot_recipe
    from sync_assets.factory import build_connector_assets

    real_fetch = hubspot_recipe.CONNECTOR.entities[0].fetch

    def crashing_fetch(client, since):
        for index, page in enumerate(real_fetch(client, since)):
            yield page
            if index == 0:
                raise RuntimeError("worker crashed after committing page 1")

    crashing = dataclasses.replace(
        hubspot_recipe.CONNECTOR,
        entities=(dataclasses.replace(hubspot_recipe.CONNECTOR.entities[0], fetch=crashing_fetch),),
    )
    failed = run_sync(instance, build_connector_assets(crashing), WS)
    assert not failed.success
    assert rows("SELECT count(*) FROM deals") == [(100,)]  # page 1 committed
    assert not instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(["hubspot", "deals"]), asset_partitions=[WS]), limit=1
    ).records
    assert rows("SELECT status, error FROM sync_log") == [("failed", "worker crashed after committing page 1")]

    assert run_sync(instance, HUBSPOT, WS, selection=["hubspot/deals"]).success
    assert metadata(instance, "deals")["mode"] == "full"
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM deals") == [(120, 120)]


def test_expired_token_refreshes_and_continues(hubspot_ws, instance, sandbox):
    resource = HubSpotResource()
    connection = WarehouseResource().get_connection(WS, "hubspot")
    client = resource.client_for(connection)
    pages = client.list_objects("deals", ["dealname"])
    assert len(next(pages).records) == 100
    sandbox.faults("hubspot", expire_tokens=True)
    assert len(next(pages).records) == 20
    statuses = [(r["path"].rsplit("/", 1)[-1], r["status"]) for r in sandbox.requests("hubspot")]
    assert statuses == [("token", 200), ("deals", 200), ("deals", 401), ("token", 200), ("deals", 200)]
