"""Salesforce end to end: sandbox over HTTP -> client (REST or Bulk 2.0) -> sync loop -> Postgres, through Dagster."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from dagster import AssetKey

from definitions import connector_assets
from resources.http import VendorError
from resources.salesforce import SalesforceResource, soql_datetime
from resources.warehouse import WarehouseResource
from sync_assets.salesforce import COMMON_FIELDS, FIELDS
from tests.conftest import register
from tests.support import latest_metadata, rows, run_sync

SALESFORCE = next(a for a in connector_assets if AssetKey(["salesforce", "deals"]) in a.keys)
WS = "acme"
API = "/salesforce/services/data/v62.0"
FAST = {"rate_limit": False, "bulk_poll_interval_s": 0.05, "retry": {"backoff_base_s": 0.05}}
ACCOUNT_SELECT = f"SELECT {', '.join(FIELDS['Account'] + COMMON_FIELDS)} FROM Account"


def sf_id(prefix: str, index: int) -> str:
    return f"{prefix}RO{index:010d}AAA"  # the sandbox's id scheme


def metadata(instance, entity: str) -> dict[str, Any]:
    return latest_metadata(instance, f"salesforce/{entity}", WS)


def log_messages(instance, result) -> list[str]:
    return [e.user_message for e in instance.all_logs(result.run_id)]


def soql(request: dict[str, Any]) -> str:
    return request["query"]["q"]


def setup(warehouse, instance, sandbox, sizes: dict[str, int], **config: Any) -> None:
    everything = {"Opportunity": 1, "Contact": 1, "Account": 1, "Task": 1, **sizes}
    sandbox.reset(sizes={"salesforce": everything}, enforce_limits=False)
    register(warehouse, instance, sandbox, WS, ["salesforce"], **{**FAST, **config})


def test_full_then_incremental_uses_an_unquoted_systemmodstamp_watermark(warehouse, instance, sandbox):
    """QW-6."""
    setup(warehouse, instance, sandbox, {"Opportunity": 120, "Contact": 150, "Account": 60, "Task": 80})
    first = run_sync(instance, SALESFORCE, WS)
    assert first.success
    counts = dict(
        rows(
            "SELECT 'deals', count(*) FROM deals UNION ALL SELECT 'contacts', count(*) FROM contacts "
            "UNION ALL SELECT 'accounts', count(*) FROM accounts UNION ALL SELECT 'tasks', count(*) FROM tasks"
        )
    )
    assert counts == {"deals": 120, "contacts": 150, "accounts": 60, "tasks": 80}
    deals_meta = metadata(instance, "deals")
    assert (deals_meta["mode"], deals_meta["records_synced"], deals_meta["records_failed"]) == ("full", 120, 0)
    (max_modified,) = rows("SELECT max(source_updated_at) FROM deals")[0]
    watermark = datetime.fromisoformat(deals_meta["watermark"])
    assert watermark == max_modified
    deal_queries = [soql(r) for r in sandbox.requests("salesforce") if "FROM Opportunity" in soql_or_empty(r)]
    select = f"SELECT {', '.join(FIELDS['Opportunity'] + COMMON_FIELDS)} FROM Opportunity"
    assert deal_queries == ["SELECT COUNT() FROM Opportunity", f"{select} ORDER BY SystemModstamp ASC"]
    assert not any("Using incremental WHERE clause" in m for m in log_messages(instance, first))

    mutated = sandbox.mutate("salesforce", "Opportunity", 3)["ids"]
    sandbox.clear_requests("salesforce")
    second = run_sync(instance, SALESFORCE, WS)
    assert second.success

    where = f"WHERE SystemModstamp >= {soql_datetime(watermark)}"
    assert soql_datetime(watermark) == watermark.strftime("%Y-%m-%dT%H:%M:%SZ")  # unquoted literal
    deal_requests = [r for r in sandbox.requests("salesforce") if "FROM Opportunity" in soql_or_empty(r)]
    assert [(soql(r), r["status"]) for r in deal_requests] == [
        (f"SELECT COUNT() FROM Opportunity {where}", 200),
        (f"{select} {where} ORDER BY SystemModstamp ASC", 200),
    ]
    assert f"[Salesforce Client] Using incremental WHERE clause: {where} (Opportunity)" in log_messages(
        instance, second
    )
    after = metadata(instance, "deals")
    assert (after["mode"], after["records_synced"]) == ("incremental", 3)
    assert metadata(instance, "contacts")["records_synced"] == 0
    assert datetime.fromisoformat(after["watermark"]) > watermark
    synced = {r[0] for r in rows("SELECT source_id FROM deals WHERE source_updated_at > :w", w=watermark)}
    assert synced == set(mutated)
    assert rows("SELECT count(*) FROM deals") == [(120,)]
    log = rows("SELECT status, mode, records_synced FROM sync_log WHERE connector_type = 'salesforce' ORDER BY id")
    assert log == [("completed", "full", 410), ("completed", "incremental", 3)]
    (last_sync_at,) = rows("SELECT last_sync_at FROM connections WHERE workspace_id = :w", w=WS)[0]
    assert last_sync_at is not None


def soql_or_empty(request: dict[str, Any]) -> str:
    return str(request["query"].get("q", ""))


def test_more_than_10000_records_are_read_through_bulk_api_2(warehouse, instance, sandbox):
    """EDGE-4: 12,000 accounts -> one Bulk 2.0 job, polled, read in 3 locator chunks; every row once."""
    setup(warehouse, instance, sandbox, {"Account": 12_000}, bulk_max_records=5000)
    result = run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"])
    assert result.success
    log = sandbox.requests("salesforce")
    calls = [(r["method"], r["path"].removeprefix(API), r["query"], r["status"]) for r in log]
    assert calls[0][1] == "/salesforce/services/oauth2/token"
    assert calls[1] == ("GET", "/query", {"q": "SELECT COUNT() FROM Account"}, 200)
    assert calls[2][:2] == ("POST", "/jobs/query")
    job_id = calls[3][1].removeprefix("/jobs/query/")
    assert job_id.startswith("750")
    assert calls[3:] == [
        ("GET", f"/jobs/query/{job_id}", {}, 200),  # InProgress
        ("GET", f"/jobs/query/{job_id}", {}, 200),  # JobComplete
        ("GET", f"/jobs/query/{job_id}/results", {"maxRecords": "5000"}, 200),
        ("GET", f"/jobs/query/{job_id}/results", {"maxRecords": "5000", "locator": "NTAwMA"}, 200),
        ("GET", f"/jobs/query/{job_id}/results", {"maxRecords": "5000", "locator": "MTAwMDA"}, 200),
    ]
    assert log[2]["body"] == {
        "operation": "query",
        "query": ACCOUNT_SELECT,
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    }
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM accounts") == [(12_000, 12_000)]
    meta = metadata(instance, "accounts")
    assert (meta["records_synced"], meta["records_failed"], meta["mode"]) == (12_000, 0, "full")
    # Blank CSV values arrive as null, in the typed column and in the raw record alike.
    nulls, blanks, raw_nulls = rows(
        "SELECT count(*) FILTER (WHERE phone IS NULL), count(*) FILTER (WHERE phone = ''), "
        "count(*) FILTER (WHERE properties->'Phone' = 'null'::jsonb) FROM accounts"
    )[0]
    assert nulls > 0 and blanks == 0 and raw_nulls == nulls
    mismatched = "SELECT count(*) FROM accounts WHERE 'https://www.' || domain <> properties->>'Website'"
    assert rows(mismatched) == [(0,)]


def test_9000_records_are_read_through_the_rest_query(warehouse, instance, sandbox):
    """EDGE-4, the other side of the threshold: 9,000 accounts page through nextRecordsUrl."""
    setup(warehouse, instance, sandbox, {"Account": 9_000})
    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"]).success
    paths = [r["path"].removeprefix(API) for r in sandbox.requests("salesforce")][1:]
    assert not [p for p in paths if "/jobs/" in p]
    assert paths[:2] == ["/query", "/query"]
    more = paths[2:]
    assert len(more) == 4 and all(p.startswith("/query/01g") for p in more)
    assert [p.rsplit("-", 1)[1] for p in more] == ["2000", "4000", "6000", "8000"]
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM accounts") == [(9_000, 9_000)]
    assert metadata(instance, "accounts")["pages"] == 5


def test_expired_session_mid_read_refreshes_once_and_continues(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {"Account": 2_500})
    client = SalesforceResource().client_for(WarehouseResource().get_connection(WS, "salesforce"))
    pages = client.query(f"{ACCOUNT_SELECT} ORDER BY SystemModstamp ASC")
    first = next(pages).records
    sandbox.faults("salesforce", expire_tokens=True)
    second = next(pages).records
    assert (len(first), len(second)) == (2000, 500)
    assert len({r.source_id for r in first + second}) == 2_500
    calls = [(r["path"].removeprefix(API).split("/01g")[0], r["status"]) for r in sandbox.requests("salesforce")]
    assert calls == [
        ("/salesforce/services/oauth2/token", 200),
        ("/query", 200),
        ("/query", 401),
        ("/salesforce/services/oauth2/token", 200),
        ("/query", 200),
    ]


def test_request_limit_exceeded_is_throttling_backed_off_and_retried(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {"Opportunity": 120}, retry={"backoff_base_s": 0.2})
    sandbox.faults("salesforce", next_429=2)  # the sandbox's throttle answer: 403 REQUEST_LIMIT_EXCEEDED
    result = run_sync(instance, SALESFORCE, WS, selection=["salesforce/deals"])
    assert result.success
    data = [r for r in sandbox.requests("salesforce") if "/services/data/" in r["path"]]
    assert [r["status"] for r in data[:3]] == [403, 403, 200]
    assert all(soql(r) == "SELECT COUNT() FROM Opportunity" for r in data[:3])
    gaps = [(b["ts_ms"] - a["ts_ms"]) / 1000 for a, b in zip(data, data[1:3], strict=False)]
    assert 0.2 <= gaps[0] < 0.2 + 1 and 0.4 <= gaps[1] < 0.4 + 1
    messages = log_messages(instance, result)
    assert "[Salesforce Client] Rate limited (403), retrying in 200ms" in messages
    assert "[Salesforce Client] Rate limited (403), retrying in 400ms" in messages
    assert rows("SELECT count(*) FROM deals") == [(120,)]


def test_persistent_request_limit_fails_with_salesforces_error(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {}, retry={"backoff_base_s": 0.05, "max_retries": 1})
    sandbox.faults("salesforce", rate_429=1.0)
    assert not run_sync(instance, SALESFORCE, WS, selection=["salesforce/deals"]).success
    assert rows("SELECT status, error FROM sync_log") == [
        (
            "failed",
            "[Salesforce] Rate limited (403) on GET /services/data/v62.0/query; gave up after 1 retries: "
            "HTTP 403 REQUEST_LIMIT_EXCEEDED on GET /services/data/v62.0/query: TotalRequests Limit exceeded.",
        )
    ]


def test_failed_bulk_job_fails_the_sync_naming_the_job(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {"Account": 60}, bulk_threshold=50)
    sandbox.faults("salesforce", fail_bulk_jobs=1)
    result = run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"])
    assert not result.success
    polls = [r["path"] for r in sandbox.requests("salesforce") if "/jobs/query/" in r["path"]]
    job_id = polls[0].rsplit("/", 1)[1]
    assert polls == [f"{API}/jobs/query/{job_id}"] * 2  # InProgress, then Failed; results never read
    assert rows("SELECT status, error FROM sync_log") == [
        (
            "failed",
            f"[Salesforce] Bulk API 2.0 query job {job_id} (Account) ended Failed: "
            "Failed to process query: FUNCTIONALITY_TEMPORARILY_UNAVAILABLE",
        )
    ]
    assert rows("SELECT count(*) FROM accounts") == [(0,)]


@pytest.mark.parametrize("path", ["bulk", "rest"])
def test_bad_record_is_captured_per_record(warehouse, instance, sandbox, path):
    """LW-1 on both read paths: a malformed SystemModstamp dead-letters that record only."""
    setup(warehouse, instance, sandbox, {"Account": 60}, bulk_threshold=50 if path == "bulk" else 10_000)
    bad_id = sf_id("001", 5)
    sandbox.faults("salesforce", bad_records=[bad_id])
    result = run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"])
    assert result.success
    used_bulk = any("/jobs/query" in r["path"] for r in sandbox.requests("salesforce"))
    assert used_bulk == (path == "bulk")
    assert rows("SELECT count(*) FROM accounts") == [(59,)]
    error = f"Account: source_updated_at: Value error, Invalid isoformat string: 'not-a-date' ({bad_id})"
    assert rows("SELECT status, records_failed, errors FROM sync_log") == [("completed_with_errors", 1, [error])]
    ((entity, source_id, dead_error, payload),) = rows("SELECT entity, source_id, error, payload FROM sync_errors")
    assert (entity, source_id, dead_error) == ("accounts", bad_id, error)
    assert payload["Id"] == bad_id and payload["SystemModstamp"] == "not-a-date"
    assert metadata(instance, "accounts")["records_failed"] == 1


def test_salesforce_errors_surface_error_code_and_message(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {})
    client = SalesforceResource().client_for(WarehouseResource().get_connection(WS, "salesforce"))
    with pytest.raises(VendorError) as quoted:
        client.count("Account", " WHERE SystemModstamp >= '2025-01-01T00:00:00Z'")
    assert str(quoted.value) == (
        "[Salesforce] HTTP 400 MALFORMED_QUERY on GET /services/data/v62.0/query: value of filter criterion for "
        "field 'SystemModstamp' must be of type dateTime and should not be enclosed in quotes"
    )
    assert client.count("Account", " WHERE SystemModstamp >= 2025-01-01T00:00:00Z") == 1
