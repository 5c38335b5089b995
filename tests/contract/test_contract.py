"""The connector contract: what every connector does, proven for each one against its sandbox over real
HTTP, through the real assets, into Postgres. Vendor quirks live in tests/test_<vendor>_sync.py."""

from __future__ import annotations

import dataclasses

import pytest
from dagster import AssetKey, AssetRecordsFilter

from resources.control_plane import upsert_connection
from resources.db import get_engine
from resources.settings import warehouse_url
from sandbox.gate import GATEWAY_PAGE
from sync_assets.factory import build_connector_assets
from sync_assets.watermark import FULL_READ
from tests.conftest import register
from tests.contract.cases import CASES
from tests.contract.conftest import Connected
from tests.support import latest_metadata, rows, run_sync


def warehouse_engine():
    return get_engine(warehouse_url())


def metadata(c: Connected, entity: str) -> dict:
    return latest_metadata(c.instance, f"{c.case.name}/{entity}", c.workspace)


def count(c: Connected, entity: str) -> tuple[int, int]:
    [(total, distinct)] = rows(
        f"SELECT count(*), count(DISTINCT source_id) FROM {entity} WHERE workspace_id = :w AND source = :s",
        w=c.workspace,
        s=c.case.name,
    )
    return total, distinct


def visible(c: Connected, vendor_entity: str) -> tuple[list[str], list[str]]:
    """The vendor's records a user sees, as (live ids, ids in the trash): Drive's trashed files are listed."""
    records = [r for r in c.sandbox.truth(c.case.name, vendor_entity) if not r.get("hidden")]
    return [r["id"] for r in records if r["state"] == "live"], [r["id"] for r in records if r["state"] == "trashed"]


def test_a_full_sync_then_an_incremental_one_syncs_exactly_what_changed(connected: Connected):
    c = connected
    assert c.sync().success
    for entity, vendor_entity in c.case.entities.items():
        meta = metadata(c, entity)
        live, trashed = visible(c, vendor_entity)
        assert (meta["mode"], meta["records_synced"], meta["records_deleted"], meta["records_failed"]) == (
            "full",
            len(live),
            len(trashed),
            0,
        )
        assert count(c, entity) == (len(live) + len(trashed),) * 2

    edited = {entity: set(c.sandbox.mutate(c.case.name, v, 3)["ids"]) for entity, v in c.case.entities.items()}
    assert c.sync().success
    now_at_vendor = c.vendor_rows()
    stored = c.warehouse_rows()
    for entity, ids in edited.items():
        meta = metadata(c, entity)
        assert (meta["mode"], meta["records_synced"]) == ("incremental", 3), entity
        assert {i: stored[entity][i] for i in ids} == {i: now_at_vendor[entity][i] for i in ids}
    [(status, synced)] = rows("SELECT status, records_synced FROM sync_log ORDER BY id DESC LIMIT 1")
    assert (status, synced) == ("completed", 3 * len(edited))


def test_a_sync_with_no_changes_reports_zero_records(connected: Connected):
    c = connected
    assert c.sync().success
    assert c.sync().success
    for entity in c.case.entities:
        meta = metadata(c, entity)
        assert (meta["mode"], meta["records_synced"], meta["records_failed"]) == ("incremental", 0, 0)
    assert rows("SELECT status, records_synced FROM sync_log ORDER BY id DESC LIMIT 1") == [("completed", 0)]


def test_a_bad_record_is_dead_lettered_and_the_rest_land(connected: Connected):
    c = connected
    entity, vendor_entity = next(iter(c.case.entities.items()))
    records = c.sandbox.truth(c.case.name, vendor_entity)
    bad_id = records[2]["id"]
    c.sandbox.faults(c.case.name, bad_records=[bad_id])
    result = c.sync()
    assert result.success
    assert count(c, entity) == (len(records) - 1, len(records) - 1)
    assert rows(f"SELECT count(*) FROM {entity} WHERE source_id = :id", id=bad_id) == [(0,)]
    [(status, failed, errors)] = rows("SELECT status, records_failed, errors FROM sync_log")
    assert (status, failed) == ("completed_with_errors", 1)
    label = c.case.connector.entities[0].label
    [(connector, dead_entity, source_id, error, has_payload)] = rows(
        "SELECT connector, entity, source_id, error, payload IS NOT NULL FROM sync_errors"
    )
    assert (connector, dead_entity, source_id, has_payload) == (c.case.name, entity, bad_id, True)
    assert error.startswith(f"{label}: ") and error.endswith(f" ({bad_id})")
    assert errors == [error]
    failed_checks = {ev.asset_key.path[1] for ev in result.get_asset_check_evaluations() if not ev.passed}
    assert failed_checks == {entity}


def test_throttling_waits_the_retry_after_the_vendor_gives(connected: Connected):
    c = connected
    entity = next(iter(c.case.entities))
    c.sandbox.faults(c.case.name, next_429=2, retry_after_s=1)
    assert c.sync(selection=[f"{c.case.name}/{entity}"]).success
    first = c.data_requests()[:3]
    assert [r["status"] for r in first] == [c.case.throttle_status, c.case.throttle_status, 200]
    # Fireflies names an instant (epoch ms) rather than a delay, so the wait is that instant less our now.
    assert first[1]["ts_ms"] - first[0]["ts_ms"] >= 900
    assert first[2]["ts_ms"] - first[1]["ts_ms"] >= 900


def test_throttling_without_retry_after_backs_off_exponentially(connected: Connected, warehouse, sandbox):
    c = connected
    entity = next(iter(c.case.entities))
    base = 0.25
    register(warehouse, c.instance, sandbox, c.workspace, [c.case.name], retry={"backoff_base_s": base})
    c.sandbox.faults(c.case.name, next_429=3)
    assert c.sync(selection=[f"{c.case.name}/{entity}"]).success
    first = c.data_requests()[:4]
    assert [r["status"] for r in first][-1] == 200
    gaps = [(b["ts_ms"] - a["ts_ms"]) / 1000 for a, b in zip(first, first[1:], strict=False)]
    for gap, expected in zip(gaps, (base, 2 * base, 4 * base), strict=True):
        assert expected <= gap < expected + 1.0, gaps


def test_persistent_throttling_gives_up_after_three_retries_naming_the_vendor(connected: Connected):
    c = connected
    entity = next(iter(c.case.entities))
    c.sandbox.faults(c.case.name, rate_429=1.0, retry_after_s=0.1)
    assert not c.sync(selection=[f"{c.case.name}/{entity}"]).success
    assert [r["status"] for r in c.data_requests()] == [c.case.throttle_status] * 4
    [(status, error)] = rows("SELECT status, error FROM sync_log")
    assert status == "failed"
    assert error.startswith(f"[{c.case.connector.title}] Rate limited ("), error
    assert "gave up after 3 retries" in error


def test_a_body_cut_off_mid_transfer_and_an_html_page_are_retried_like_a_5xx(connected: Connected):
    c = connected
    entity = next(iter(c.case.entities))
    c.sandbox.faults(c.case.name, next_truncated=1, next_html=1)
    assert c.sync(selection=[f"{c.case.name}/{entity}"]).success
    first = [(r["method"], r["path"], r["query"], r["body"]) for r in c.data_requests()[:3]]
    assert first[0] == first[1] == first[2]  # the HTML page, then the cut body, then the answer: one call
    assert metadata(c, entity)["records_synced"] == len(visible(c, c.case.entities[entity])[0])
    assert rows("SELECT status FROM sync_log") == [("completed",)]


def test_undecodable_bodies_beyond_the_retry_budget_fail_naming_the_fault(connected: Connected):
    c = connected
    entity = next(iter(c.case.entities))
    c.sandbox.faults(c.case.name, next_html=4)
    assert not c.sync(selection=[f"{c.case.name}/{entity}"]).success
    assert len(c.data_requests()) == 4
    [(status, error)] = rows("SELECT status, error FROM sync_log")
    assert status == "failed"
    assert error.startswith(f"[{c.case.connector.title}] Unreadable response (200) on "), error
    assert error.endswith(f"; gave up after 3 retries: undecodable body (text/html, {len(GATEWAY_PAGE)} bytes)"), error


def test_a_rejected_credential_fails_at_once_with_the_vendors_reason(connected: Connected):
    c = connected
    c.sandbox.faults(c.case.name, revoke=True)
    assert not c.sync().success
    [(status, error)] = rows("SELECT status, error FROM sync_log")
    assert status == "failed"
    assert error.startswith(f"[{c.case.connector.title}] "), error
    assert len(c.data_requests()) <= 1  # refused, not retried


@pytest.mark.parametrize("case", [c.name for c in CASES.values() if c.oauth], indirect=True)
def test_an_expired_access_token_is_refreshed_and_the_read_goes_on(connected: Connected):
    c = connected
    entity = c.case.connector.entities[0]
    pages = entity.read(c.client(), FULL_READ)
    assert next(pages).records
    c.sandbox.faults(c.case.name, expire_tokens=True)
    assert next(pages).records
    tail = [(c.case.is_data_request(r["path"]), r["status"]) for r in c.sandbox.requests(c.case.name)][-4:]
    assert tail == [(True, 200), (True, 401), (False, 200), (True, 200)]


def test_a_crash_after_a_commit_replays_without_loss_or_duplicates(connected: Connected):
    """Pages committed before a crash are read again (no watermark was recorded): no loss, no duplicate."""
    c = connected
    first = c.case.connector.entities[0]

    def crashing_read(client, window):
        for index, page in enumerate(first.read(client, window)):
            yield page
            if index == 1:
                raise RuntimeError("worker crashed after two pages")

    crashing = dataclasses.replace(c.case.connector, entities=(dataclasses.replace(first, read=crashing_read),))
    assert not run_sync(c.instance, build_connector_assets(crashing), c.workspace).success
    committed, _ = count(c, first.name)
    assert committed > 0
    key = AssetKey([c.case.name, first.name])
    assert not c.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[c.workspace]), limit=1
    ).records
    assert rows("SELECT status, error FROM sync_log") == [("failed", "worker crashed after two pages")]

    assert c.sync(selection=[f"{c.case.name}/{first.name}"]).success
    size = len(c.sandbox.truth(c.case.name, c.case.entities[first.name]))
    assert metadata(c, first.name)["mode"] == "full"
    assert count(c, first.name) == (size, size)


def test_a_connection_repointed_at_another_vendor_account_starts_over_with_a_full_sync(connected: Connected):
    """The sync state belongs to the vendor account it was read from (portal, org, user, account): new
    credentials for another account must not continue from the old account's watermark."""
    c = connected
    assert c.sync().success
    first = {e: metadata(c, e)["vendor_account"] for e in c.case.entities}
    other = c.sandbox.connections(tenant="another-account")[c.case.name]
    upsert_connection(warehouse_engine(), c.workspace, c.case.name, other["credentials"], c.case.small_pages)
    assert c.sync().success
    for entity in c.case.entities:
        meta = metadata(c, entity)
        assert meta["mode"] == "full", entity
        assert meta["vendor_account"] != first[entity]
    assert c.sync().success
    assert {metadata(c, e)["mode"] for e in c.case.entities} == {"incremental"}
