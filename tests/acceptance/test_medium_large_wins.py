"""Seed phases 2 and 3, Medium and Large Wins: MW-1 … MW-3, LW-1 … LW-3."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from resources.gong import gong_time
from tests.acceptance.client import ALL_CONNECTORS, SF_FAST, TINY, Acceptance
from tests.receiver import Receiver
from tests.support import rows, wait_until

SECRET = "test-secret-key"
TEST_EVENT_DATA = {"jobType": "test", "progress": {"current": 50, "total": 100, "message": "Test webhook notification"}}


# The seed's verifier (LW-3), verbatim.
def verify_webhook(payload_body, signature_header, secret):
    expected = "sha256=" + hmac.new(secret.encode(), payload_body.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature_header)


def test_MW_1_timeout_fails_the_job_naming_the_limit(acceptance: Acceptance):
    a = acceptance
    a.workspace("mw1", ["hubspot"])
    a.workspace("mw1-default", ["gong"])
    # Every request outlasts the limit, so the run cannot finish first however fast the machine is.
    a.sandbox.faults("hubspot", latency_ms=20_000)
    job_id = a.start("mw1", timeoutMs=5000)
    default_id = a.start("mw1-default", "gong")
    assert a.stack.launched(job_id).tags["dagster/max_runtime"] == "5"
    assert "dagster/max_runtime" not in a.stack.launched(default_id).tags

    job = a.wait_job("mw1", job_id, timeout_s=120)
    message = f"Job {job_id} exceeded timeout of 5000ms"
    assert (job["status"], job["error"]) == ("failed", message)
    record = a.stack.run_record(job_id)
    assert 5 <= record.end_time - record.start_time <= 60  # the daemon checks every 5 s, later when loaded
    assert rows("SELECT status, error, completed_at IS NOT NULL FROM sync_log WHERE run_id = :r", r=job_id) == [
        ("failed", message, True)
    ]
    # No timeout given: the instance default of 600 s applies, and a job within its limit succeeds.
    assert a.stack.instance.run_monitoring_max_runtime_seconds == 600
    assert a.wait_job("mw1-default", default_id)["status"] == "completed"
    assert rows("SELECT status FROM sync_log WHERE run_id = :r", r=default_id) == [("completed",)]


def test_MW_2_429s_are_retried_with_exponential_backoff(acceptance: Acceptance):
    a = acceptance
    a.workspace("mw2", ["gong", "monday"])
    a.workspace("mw2-down", ["hubspot"])
    a.sandbox.faults("gong", next_429=3)
    a.sandbox.faults("monday", next_429=2, retry_after_s=1)
    a.sandbox.faults("hubspot", rate_429=1.0, retry_after_s=0.2)
    recovering, persistent = a.start("mw2"), a.start("mw2-down", "hubspot")

    assert a.wait_job("mw2", recovering)["status"] == "completed"
    gong = [r for r in a.sandbox.requests("gong") if r["path"].startswith("/gong/v2/")]
    assert [r["status"] for r in gong] == [429, 429, 429, 200, 200]
    for (before, after), expected in zip(zip(gong, gong[1:4], strict=False), (2, 4, 8), strict=True):
        assert expected <= (after["ts_ms"] - before["ts_ms"]) / 1000 < expected + 3
    monday = [r for r in a.sandbox.requests("monday") if r["path"] == "/monday/v2"]
    assert [r["status"] for r in monday[:3]] == [429, 429, 200]
    assert all((b["ts_ms"] - p["ts_ms"]) >= 1000 for p, b in zip(monday, monday[1:3], strict=False))
    messages = a.run_messages(recovering)
    for line in [f"[Gong Client] Rate limited (429), retrying in {ms}ms" for ms in (2000, 4000, 8000)] + [
        "[Monday Client] Rate limited (429), retrying in 1000ms"
    ]:
        assert line in messages
    assert rows("SELECT connector_type, status FROM sync_log WHERE workspace_id = 'mw2' ORDER BY 1") == [
        ("gong", "completed"),
        ("monday", "completed"),
    ]
    assert rows("SELECT count(*) FROM calls WHERE workspace_id = 'mw2'") == [(120,)]

    # Max 3 retries (4 attempts), then the sync fails with the vendor's error.
    job = a.wait_job("mw2-down", persistent)
    assert job["status"] == "failed"
    hubspot = [r for r in a.sandbox.requests("hubspot") if "/crm/" in r["path"]]
    assert [r["status"] for r in hubspot] == [429] * 4
    ((status, error),) = rows("SELECT status, error FROM sync_log WHERE workspace_id = 'mw2-down'")
    assert status == "failed"
    assert error == (
        "[HubSpot] Rate limited (429) on POST /crm/v3/objects/deals/search; gave up after 3 retries: "
        "TEN_SECONDLY_ROLLING: You have reached your ten_secondly_rolling limit."
    )
    assert job["error"] == error


def test_MW_3_every_connector_syncs_incrementally(acceptance: Acceptance):
    a = acceptance
    a.sandbox.reset(sizes=TINY)
    a.workspace("mw3", ALL_CONNECTORS)
    assert a.run_sync("mw3")["status"] == "completed"
    first = {
        r[0]: r[1:]
        for r in rows(
            "SELECT connector_type, mode, watermark_to, records_synced FROM sync_log WHERE workspace_id = 'mw3'"
        )
    }
    assert {c: v[0] for c, v in first.items()} == {c: "full" for c in TINY}
    synced_at = dict(rows("SELECT connector_name, last_sync_at FROM connections WHERE workspace_id = 'mw3'"))
    assert set(synced_at) == set(TINY) and all(synced_at.values())

    lookback_counts = {}
    for vendor in ("gong", "fireflies"):
        since = datetime.fromisoformat(first[vendor][1]) - timedelta(days=1)
        (count,) = rows(
            "SELECT count(*) FROM calls WHERE workspace_id = 'mw3' AND source = :s AND source_updated_at >= :t",
            s=vendor,
            t=since,
        )[0]
        lookback_counts[vendor] = count
    for vendor, entity in (
        ("hubspot", "deals"),
        ("salesforce", "Opportunity"),
        ("monday", "items"),
        ("google_drive", "files"),
    ):
        a.sandbox.mutate(vendor, entity, 2)
    for vendor, entity in (("gong", "calls"), ("fireflies", "transcripts")):
        a.sandbox.mutate(vendor, entity, create=2)
    a.sandbox.clear_requests("gong")

    again = a.run_sync("mw3")
    assert again["status"] == "completed"
    second = {
        r[0]: r[1:]
        for r in rows(
            "SELECT connector_type, mode, watermark_from, records_synced FROM sync_log WHERE run_id = :r",
            r=again["jobId"],
        )
    }
    assert {c: v[0] for c, v in second.items()} == {c: "incremental" for c in TINY}
    # Gong and Fireflies re-read a day before the watermark; the unchanged records they re-read are not
    # synced again (only rows that changed are written and counted).
    assert {c: v[2] for c, v in second.items()} == dict.fromkeys(TINY, 2)
    assert all(lookback_counts.values()), lookback_counts
    for single in ("gong", "fireflies", "monday", "google_drive"):  # one entity: from = the previous to
        assert second[single][1] == first[single][1]
    (gong_request,) = [r for r in a.sandbox.requests("gong") if r["path"] == "/gong/v2/calls/extensive"]
    since = datetime.fromisoformat(first["gong"][1]).astimezone(UTC) - timedelta(days=1)
    assert gong_request["body"]["filter"]["fromDateTime"] == gong_time(since)
    after = dict(rows("SELECT connector_name, last_sync_at FROM connections WHERE workspace_id = 'mw3'"))
    assert all(after[c] > synced_at[c] for c in TINY)


def test_LW_1_bad_records_are_captured_per_connector(acceptance: Acceptance):
    a = acceptance
    a.sandbox.reset(sizes=TINY)
    connectors = {"salesforce": SF_FAST, "hubspot": {}, "gong": {}, "fireflies": {}}
    a.workspace("lw1", connectors)
    bad = {
        "salesforce": ("Account", "accounts", a.sandbox.mutate("salesforce", "Account", 1)["ids"][0]),
        "hubspot": ("Deal", "deals", a.sandbox.mutate("hubspot", "deals", 1)["ids"][0]),
        "gong": ("Call", "calls", a.sandbox.mutate("gong", "calls", 1)["ids"][0]),
        "fireflies": ("Call", "calls", a.sandbox.mutate("fireflies", "transcripts", 1)["ids"][0]),
    }
    for vendor, (_, _, source_id) in bad.items():
        a.sandbox.faults(vendor, bad_records=[source_id])

    job = a.run_sync("lw1")
    assert job["status"] == "completed_with_errors"
    logged = {
        r[0]: r[1:]
        for r in rows("SELECT connector_type, status, records_failed, errors FROM sync_log WHERE workspace_id = 'lw1'")
    }
    for vendor, (label, table, source_id) in bad.items():
        status, failed, errors = logged[vendor]
        assert (status, failed, len(errors)) == ("completed_with_errors", 1, 1)
        assert errors[0].startswith(f"{label}: ") and errors[0].endswith(f" ({source_id})")
        assert errors[0] in job["errors"]
        assert rows(
            "SELECT connector, entity, error FROM sync_errors WHERE workspace_id = 'lw1' AND source_id = :i",
            i=source_id,
        ) == [(vendor, table, errors[0])]
        assert rows(f"SELECT count(*) FROM {table} WHERE source_id = :i", i=source_id) == [(0,)]
    # The good records landed.
    assert rows("SELECT source, count(*) FROM calls WHERE workspace_id = 'lw1' GROUP BY 1 ORDER BY 1") == [
        ("fireflies", 29),
        ("gong", 29),
    ]
    assert rows("SELECT count(*) FROM deals WHERE workspace_id = 'lw1' AND source = 'hubspot'") == [(19,)]
    assert rows("SELECT count(*) FROM accounts WHERE workspace_id = 'lw1' AND source = 'salesforce'") == [(9,)]


def test_LW_2_resync_updates_existing_rows_in_place(acceptance: Acceptance):
    a = acceptance
    a.sandbox.reset(sizes=TINY)
    a.workspace("lw2", ["hubspot", "gong", "google_drive", "monday"])
    seeded = {
        "deals": ("hubspot", a.sandbox.mutate("hubspot", "deals", 1)["ids"][0]),
        "contacts": ("hubspot", a.sandbox.mutate("hubspot", "contacts", 1)["ids"][0]),
        "accounts": ("hubspot", a.sandbox.mutate("hubspot", "companies", 1)["ids"][0]),
        "calls": ("gong", a.sandbox.mutate("gong", "calls", 1)["ids"][0]),
        "documents": ("google_drive", a.sandbox.mutate("google_drive", "files", 1)["ids"][0]),
        "tasks": ("monday", a.sandbox.mutate("monday", "items", 1)["ids"][0]),
    }
    ids = {}
    for table, (source, source_id) in seeded.items():
        ids[table] = rows(
            f"INSERT INTO {table} (workspace_id, source, source_id, updated_at) "
            "VALUES ('lw2', :s, :i, '2020-01-01T00:00:00Z') RETURNING id",
            s=source,
            i=source_id,
        )[0][0]

    assert a.run_sync("lw2")["status"] == "completed"
    for table, (source, source_id) in seeded.items():
        count, updated_at, row_id, raw = rows(
            f"SELECT COUNT(*), MAX(updated_at), MAX(id), MAX(properties::text) FROM {table} "
            "WHERE workspace_id = 'lw2' AND source = :s AND source_id = :i",
            s=source,
            i=source_id,
        )[0]
        assert count == 1, table
        assert updated_at > datetime(2020, 1, 2, tzinfo=UTC), table
        assert row_id == ids[table] and raw, table  # ON CONFLICT DO UPDATE: same row, now with the vendor's data
        assert (
            rows(f"SELECT workspace_id, source, source_id, COUNT(*) FROM {table} GROUP BY 1, 2, 3 HAVING COUNT(*) > 1")
            == []
        )
    assert rows("SELECT count(*) FROM deals WHERE workspace_id = 'lw2'") == [(20,)]
    # 30 files, every tenth of them trashed: the trashed ones are kept, marked deleted.
    assert rows("SELECT is_deleted, count(*) FROM documents WHERE workspace_id = 'lw2' GROUP BY 1 ORDER BY 1") == [
        (False, 27),
        (True, 3),
    ]


def test_LW_3_signed_progress_completion_and_failure_webhooks(acceptance: Acceptance, receiver: Receiver):
    a = acceptance
    a.sandbox.reset(sizes=TINY)
    a.workspace("lw3", ["hubspot"])
    assert a.set_webhook("lw3", receiver.url, SECRET).status_code == 200
    shown = a.call("GET", "/api/workspaces/lw3/webhook").json()
    assert shown["webhookUrl"] == receiver.url and SECRET not in str(shown)

    tested = a.call("POST", "/api/workspaces/lw3/webhook/test")
    assert tested.status_code == 200 and tested.json()["delivered"] is True
    (test_event,) = receiver.wait_for("sync.progress")
    envelope = test_event.envelope
    assert verify_webhook(test_event.body, test_event.headers["X-Webhook-Signature"], SECRET)
    assert test_event.headers["X-Webhook-Signature"].startswith("sha256=")
    assert (envelope["event"], envelope["workspaceId"], envelope["data"]) == ("sync.progress", "lw3", TEST_EVENT_DATA)
    assert datetime.fromisoformat(envelope["timestamp"].replace("Z", "+00:00")) > datetime.now(UTC) - timedelta(1)

    job_id = a.start("lw3")
    assert a.wait_job("lw3", job_id)["status"] == "completed"
    (completed,) = receiver.wait_for("sync.completed", timeout_s=60)
    data = completed.envelope["data"]
    assert data["jobId"] == job_id and data["errors"] == []
    assert sorted((r["entity"], r["recordsSynced"]) for r in data["results"]) == [
        ("accounts", 10),
        ("contacts", 20),
        ("deals", 20),
        ("tasks", 10),
    ]
    progress = [r for r in receiver.events("sync.progress") if r.envelope["data"].get("jobId") == job_id]
    assert progress and all(r.at <= completed.at for r in progress)

    # A broken connection: the sync fails and sync.failed carries the real cause.
    a.workspace("lw3-broken", {"gong": {}})
    offered = a.sandbox.connections()["gong"]
    broken = {**offered["credentials"], "access_key_secret": "nope"}
    put = a.call(
        "PUT", "/api/workspaces/lw3-broken/connections/gong", json={"credentials": broken, "config": offered["config"]}
    )
    assert put.status_code == 200
    assert a.set_webhook("lw3-broken", receiver.url, SECRET).status_code == 200
    failed_id = a.start("lw3-broken", "gong")
    assert a.wait_job("lw3-broken", failed_id)["status"] == "failed"
    (failed,) = receiver.wait_for("sync.failed", timeout_s=60)
    assert failed.envelope["data"]["jobId"] == failed_id
    assert "[Gong] the access key or secret was rejected (401)" in str(failed.envelope["data"])
    for event in receiver.events():
        assert verify_webhook(event.body, event.headers["X-Webhook-Signature"], SECRET)
    # The outbox marks a delivery once the receiver has answered: a moment after the receiver saw it.
    expected = [("lw3", "sync.completed", "delivered"), ("lw3-broken", "sync.failed", "delivered")]
    outbox = "SELECT workspace_id, event, status FROM webhook_deliveries WHERE event <> 'sync.progress' ORDER BY 1"
    wait_until(lambda: rows(outbox) == expected, timeout_s=30, what="both deliveries marked delivered")
