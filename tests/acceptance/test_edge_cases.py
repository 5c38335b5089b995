"""Seed phase 5, Edge Cases: EDGE-1 … EDGE-6."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from dagster import DagsterEventType
from sqlalchemy import create_engine, text

from tests.acceptance.client import SF_FAST, TINY, Acceptance
from tests.acceptance.test_medium_large_wins import SECRET
from tests.receiver import Receiver
from tests.support import rows, wait_until

API = "/salesforce/services/data/v62.0"


def test_EDGE_1_parallel_duplicate_requests_get_one_202(acceptance: Acceptance):
    a = acceptance
    a.workspace("edge1", ["hubspot"])
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: a.sync("edge1"), range(10)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] + [409] * 9
    (accepted,) = [r.json()["jobId"] for r in responses if r.status_code == 202]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"sync_in_progress"}
    assert a.wait_job("edge1", accepted)["status"] == "completed"
    assert rows("SELECT run_id FROM sync_log WHERE workspace_id = 'edge1'") == [(accepted,)]


def test_EDGE_2_invalid_webhook_url_is_rejected(acceptance: Acceptance):
    a = acceptance
    a.workspace("edge2", ["hubspot"])
    for url in ("not-a-url", "ftp://example.com/hook"):
        response = a.call("PUT", "/api/workspaces/edge2/webhook", json={"webhookUrl": url})
        assert response.status_code == 400, (url, response.text)
    assert a.call("GET", "/api/workspaces/edge2/webhook").json()["configured"] is False
    assert rows("SELECT webhook_url, webhook_secret FROM workspaces WHERE id = 'edge2'") == [(None, None)]


def test_EDGE_3_slow_webhook_receiver_does_not_hold_up_the_sync(acceptance: Acceptance, receiver: Receiver):
    a = acceptance
    a.sandbox.reset(sizes=TINY)
    a.workspace("edge3", ["hubspot"])
    assert a.set_webhook("edge3", receiver.url, SECRET).status_code == 200
    receiver.delay_s = 6
    job = a.run_sync("edge3", "hubspot")
    assert job["status"] == "completed"
    timed_out = wait_until(
        lambda: rows(
            "SELECT event, attempts FROM webhook_deliveries WHERE workspace_id = 'edge3' "
            "AND last_error = 'timed out after 5 s'"
        ),
        60,
        "a delivery attempt timed out",
    )
    assert timed_out and all(attempts >= 1 for _, attempts in timed_out)
    assert rows("SELECT status, records_synced FROM sync_log WHERE workspace_id = 'edge3'") == [("completed", 60)]
    assert rows("SELECT count(*) FROM deals WHERE workspace_id = 'edge3'") == [(20,)]


def test_EDGE_4_more_than_10000_records_use_bulk_api_2(acceptance: Acceptance):
    a = acceptance
    a.sandbox.reset(
        sizes={"salesforce": {"Opportunity": 1, "Contact": 1, "Account": 12_000, "Task": 1}}, enforce_limits=False
    )
    a.workspace("edge4", {"salesforce": {**SF_FAST, "bulk_max_records": 5000}})
    assert a.run_sync("edge4", "salesforce")["status"] == "completed"
    account = [
        (r["method"], r["path"].removeprefix(API))
        for r in a.sandbox.requests("salesforce")
        # "FROM Account": other objects' queries select AccountId.
        if "FROM Account" in str(r["query"].get("q", ""))
        or "FROM Account" in str((r.get("body") or {}).get("query", ""))
        or "/jobs/query" in r["path"]
    ]
    # Deleted rows are read too (queryAll): first a COUNT() to choose the API, then one Bulk job.
    assert account[0] == ("GET", "/queryAll") and account[1] == ("POST", "/jobs/query")
    assert [p for _, p in account].count("/queryAll") == 1  # no REST paging of the accounts
    assert sum(1 for _, p in account if p.endswith("/results")) == 3  # 12,000 rows in 5,000-row chunks
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM accounts WHERE workspace_id = 'edge4'") == [
        (12_000, 12_000)
    ]
    assert rows("SELECT status, records_synced FROM sync_log WHERE workspace_id = 'edge4'") == [("completed", 12_003)]


def test_EDGE_5_sync_with_no_new_data_completes_with_zero_records(acceptance: Acceptance):
    a = acceptance
    a.sandbox.reset(sizes=TINY)
    a.workspace("edge5", ["hubspot"])
    assert a.run_sync("edge5", "hubspot")["status"] == "completed"
    again = a.run_sync("edge5", "hubspot")
    assert (again["status"], again["recordsSynced"]) == ("completed", 0)
    log = rows(
        "SELECT status, mode, records_synced, watermark_to FROM sync_log WHERE workspace_id = 'edge5' ORDER BY id"
    )
    assert [r[:3] for r in log] == [("completed", "full", 60), ("completed", "incremental", 0)]
    assert log[1][3] == log[0][3]  # the watermark stays
    assert rows("SELECT count(*) FROM deals WHERE workspace_id = 'edge5'") == [(20,)]


def test_EDGE_6_lost_database_connection_is_retried_to_success(acceptance: Acceptance, pg_url: str):
    a = acceptance
    a.sandbox.reset(sizes=TINY)
    a.workspace("edge6", ["hubspot"])
    database = pg_url.rsplit("/", 1)[1]
    locker = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    holder, watcher = locker.connect(), locker.connect()
    try:
        holder.execute(text("BEGIN"))
        holder.execute(text("LOCK TABLE deals IN ACCESS EXCLUSIVE MODE"))
        job_id = a.start("edge6", "hubspot")
        blocked = text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND wait_event_type = 'Lock'")
        # The sync's first page waits on the lock inside its transaction: cut that connection.
        for pid in wait_until(lambda: watcher.execute(blocked, {"d": database}).scalars().all(), 120, "blocked sync"):
            watcher.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        holder.execute(text("COMMIT"))
    finally:
        holder.close()
        watcher.close()
        locker.dispose()

    job = a.wait_job("edge6", job_id)
    assert job["status"] == "completed"
    assert len(a.event_times(job_id, DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    log = rows("SELECT status, error FROM sync_log WHERE run_id = :r ORDER BY id", r=job_id)
    assert [s for s, _ in log] == ["failed", "completed"]
    assert log[0][1]  # the failed attempt records its error
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM deals WHERE workspace_id = 'edge6'") == [(20, 20)]
