"""Seed phase 1, Quick Wins: QW-1 … QW-6 on the production-like stack."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from resources.salesforce import soql_datetime
from tests.acceptance.client import SF_FAST, TINY_HUBSPOT, Acceptance
from tests.support import assert_evenly_spaced, rows, wait_until

HUBSPOT_ASSETS = [["hubspot", "deals"], ["hubspot", "contacts"], ["hubspot", "accounts"], ["hubspot", "tasks"]]


def test_QW_1_salesforce_sync_returns_202_fast(acceptance: Acceptance):
    a = acceptance
    a.workspace("qw1", {"salesforce": SF_FAST})
    a.workspace("qw1-nosf", ["hubspot"])

    started = time.monotonic()
    response = a.sync("qw1", "salesforce")
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert elapsed < 0.5
    body = response.json()
    job_id = body["jobId"]
    assert set(body) == {"syncId", "jobId", "status", "statusUrl"}
    assert body["status"] == "queued"
    assert body["statusUrl"] == f"/api/workspaces/qw1/sync/jobs/{job_id}"
    assert a.job("qw1", job_id)["status"] in {"queued", "running"}
    # The `jobs` row is the Dagster run, created by the API's launcher a moment after the 202: queued
    # or already picked up.
    a.stack.launched(job_id)
    assert a.run_status(job_id) in {"QUEUED", "STARTING", "STARTED"}

    duplicate = a.sync("qw1", "salesforce")
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "sync_in_progress"
    assert a.sync("no-such-ws", "salesforce").status_code == 404
    assert a.sync("qw1-nosf", "salesforce").status_code == 404

    logged = wait_until(
        lambda: rows("SELECT connector_type, sync_type, status FROM sync_log WHERE run_id = :r", r=job_id), 120
    )
    assert logged[0][:2] == ("salesforce", "manual") and logged[0][2] in {"running", "completed"}
    job = a.wait_job("qw1", job_id)
    assert (job["status"], job["jobName"], job["connectors"]) == ("completed", "sync_salesforce", ["salesforce"])
    assert a.run_status(job_id) == "SUCCESS"
    assert rows(
        "SELECT connector_type, status, records_synced, completed_at IS NOT NULL FROM sync_log "
        "WHERE workspace_id = 'qw1'"
    ) == [("salesforce", "completed", 410, True)]


def test_QW_2_scheduler_queues_runs_without_blocking(acceptance: Acceptance):
    a = acceptance
    a.sandbox.reset(sizes={"hubspot": TINY_HUBSPOT})
    for ws in ("qw2-a", "qw2-b", "qw2-c"):
        a.workspace(ws, ["hubspot"])
    a.workspace("qw2-busy", ["monday"])
    a.sandbox.faults("monday", latency_ms=1500)
    busy = a.start("qw2-busy")

    started = time.monotonic()
    evaluation = a.schedule_dry_run(datetime(2026, 11, 30, 2, 0, tzinfo=UTC).timestamp())
    assert time.monotonic() - started < 5
    assert evaluation["error"] is None and evaluation["skipReason"] is None
    requests = evaluation["runRequests"]
    tags = [{t["key"]: t["value"] for t in r["tags"]} for r in requests]
    assert sorted(t["dagster/partition"] for t in tags) == ["qw2-a", "qw2-b", "qw2-c"]
    assert {t["sales-sync/sync_type"] for t in tags} == {"scheduled"}
    # HubSpot's assets and the warehouse tables they feed.
    selected = sorted(
        HUBSPOT_ASSETS + [["warehouse", t] for t in ("deals", "contacts", "accounts", "tasks", "sync_errors")]
    )
    assert all(sorted(k["path"] for k in r["assetSelection"]) == selected for r in requests)
    logged = a.code_server_log()
    assert "Queueing daily sync jobs for 4 workspace(s)" in logged
    assert "Skipping workspace qw2-busy: a sync is already queued or running" in logged
    assert "Daily sync jobs queued: 3/4 workspaces" in logged

    # Launch what the tick requested (the UI's "Launch all"): every run exists at once, queued or picked up.
    run_ids = [
        a.stack.launch(
            "sync_workspace", t["dagster/partition"], tags=t, assets=["hubspot/" + k[1] for k in HUBSPOT_ASSETS]
        )
        for t in tags
    ]
    assert {a.run_status(r) for r in run_ids} <= {"QUEUED", "STARTING", "STARTED"}
    for run_id in run_ids:
        assert a.stack.wait_for_run(run_id, timeout_s=180).status.value == "SUCCESS"
    assert rows(
        "SELECT workspace_id, sync_type, status, records_synced FROM sync_log WHERE sync_type = 'scheduled' "
        "ORDER BY workspace_id"
    ) == [(ws, "scheduled", "completed", 60) for ws in ("qw2-a", "qw2-b", "qw2-c")]
    a.sandbox.clear_faults("monday")
    assert a.wait_job("qw2-busy", busy)["status"] == "completed"


def test_QW_3_stale_lock_is_failed_and_new_sync_proceeds(acceptance: Acceptance):
    a = acceptance
    a.workspace("qw3", ["hubspot"])
    insert = (
        "INSERT INTO sync_log (workspace_id, connector_type, sync_type, status, started_at) "
        "VALUES ('qw3', 'salesforce', 'manual', 'running', NOW() - CAST(:age AS interval)) RETURNING id"
    )
    (recent,) = rows(insert, age="10 minutes")[0]
    refused = a.sync("qw3")
    assert refused.status_code == 409  # stuck < 1 hour: not cleaned
    assert rows("SELECT status, error FROM sync_log WHERE id = :i", i=recent) == [("running", None)]

    stale = [rows(insert, age=age)[0][0] for age in ("2 hours", "3 hours")]
    rows("UPDATE sync_log SET started_at = NOW() - interval '90 minutes' WHERE id = :i RETURNING id", i=recent)
    job_id = a.start("qw3")
    assert rows(
        "SELECT id, status, error, completed_at IS NOT NULL FROM sync_log WHERE id = ANY(:ids) ORDER BY id",
        ids=[recent, *stale],
    ) == [(i, "failed", "Sync timed out (exceeded 1 hour)", True) for i in sorted([recent, *stale])]
    assert a.wait_job("qw3", job_id)["status"] == "completed"
    latest = rows(
        "SELECT run_id, status, error, completed_at IS NOT NULL FROM sync_log WHERE workspace_id = 'qw3' "
        "ORDER BY started_at DESC LIMIT 2"
    )
    assert latest == [(job_id, "completed", None, True), (None, "failed", "Sync timed out (exceeded 1 hour)", True)]


def test_QW_4_gong_requests_are_throttled_to_100_per_minute(acceptance: Acceptance):
    a = acceptance
    a.sandbox.reset(sizes={"gong": {"calls": 1950}})  # 20 pages of 100
    a.sandbox.limits("gong", 10, 6.0)  # the same rate as 100/min, enforced over a short window
    a.workspace("qw4", ["gong"])
    job = a.run_sync("qw4", "gong")
    assert job["status"] == "completed"
    data = [r for r in a.sandbox.requests("gong") if r["path"].startswith("/gong/v2/")]
    assert [r["status"] for r in data] == [200] * 20
    assert_evenly_spaced([r["ts_ms"] / 1000 for r in data], 0.6)
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM calls WHERE workspace_id = 'qw4'") == [(1950, 1950)]
    assert rows("SELECT status, records_synced FROM sync_log WHERE workspace_id = 'qw4'") == [("completed", 1950)]


def test_QW_5_monday_requests_are_throttled_to_60_per_minute(acceptance: Acceptance):
    a = acceptance
    a.sandbox.reset(sizes={"monday": {"boards": 1, "items": 150}})
    a.sandbox.limits("monday", 10, 10.0)  # 60/min, enforced over a 10 s window
    # The account, boards, 15 item pages, then the deletion check (boards again, one page of item ids).
    a.workspace("qw5", {"monday": {"page_size": 10}})
    job = a.run_sync("qw5", "monday")
    assert job["status"] == "completed"
    calls = [r for r in a.sandbox.requests("monday") if r["path"] == "/monday/v2"]
    assert [r["status"] for r in calls] == [200] * 19
    gaps = assert_evenly_spaced([r["ts_ms"] / 1000 for r in calls], 1.0)
    assert max(gaps) < 1.5  # evenly spaced, not bursts and pauses
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM tasks WHERE workspace_id = 'qw5'") == [(150, 150)]
    assert rows("SELECT status, records_synced FROM sync_log WHERE workspace_id = 'qw5'") == [("completed", 150)]


def test_QW_6_salesforce_second_sync_is_incremental_from_the_watermark(acceptance: Acceptance):
    a = acceptance
    a.workspace("qw6", {"salesforce": SF_FAST})
    assert rows("SELECT last_sync_at FROM connections WHERE workspace_id = 'qw6'") == [(None,)]
    assert a.run_sync("qw6", "salesforce")["status"] == "completed"
    (first_sync_at,) = rows(
        "SELECT last_sync_at FROM connections WHERE workspace_id = 'qw6' AND connector_name = 'salesforce'"
    )[0]
    assert first_sync_at is not None
    (watermark,) = rows("SELECT max(source_updated_at) FROM deals WHERE workspace_id = 'qw6'")[0]

    mutated = a.sandbox.mutate("salesforce", "Opportunity", 3)["ids"]
    a.sandbox.clear_requests("salesforce")
    second = a.run_sync("qw6", "salesforce")
    assert second["status"] == "completed"
    where = f"WHERE SystemModstamp >= {soql_datetime(watermark)}"
    queries = [r["query"].get("q", "") for r in a.sandbox.requests("salesforce")]
    assert [q for q in queries if "FROM Opportunity" in q][0] == f"SELECT COUNT() FROM Opportunity {where}"
    assert any(
        m == f"[Salesforce Client] Using incremental WHERE clause: {where} (Opportunity)"
        for m in a.run_messages(second["jobId"])
    )
    log = rows(
        "SELECT connector_type, mode, records_synced FROM sync_log WHERE workspace_id = 'qw6' "
        "AND connector_type = 'salesforce' ORDER BY started_at DESC LIMIT 2"
    )
    assert log == [("salesforce", "incremental", 3), ("salesforce", "full", 410)]
    assert {r[0] for r in rows("SELECT source_id FROM deals WHERE source_updated_at > :w", w=watermark)} == set(mutated)
    (second_sync_at,) = rows("SELECT last_sync_at FROM connections WHERE workspace_id = 'qw6'")[0]
    assert second_sync_at > first_sync_at
