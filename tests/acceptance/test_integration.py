"""Seed phase 4, Integration: INT-1 … INT-4."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dagster import DagsterEventType

from tests.acceptance.client import ALL_CONNECTORS, SF_FAST, TINY, TINY_HUBSPOT, Acceptance
from tests.acceptance.test_medium_large_wins import SECRET, verify_webhook
from tests.receiver import Receiver
from tests.support import rows

TABLES = ("deals", "contacts", "accounts", "calls", "documents", "tasks")
HUBSPOT_ASSETS = ["hubspot/deals", "hubspot/contacts", "hubspot/accounts", "hubspot/tasks"]


def no_duplicates() -> bool:
    return all(
        rows(f"SELECT workspace_id, source, source_id FROM {t} GROUP BY 1, 2, 3 HAVING COUNT(*) > 1") == []
        for t in TABLES
    )


def overlapping(intervals: list[tuple[float, float]]) -> int:
    """The most intervals running at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_INT_1_full_sync_flow_end_to_end(acceptance: Acceptance, receiver: Receiver):
    a = acceptance
    a.sandbox.reset(sizes=TINY)
    a.workspace("int1", ALL_CONNECTORS)
    assert a.set_webhook("int1", receiver.url, SECRET).status_code == 200

    response = a.sync("int1")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    job_id = response.json()["jobId"]
    job = a.wait_job("int1", job_id)
    assert job["status"] == "completed"
    assert sorted(job["connectors"]) == sorted(TINY)

    # Picked up by the queue within 2 s: enqueued -> starting in the run's event log.
    (enqueued,) = [t for _, t in a.event_times(job_id, DagsterEventType.RUN_ENQUEUED)]
    (starting,) = [t for _, t in a.event_times(job_id, DagsterEventType.RUN_STARTING)]
    assert starting - enqueued < 2.0
    # The connector steps run in parallel: their intervals overlap. The warehouse tables' step follows them.
    starts = dict(a.event_times(job_id, DagsterEventType.STEP_START))
    ends = dict(a.event_times(job_id, DagsterEventType.STEP_SUCCESS))
    connector_steps = {f"{c}_sync" for c in TINY}
    assert set(starts) == set(ends) == connector_steps | {"warehouse_tables"}
    assert overlapping([(starts[k], ends[k]) for k in connector_steps]) >= 2
    assert starts["warehouse_tables"] >= max(ends[k] for k in connector_steps)

    (completed,) = receiver.wait_for("sync.completed", timeout_s=60)
    data = completed.envelope["data"]
    assert data["jobId"] == job_id and data["errors"] == []
    assert {(r["connector"], r["mode"]) for r in data["results"]} == {(c, "full") for c in TINY}
    progress = [r for r in receiver.events("sync.progress") if r.envelope["data"]["jobId"] == job_id]
    assert {r.envelope["data"]["connector"] for r in progress} == set(TINY)
    counts = dict(
        rows(
            "SELECT 'deals', count(*) FROM deals WHERE workspace_id = 'int1' UNION ALL "
            "SELECT 'contacts', count(*) FROM contacts WHERE workspace_id = 'int1' UNION ALL "
            "SELECT 'accounts', count(*) FROM accounts WHERE workspace_id = 'int1'"
        )
    )
    assert counts == {"deals": 40, "contacts": 40, "accounts": 20}
    assert rows("SELECT count(*) FROM sync_log WHERE run_id = :r AND status = 'completed'", r=job_id) == [(6,)]

    # Second sync: incremental, an injected bad record is captured, nothing duplicates.
    edited = a.sandbox.mutate("hubspot", "deals", 2)["ids"]
    a.sandbox.faults("hubspot", bad_records=[edited[0]])
    second_id = a.start("int1")
    second = a.wait_job("int1", second_id)
    assert second["status"] == "completed_with_errors"
    modes = dict(rows("SELECT connector_type, mode FROM sync_log WHERE run_id = :r", r=second_id))
    assert modes == {c: "incremental" for c in TINY}
    assert rows(
        "SELECT records_synced, records_failed FROM sync_log WHERE run_id = :r AND connector_type = 'hubspot'",
        r=second_id,
    ) == [(1, 1)]
    completions = receiver.wait_for("sync.completed", count=2, timeout_s=60)
    (last,) = [c for c in completions if c.envelope["data"]["jobId"] == second_id]
    assert [e for e in last.envelope["data"]["errors"] if e.endswith(f"({edited[0]})")]
    assert rows("SELECT count(*) FROM deals WHERE workspace_id = 'int1'") == [(40,)]
    assert no_duplicates()
    for event in receiver.events():
        assert verify_webhook(event.body, event.headers["X-Webhook-Signature"], SECRET)


def test_INT_2_scheduled_sync_runs_workspaces_in_parallel(acceptance: Acceptance):
    a = acceptance
    a.sandbox.reset(sizes={"hubspot": TINY_HUBSPOT})
    a.sandbox.faults("hubspot", latency_ms=250)  # each run lasts a few seconds
    workspaces = ["int2-a", "int2-b", "int2-c"]
    for ws in workspaces:
        a.workspace(ws, ["hubspot"])
    evaluation = a.schedule_dry_run(datetime(2026, 12, 1, 2, 0, tzinfo=UTC).timestamp())
    tags = [{t["key"]: t["value"] for t in r["tags"]} for r in evaluation["runRequests"]]
    assert sorted(t["dagster/partition"] for t in tags) == workspaces
    created = time.time()
    run_ids = [a.stack.launch("sync_workspace", t["dagster/partition"], tags=t, assets=HUBSPOT_ASSETS) for t in tags]
    assert time.time() - created < 10  # all three created together
    runs = [a.stack.wait_for_run(r, timeout_s=180) for r in run_ids]
    assert [r.status.value for r in runs] == ["SUCCESS"] * 3
    intervals = [(a.stack.run_record(r).start_time, a.stack.run_record(r).end_time) for r in run_ids]
    assert overlapping(intervals) == 3, intervals  # parallel, not one after another
    log = rows(
        "SELECT workspace_id, sync_type, status, EXTRACT(EPOCH FROM (completed_at - started_at)) FROM sync_log "
        "WHERE workspace_id LIKE 'int2-%' ORDER BY started_at"
    )
    assert sorted((w, t, s) for w, t, s, _ in log) == [(w, "scheduled", "completed") for w in workspaces]
    assert all(0 < float(d) < 120 for *_, d in log)
    for ws in workspaces:
        assert rows("SELECT count(*) FROM deals WHERE workspace_id = :w", w=ws) == [(20,)]


def test_INT_3_concurrent_syncs_of_three_workspaces(acceptance: Acceptance):
    a = acceptance
    a.sandbox.reset(sizes=TINY)
    for vendor in ("salesforce", "hubspot", "gong"):
        a.sandbox.faults(vendor, latency_ms=300)
    a.workspace("int3-a", {"salesforce": SF_FAST})
    a.workspace("int3-b", ["hubspot"])
    a.workspace("int3-c", ["gong"])
    jobs = {
        "int3-a": a.start("int3-a", "salesforce"),
        "int3-b": a.start("int3-b", "hubspot"),
        "int3-c": a.start("int3-c", "gong"),
    }
    assert {ws: a.wait_job(ws, job)["status"] for ws, job in jobs.items()} == {ws: "completed" for ws in jobs}
    intervals = [(a.stack.run_record(j).start_time, a.stack.run_record(j).end_time) for j in jobs.values()]
    assert overlapping(intervals) == 3, intervals
    assert rows(
        "SELECT workspace_id, connector_type, status FROM sync_log WHERE workspace_id LIKE 'int3-%' ORDER BY 1"
    ) == [("int3-a", "salesforce", "completed"), ("int3-b", "hubspot", "completed"), ("int3-c", "gong", "completed")]


def test_INT_4_failures_are_handled_gracefully(acceptance: Acceptance, receiver: Receiver):
    a = acceptance
    a.sandbox.reset(sizes=TINY)
    a.workspace("int4-api", ["hubspot"])
    a.workspace("int4-bad", ["monday"])
    a.workspace("int4-slow", ["google_drive"])
    a.workspace("int4-down", ["gong"])
    offered = a.sandbox.connections()["gong"]
    broken = {"credentials": {**offered["credentials"], "access_key_secret": "nope"}, "config": offered["config"]}
    assert a.call("PUT", "/api/workspaces/int4-down/connections/gong", json=broken).status_code == 200
    for ws in ("int4-api", "int4-bad", "int4-slow", "int4-down"):
        assert a.set_webhook(ws, receiver.url, SECRET).status_code == 200
    a.sandbox.faults("hubspot", next_429=2, retry_after_s=1)  # the API recovers after two refusals
    bad_item = a.sandbox.mutate("monday", "items", 1)["ids"][0]
    a.sandbox.faults("monday", bad_records=[bad_item])
    a.sandbox.faults("google_drive", latency_ms=20_000)  # the run outlives 5 s plus a monitoring poll (5 s)

    jobs = {
        "int4-api": a.start("int4-api", "hubspot"),
        "int4-bad": a.start("int4-bad", "monday"),
        "int4-slow": a.start("int4-slow", "google_drive", timeoutMs=5000),
        "int4-down": a.start("int4-down", "gong"),
    }
    outcome = {ws: a.wait_job(ws, job, timeout_s=180) for ws, job in jobs.items()}
    assert {ws: j["status"] for ws, j in outcome.items()} == {
        "int4-api": "completed",
        "int4-bad": "completed_with_errors",
        "int4-slow": "failed",
        "int4-down": "failed",
    }
    hubspot = [r["status"] for r in a.sandbox.requests("hubspot") if "/crm/" in r["path"]]
    assert hubspot[:3] == [429, 429, 200]
    assert outcome["int4-slow"]["error"] == f"Job {jobs['int4-slow']} exceeded timeout of 5000ms"
    assert outcome["int4-down"]["error"] == "[Gong] the access key or secret was rejected (401)"
    assert rows("SELECT count(*) FROM tasks WHERE workspace_id = 'int4-bad'") == [(29,)]

    # A webhook for every outcome, failures included.
    failed = receiver.wait_for("sync.failed", count=2, timeout_s=60)
    assert sorted(f.envelope["workspaceId"] for f in failed) == ["int4-down", "int4-slow"]
    completed = receiver.wait_for("sync.completed", count=2, timeout_s=60)
    assert sorted(c.envelope["workspaceId"] for c in completed) == ["int4-api", "int4-bad"]
    for event in receiver.events():
        assert verify_webhook(event.body, event.headers["X-Webhook-Signature"], SECRET)
    # Consistent state: no sync left running, no duplicates, the failed syncs say why.
    assert rows("SELECT count(*) FROM sync_log WHERE status IN ('pending', 'running')") == [(0,)]
    assert no_duplicates()
    assert dict(rows("SELECT workspace_id, error FROM sync_log WHERE status = 'failed'")) == {
        "int4-slow": outcome["int4-slow"]["error"],
        "int4-down": outcome["int4-down"]["error"],
    }
