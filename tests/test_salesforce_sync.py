"""Salesforce's own behaviour, against the sandbox over HTTP through the real assets: ``describe`` first (which
lifecycle fields the object has), then ``COUNT()`` picks the read path (one Bulk API 2.0 job above the
threshold, keyset-paged SOQL below it), every read a ``queryAll``, SOQL's unquoted datetime literals, the
``deleted`` endpoint's window, throttling as 403 REQUEST_LIMIT_EXCEEDED, Bulk jobs that fail or come back
short, Salesforce's error codes, and bad records on either path. What every connector does is in
tests/contract."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dagster import AssetKey
from sqlalchemy import text

from definitions import connector_assets
from resources.http import VendorError
from resources.salesforce import SalesforceResource, soql_datetime
from resources.warehouse import WarehouseResource
from sync_assets.salesforce import CONNECTOR, FIELDS
from sync_assets.watermark import ReadWindow
from tests.conftest import register
from tests.support import latest_metadata, rows, run_sync

SALESFORCE = next(a for a in connector_assets if AssetKey(["salesforce", "deals"]) in a.keys)
WS = "acme"
API = "/salesforce/services/data/v62.0"
FAST = {"bulk_poll_interval_s": 0.05, "retry": {"backoff_base_s": 0.05}}
ORDER = "ORDER BY SystemModstamp ASC, Id ASC"
# What every read selects besides the object's own fields, and the lifecycle fields describe lists for it.
COMMON = ["CreatedDate", "SystemModstamp", "IsDeleted"]
LIFECYCLE = {"Opportunity": [], "Contact": ["MasterRecordId"], "Account": ["MasterRecordId"], "Task": ["IsArchived"]}
SAFETY_LAG = timedelta(minutes=10)

# The sandbox is this suite's alone: its platform rate limit is off, as an operator would set it.
pytestmark = pytest.mark.usefixtures("unlimited")


def select(sobject: str) -> str:
    return f"SELECT {', '.join(FIELDS[sobject] + COMMON + LIFECYCLE[sobject])} FROM {sobject}"


def account_id(index: int) -> str:
    return f"001RO{index:010d}AAA"  # the sandbox's id scheme


def metadata(instance, entity: str) -> dict[str, Any]:
    return latest_metadata(instance, f"salesforce/{entity}", WS)


def log_messages(instance, result) -> list[str]:
    return [e.user_message for e in instance.all_logs(result.run_id)]


def data_requests(sandbox) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests("salesforce") if r["path"].startswith(API)]


def soql_sent(sandbox) -> list[str]:
    return [r["query"]["q"] for r in data_requests(sandbox) if r["path"] == f"{API}/queryAll"]


def deleted_windows(sandbox, sobject: str) -> list[tuple[datetime, datetime]]:
    """(start, end) of each request to the object's ``deleted`` endpoint."""
    path = f"{API}/sobjects/{sobject}/deleted/"
    return [
        (datetime.fromisoformat(r["query"]["start"]), datetime.fromisoformat(r["query"]["end"]))
        for r in data_requests(sandbox)
        if r["path"] == path
    ]


def started_at(instance, entity: str) -> datetime:
    """When (by Salesforce's clock) the entity's latest read began."""
    return datetime.fromtimestamp(metadata(instance, entity)["read_started_at"], UTC)


def setup(warehouse, instance, sandbox, sizes: dict[str, int], **config: Any) -> None:
    everything = {"Opportunity": 1, "Contact": 1, "Account": 1, "Task": 1, **sizes}
    sandbox.reset(sizes={"salesforce": everything}, enforce_limits=False)
    register(warehouse, instance, sandbox, WS, ["salesforce"], **{**FAST, **config})


def keyset_after(record: dict[str, str]) -> str:
    """The continuation a keyset query puts after a record (the truth's ``modified`` is SystemModstamp)."""
    stamp = record["modified"]
    return f"(SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > '{record['id']}'))"


def test_more_than_10000_records_are_read_by_one_bulk_job_in_locator_chunks(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {"Account": 12_000}, bulk_max_records=5000)
    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"]).success
    log = data_requests(sandbox)
    calls = [(r["method"], r["path"].removeprefix(API), r["query"], r["status"]) for r in log]
    job_id = calls[3][1].removeprefix("/jobs/query/")
    assert job_id.startswith("750")
    assert calls == [
        ("GET", "/sobjects/Account/describe", {}, 200),
        ("GET", "/queryAll", {"q": "SELECT COUNT() FROM Account"}, 200),
        ("POST", "/jobs/query", {}, 200),
        ("GET", f"/jobs/query/{job_id}", {}, 200),  # InProgress
        ("GET", f"/jobs/query/{job_id}", {}, 200),  # JobComplete
        ("GET", f"/jobs/query/{job_id}/results", {"maxRecords": "5000"}, 200),
        ("GET", f"/jobs/query/{job_id}/results", {"maxRecords": "5000", "locator": "NTAwMA"}, 200),
        ("GET", f"/jobs/query/{job_id}/results", {"maxRecords": "5000", "locator": "MTAwMDA"}, 200),
    ]
    assert log[2]["body"] == {
        "operation": "queryAll",  # deleted and merged rows too (IsDeleted, MasterRecordId)
        "query": select("Account"),
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    }
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM accounts") == [(12_000, 12_000)]
    meta = metadata(instance, "accounts")
    assert (meta["mode"], meta["records_synced"], meta["records_failed"]) == ("full", 12_000, 0)
    # Blank CSV values arrive as null, in the typed column and in the raw record alike.
    nulls, blanks, raw_nulls = rows(
        "SELECT count(*) FILTER (WHERE phone IS NULL), count(*) FILTER (WHERE phone = ''), "
        "count(*) FILTER (WHERE properties->'Phone' = 'null'::jsonb) FROM accounts"
    )[0]
    assert nulls > 0 and blanks == 0 and raw_nulls == nulls
    assert rows("SELECT count(*) FROM accounts WHERE 'https://www.' || domain <> properties->>'Website'") == [(0,)]


def test_fewer_records_are_read_by_keyset_soql_holding_no_query_locator(warehouse, instance, sandbox):
    """Each query asks for the rows after the last one read, ``LIMIT 2000``: never a ``nextRecordsUrl``."""
    setup(warehouse, instance, sandbox, {"Account": 9_000})
    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"]).success
    in_order = sorted(sandbox.truth("salesforce", "Account"), key=lambda r: (r["modified"], r["id"]))
    keyset = [""] + [f" WHERE {keyset_after(in_order[n - 1])}" for n in (2000, 4000, 6000, 8000)]
    assert soql_sent(sandbox) == [
        "SELECT COUNT() FROM Account",
        *(f"{select('Account')}{where} {ORDER} LIMIT 2000" for where in keyset),
    ]
    assert [r["path"] for r in data_requests(sandbox)] == [f"{API}/sobjects/Account/describe"] + [f"{API}/queryAll"] * 6
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM accounts") == [(9_000, 9_000)]
    assert metadata(instance, "accounts")["pages"] == 5


def test_an_incremental_read_filters_systemmodstamp_with_an_unquoted_literal(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {"Opportunity": 120}, query_page_size=50)
    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/deals"]).success
    watermark = datetime.fromtimestamp(metadata(instance, "deals")["watermark"], UTC)
    newest = max(sandbox.truth("salesforce", "Opportunity"), key=lambda r: r["modified"])
    assert watermark == datetime.fromisoformat(newest["modified"])  # the dataset lies in the past
    full_started = started_at(instance, "deals")
    sandbox.mutate("salesforce", "Opportunity", 3)
    sandbox.clear_requests("salesforce")

    result = run_sync(instance, SALESFORCE, WS, selection=["salesforce/deals"])
    assert result.success
    where = f"SystemModstamp >= {watermark.strftime('%Y-%m-%dT%H:%M:%SZ')}"  # floored to the second, unquoted
    assert soql_datetime(watermark) in where
    assert soql_sent(sandbox) == [
        f"SELECT COUNT() FROM Opportunity WHERE {where}",
        f"{select('Opportunity')} WHERE {where} {ORDER} LIMIT 50",
    ]
    assert [r["path"].removeprefix(API) for r in data_requests(sandbox)] == [
        "/sobjects/Opportunity/describe",
        "/queryAll",
        "/queryAll",
        "/sobjects/Opportunity/deleted/",  # hard deletes leave no row: asked for the window
    ]
    [(start, _)] = deleted_windows(sandbox, "Opportunity")
    assert start == full_started - SAFETY_LAG
    assert f"[Salesforce Client] Using incremental WHERE clause: WHERE {where} (Opportunity)" in log_messages(
        instance, result
    )
    meta = metadata(instance, "deals")
    # The newest deal of the full sync is read again (unchanged, not counted) with the three edits.
    assert (meta["mode"], meta["records_synced"], meta["records_reread"]) == ("incremental", 3, 1)


def test_the_deleted_endpoints_window_starts_at_the_previous_read_start_less_the_lag(warehouse, instance, sandbox):
    """Hard deletes leave no row, so an incremental read asks ``sobjects/{type}/deleted`` from where the previous
    read began, less the 10-minute lag (a deletion committing late, stamped before that read): not from the
    watermark, which stays at the newest record however long nothing changes, while Salesforce lists
    deletions for 15 days only. Each window reaches the latest response, so consecutive windows overlap."""
    setup(warehouse, instance, sandbox, {"Opportunity": 30})
    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/deals"]).success
    assert deleted_windows(sandbox, "Opportunity") == []  # a full read sweeps instead
    watermark, full_started = metadata(instance, "deals")["watermark"], started_at(instance, "deals")
    assert datetime.fromtimestamp(watermark, UTC) < full_started - SAFETY_LAG  # the dataset lies in the past
    sandbox.clear_requests("salesforce")

    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/deals"]).success
    [(start, end)] = deleted_windows(sandbox, "Opportunity")
    second_started = started_at(instance, "deals")
    assert start == full_started - SAFETY_LAG
    assert start < second_started <= end
    meta = metadata(instance, "deals")
    assert (meta["mode"], meta["watermark"], meta["records_deleted"]) == ("incremental", watermark, 0)
    sandbox.clear_requests("salesforce")

    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/deals"]).success
    [(start, _)] = deleted_windows(sandbox, "Opportunity")
    assert start == second_started - SAFETY_LAG < end  # the watermark stayed; the window moved on
    assert metadata(instance, "deals")["watermark"] == watermark


def test_a_deletion_in_the_same_second_as_the_latest_response_is_listed(warehouse, instance, sandbox):
    """The ``Date`` header floors the vendor's time to whole seconds, so a purge made a moment after the
    latest response can carry a later ``deletedDate`` than that header: the deleted window reaches the
    next whole second, or a sync run right after the purge would leave the row live."""
    setup(warehouse, instance, sandbox, {"Opportunity": 3})
    client = SalesforceResource().client_for(WarehouseResource().get_connection(WS, "salesforce"))
    read_deals = CONNECTOR.entities[0].read
    purged = sandbox.truth("salesforce", "Opportunity")[0]["id"]
    while time.time() % 1 > 0.2:  # early in a second, so the purge below lands in the header's second
        time.sleep(0.01)
    client.count("Opportunity", "")  # the latest response: its Date is this second, floored
    purged_at = datetime.fromisoformat(
        sandbox.mutate("salesforce", "Opportunity", action="purge", ids=[purged])["changed_at"]
    )

    window = ReadWindow(since=datetime.now(UTC), deleted_since=datetime.now(UTC) - SAFETY_LAG)
    pages = list(read_deals(client, window))
    assert [d.source_id for page in pages for d in page.deletions] == [purged]
    [(_, end)] = deleted_windows(sandbox, "Opportunity")
    assert end > purged_at


def test_request_limit_exceeded_403_is_throttling_backed_off_and_retried(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {"Opportunity": 120}, retry={"backoff_base_s": 0.2})
    sandbox.faults("salesforce", next_429=2)  # the sandbox's throttle answer: 403 REQUEST_LIMIT_EXCEEDED
    result = run_sync(instance, SALESFORCE, WS, selection=["salesforce/deals"])
    assert result.success
    data = data_requests(sandbox)
    describe = f"{API}/sobjects/Opportunity/describe"
    assert [(r["status"], r["path"], r["query"]) for r in data[:4]] == [(403, describe, {})] * 2 + [
        (200, describe, {}),
        (200, f"{API}/queryAll", {"q": "SELECT COUNT() FROM Opportunity"}),
    ]
    retries = [m for m in log_messages(instance, result) if m.startswith("[Salesforce Client] Rate limited")]
    assert retries == [
        "[Salesforce Client] Rate limited (403), retrying in 200ms",
        "[Salesforce Client] Rate limited (403), retrying in 400ms",
    ]
    assert rows("SELECT count(*) FROM deals") == [(120,)]


def test_persistent_request_limit_fails_quoting_salesforces_code_and_message(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {}, retry={"backoff_base_s": 0.05, "max_retries": 1})
    sandbox.faults("salesforce", rate_429=1.0)
    assert not run_sync(instance, SALESFORCE, WS, selection=["salesforce/deals"]).success
    assert rows("SELECT status, error FROM sync_log") == [
        (
            "failed",
            "[Salesforce] Rate limited (403) on GET /services/data/v62.0/sobjects/Opportunity/describe; gave up "
            "after 1 retries: REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
        )
    ]


def test_a_failed_bulk_job_fails_the_sync_naming_the_job(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {"Account": 60}, bulk_threshold=50)
    sandbox.faults("salesforce", fail_bulk_jobs=1)
    assert not run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"]).success
    polls = [r["path"] for r in data_requests(sandbox) if "/jobs/query/" in r["path"]]
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


def test_a_short_bulk_read_fails_the_entity_and_keeps_its_watermark(warehouse, instance, sandbox):
    """Results that stop short of the job's ``numberRecordsProcessed`` (a truncated download) fail the
    entity: the rows read are kept, but the watermark stays, so the next sync reads the window again."""
    setup(warehouse, instance, sandbox, {"Account": 60}, bulk_threshold=10)
    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"]).success
    first = metadata(instance, "accounts")
    edited = [account_id(i) for i in range(40, 60)]  # the last 20 in the job's (id) order
    sandbox.mutate("salesforce", "Account", ids=edited)
    sandbox.faults("salesforce", bulk_short_results=1)
    sandbox.clear_requests("salesforce")

    assert not run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"]).success
    [(status, error)] = rows("SELECT status, error FROM sync_log WHERE status = 'failed'")
    job_id = next(r["path"] for r in data_requests(sandbox) if r["path"].endswith("/results")).split("/")[-2]
    assert error == f"[Salesforce] Bulk API 2.0 query job {job_id} (Account) returned 19 rows; the job processed 20"
    assert metadata(instance, "accounts") == first  # no new materialization: the watermark stays
    revised = "SELECT source_id FROM accounts WHERE properties->>'Name' LIKE '% (rev 1)' ORDER BY source_id"
    assert [r[0] for r in rows(revised)] == edited[:-1]  # the rows read before the shortfall are kept

    sandbox.clear_faults("salesforce")
    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"]).success
    meta = metadata(instance, "accounts")
    assert (meta["mode"], meta["records_synced"], meta["records_reread"]) == ("incremental", 1, 19)
    assert [r[0] for r in rows(revised)] == edited


@pytest.mark.parametrize("path", ["bulk", "rest"])
def test_a_bad_record_is_dead_lettered_on_either_read_path(warehouse, instance, sandbox, path):
    """A malformed SystemModstamp in a Bulk CSV row or in a REST JSON record dead-letters that record only."""
    setup(warehouse, instance, sandbox, {"Account": 60}, bulk_threshold=50 if path == "bulk" else 10_000)
    bad_id = account_id(5)
    sandbox.faults("salesforce", bad_records=[bad_id])
    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"]).success
    used_bulk = any("/jobs/query" in r["path"] for r in data_requests(sandbox))
    assert used_bulk == (path == "bulk")
    assert rows("SELECT count(*) FROM accounts") == [(59,)]
    error = f"Account: source_updated_at: not an ISO-8601 timestamp or epoch milliseconds in range ({bad_id})"
    assert rows("SELECT status, records_failed, errors FROM sync_log") == [("completed_with_errors", 1, [error])]
    [(entity, source_id, dead_error, payload)] = rows("SELECT entity, source_id, error, payload FROM sync_errors")
    assert (entity, source_id, dead_error) == ("accounts", bad_id, error)
    assert payload["Id"] == bad_id and payload["SystemModstamp"] == "not-a-date"


def test_a_malformed_record_ending_a_keyset_page_does_not_stop_the_paging(warehouse, instance, sandbox):
    """The next keyset query starts after the page's last readable row; the malformed one is read once."""
    setup(warehouse, instance, sandbox, {"Account": 60}, query_page_size=20)
    in_order = sorted(sandbox.truth("salesforce", "Account"), key=lambda r: (r["modified"], r["id"]))
    bad_id = in_order[19]["id"]  # the last row of the first page
    sandbox.faults("salesforce", bad_records=[bad_id])
    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/accounts"]).success
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM accounts") == [(59, 59)]
    assert rows("SELECT source_id FROM sync_errors") == [(bad_id,)]


def test_soql_errors_surface_salesforces_code_and_message(warehouse, instance, sandbox):
    setup(warehouse, instance, sandbox, {})
    client = SalesforceResource().client_for(WarehouseResource().get_connection(WS, "salesforce"))
    with pytest.raises(VendorError) as quoted:
        client.count("Account", " WHERE SystemModstamp >= '2025-01-01T00:00:00Z'")
    assert str(quoted.value) == (
        "[Salesforce] HTTP 400 MALFORMED_QUERY on GET /services/data/v62.0/queryAll: value of filter criterion "
        "for field 'SystemModstamp' must be of type dateTime and should not be enclosed in quotes"
    )
    assert (quoted.value.status, quoted.value.code) == (400, "MALFORMED_QUERY")
    assert client.count("Account", " WHERE SystemModstamp >= 2025-01-01T00:00:00Z") == 1


def test_a_listed_deletion_older_than_the_stored_version_is_asked_of_salesforce(warehouse, instance, sandbox):
    """A deletion dated before the version the warehouse holds is either stale (deleted, then restored and
    read again) or a disagreement of clocks: never dropped on its date alone, it is asked of Salesforce by id."""
    setup(warehouse, instance, sandbox, {"Contact": 3})
    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/contacts"]).success
    gone, kept, _ = sorted(r["id"] for r in sandbox.truth("salesforce", "Contact"))
    ahead = datetime.now(UTC) + timedelta(hours=1)  # a version stamped after the purge that follows
    with warehouse.begin() as conn:
        conn.execute(
            text("UPDATE contacts SET source_updated_at = :t WHERE source_id IN (:a, :b)"),
            {"t": ahead, "a": gone, "b": kept},
        )
    sandbox.mutate("salesforce", "Contact", action="purge", ids=[gone])
    sandbox.clear_requests("salesforce")

    assert run_sync(instance, SALESFORCE, WS, selection=["salesforce/contacts"]).success
    assert f"{select('Contact')} WHERE Id IN ('{gone}')" in soql_sent(sandbox)  # the one id in doubt
    assert rows("SELECT source_id, is_deleted FROM contacts ORDER BY source_id") == sorted(
        [(gone, True), (kept, False), (_, False)]
    )
    assert metadata(instance, "contacts")["records_deleted"] == 1
