"""The Salesforce simulator over HTTP: keyset SOQL, lifecycle (queryAll, deleted, merge, archive), describe,
commit delay, query locators and short Bulk results (see conftest.py for the sandbox process)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

V = "/services/data/v62.0"
ORDER = "ORDER BY SystemModstamp ASC, Id ASC"


class SF:
    def __init__(self, url: str, tenant: str = "default"):
        self.url, self.base = url, f"{url}/salesforce"
        creds = requests.get(f"{url}/_sandbox/connections", params={"tenant": tenant}).json()["salesforce"]
        form = {"grant_type": "refresh_token", **creds["credentials"]}
        token = requests.post(f"{self.base}/services/oauth2/token", data=form).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.base}{path}", params=params, headers=self.headers)

    def query(self, soql: str, all_rows: bool = False) -> requests.Response:
        return self.get(f"{V}/{'queryAll' if all_rows else 'query'}", q=soql)

    def records(self, soql: str, all_rows: bool = False) -> list[dict[str, Any]]:
        r = self.query(soql, all_rows)
        assert r.status_code == 200, r.text
        body, out = r.json(), []
        while True:
            out += body["records"]
            if body["done"]:
                return out
            body = requests.get(f"{self.base}{body['nextRecordsUrl']}", headers=self.headers).json()

    def mutate(self, body: dict[str, Any]) -> dict[str, Any]:
        r = requests.post(f"{self.url}/_sandbox/salesforce/mutate", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def faults(self, body: dict[str, Any]) -> dict[str, Any]:
        r = requests.post(f"{self.url}/_sandbox/salesforce/faults", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def bulk(self, soql: str, operation: str = "query") -> tuple[dict[str, Any], list[str]]:
        job = requests.post(
            f"{self.base}{V}/jobs/query", json={"operation": operation, "query": soql}, headers=self.headers
        ).json()
        info = self.get(f"{V}/jobs/query/{job['id']}").json()
        while info["state"] != "JobComplete":
            info = self.get(f"{V}/jobs/query/{job['id']}").json()
        rows, locator = [], None
        while locator != "null":
            r = self.get(f"{V}/jobs/query/{job['id']}/results", **({"locator": locator} if locator else {}))
            rows += r.text.splitlines()[1:]
            locator = r.headers["Sforce-Locator"]
        return info, rows


def opp(i: int) -> str:
    return f"006RO{i:010d}AAA"


def acct(i: int) -> str:
    return f"001RO{i:010d}AAA"


@pytest.fixture
def sf(sandbox_url: str) -> SF:
    sizes = {"salesforce": {"Opportunity": 12, "Account": 8, "Contact": 5, "Task": 6}}
    requests.post(f"{sandbox_url}/_sandbox/reset", json={"seed": 9, "sizes": sizes}).raise_for_status()
    return SF(sandbox_url)


def test_keyset_soql_pages_by_systemmodstamp_then_id(sf: SF) -> None:
    # Two opportunities share one SystemModstamp: an edit of both in one batch.
    tied = sf.mutate({"entity": "Opportunity", "ids": [opp(7), opp(3)]})["modified_at"]
    soql = f"SELECT Id, SystemModstamp FROM Opportunity WHERE SystemModstamp >= 2025-01-01T00:00:00.000Z {ORDER}"
    everything = sf.records(soql + " LIMIT 100")
    assert [r["Id"] for r in everything] == [opp(i) for i in (0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 3, 7)]
    assert everything[-1]["SystemModstamp"] == tied[:-1] + "+0000"  # 2025-...T..:..:..sss+0000
    first = sf.records(soql + " LIMIT 11")
    last = first[-1]
    assert last["Id"] == opp(3)
    stamp = last["SystemModstamp"].replace("+0000", "Z")
    keyset = (
        f"SELECT Id FROM Opportunity WHERE (SystemModstamp > {stamp} OR (SystemModstamp = {stamp} "
        f"AND Id > '{last['Id']}')) AND SystemModstamp <= 2100-01-01T00:00:00Z {ORDER} LIMIT 5"
    )
    assert [r["Id"] for r in sf.records(keyset)] == [opp(7)]
    count = sf.query(f"SELECT COUNT() FROM Opportunity WHERE SystemModstamp >= {stamp} OR Id >= '{opp(10)}'")
    assert count.json() == {"totalSize": 4, "done": True, "records": []}  # opportunities 3, 7, 10 and 11
    desc = sf.records("SELECT Id FROM Opportunity ORDER BY SystemModstamp DESC, Id DESC LIMIT 3")
    assert [r["Id"] for r in desc] == [opp(7), opp(3), opp(11)]


def test_soql_rejections(sf: SF) -> None:
    cases = {
        "SELECT Id FROM Opportunity WHERE SystemModstamp >= '2025-01-01T00:00:00Z'": "MALFORMED_QUERY",
        "SELECT Id FROM Opportunity WHERE SystemModstamp >= 2025-01-01": "MALFORMED_QUERY",
        "SELECT Id FROM Opportunity ORDER BY SystemModstamp ASC, Id DESC": "MALFORMED_QUERY",
        "SELECT MasterRecordId FROM Opportunity": "INVALID_FIELD",
        "SELECT IsArchived FROM Account": "INVALID_FIELD",
        "SELECT Id FROM Lead": "INVALID_TYPE",
    }
    for soql, code in cases.items():
        r = sf.query(soql)
        assert (r.status_code, r.json()[0]["errorCode"]) == (400, code), soql
    quoted = sf.query("SELECT Id FROM Opportunity WHERE SystemModstamp >= '2025-01-01T00:00:00Z'").json()[0]
    assert quoted["message"] == (
        "value of filter criterion for field 'SystemModstamp' must be of type dateTime and should not be "
        "enclosed in quotes"
    )
    assert sf.query("SELECT Id FROM Task WHERE LastModifiedDate > 2025-01-01T00:00:00.123Z").status_code == 200


def test_delete_moves_a_row_from_query_to_queryall_with_a_new_systemmodstamp(sf: SF) -> None:
    soql = "SELECT Id, IsDeleted, SystemModstamp FROM Opportunity ORDER BY Id"
    before = {r["Id"]: r for r in sf.records(soql)}
    deleted = sf.mutate({"entity": "Opportunity", "action": "delete", "ids": [opp(4)]})
    assert deleted["ids"] == [opp(4)]
    assert opp(4) not in {r["Id"] for r in sf.records(soql)}
    every = {r["Id"]: r for r in sf.records(soql, all_rows=True)}
    assert every[opp(4)]["IsDeleted"] is True
    assert every[opp(4)]["SystemModstamp"] == deleted["modified_at"][:-1] + "+0000"
    assert every[opp(4)]["SystemModstamp"] > before[opp(4)]["SystemModstamp"]
    assert every[opp(5)]["IsDeleted"] is False
    info, rows = sf.bulk("SELECT Id, IsDeleted FROM Opportunity", operation="queryAll")
    assert f'"{opp(4)}","true"' in rows and info["numberRecordsProcessed"] == 12
    assert len(sf.bulk("SELECT Id FROM Opportunity")[1]) == 11

    restored = sf.mutate({"entity": "Opportunity", "action": "restore", "ids": [opp(4)]})
    again = {r["Id"]: r for r in sf.records(soql)}
    assert again[opp(4)]["IsDeleted"] is False
    assert again[opp(4)]["SystemModstamp"] == restored["modified_at"][:-1] + "+0000"


def test_deleted_endpoint_lists_deletions_in_the_window(sf: SF) -> None:
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    first = sf.mutate({"entity": "Opportunity", "action": "delete", "ids": [opp(1)]})
    sf.mutate({"entity": "Opportunity", "action": "purge", "ids": [opp(1), opp(2)]})
    body = sf.get(f"{V}/sobjects/Opportunity/deleted/", start=start, end=end).json()
    assert [r["id"] for r in body["deletedRecords"]] == [opp(1), opp(2)]
    assert body["deletedRecords"][0]["deletedDate"] == first["modified_at"][:-1] + "+0000"
    assert set(body) == {"deletedRecords", "earliestDateAvailable", "latestDateCovered"}
    assert body["latestDateCovered"].endswith("+0000") and body["latestDateCovered"] < end.replace("Z", "+0000")
    ids = {r["Id"] for r in sf.records("SELECT Id FROM Opportunity", all_rows=True)}
    assert opp(1) not in ids and opp(2) not in ids  # purged: a hard delete is gone from queryAll

    too_early = sf.get(f"{V}/sobjects/Opportunity/deleted/", start="2020-01-01T00:00:00Z", end=end)
    assert too_early.status_code == 400 and too_early.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    assert sf.get(f"{V}/sobjects/Opportunity/deleted", start=start, end=end).status_code == 200
    assert sf.get(f"{V}/sobjects/Lead/deleted/", start=start, end=end).status_code == 404


def test_emptied_recycle_bin_moves_earliest_date_and_hard_deletes(sf: SF) -> None:
    sf.mutate({"entity": "Account", "action": "delete", "ids": [acct(3)]})
    shown = sf.faults({"recycle_bin_emptied_at": "now"})
    emptied = shown["recycle_bin_emptied_at"]
    assert abs(time.time() - time.mktime(time.strptime(emptied[:19], "%Y-%m-%dT%H:%M:%S")) + time.timezone) < 5
    assert acct(3) not in {r["Id"] for r in sf.records("SELECT Id FROM Account", all_rows=True)}
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    body = sf.get(f"{V}/sobjects/Account/deleted/", start=emptied, end=end).json()
    assert body["earliestDateAvailable"] == emptied[:-1] + "+0000" and body["deletedRecords"] == []
    before = sf.get(f"{V}/sobjects/Account/deleted/", start="2025-01-01T00:00:00Z", end=end)
    assert before.status_code == 400
    truth = {
        r["id"]: r["state"]
        for r in requests.get(f"{sf.url}/_sandbox/salesforce/truth?entity=Account").json()["records"]
    }
    assert truth[acct(3)] == "purged"


def test_merge_marks_losers_deleted_with_master_record_id(sf: SF) -> None:
    result = sf.mutate({"entity": "Account", "action": "merge", "ids": [acct(1), acct(2)], "into": acct(5)})
    soql = "SELECT Id, IsDeleted, MasterRecordId, SystemModstamp FROM Account ORDER BY Id"
    every = {r["Id"]: r for r in sf.records(soql, all_rows=True)}
    stamp = result["modified_at"][:-1] + "+0000"
    assert every[acct(1)] | {"attributes": None} == {
        "attributes": None,
        "Id": acct(1),
        "IsDeleted": True,
        "MasterRecordId": acct(5),
        "SystemModstamp": stamp,
    }
    assert every[acct(5)]["SystemModstamp"] == stamp and every[acct(5)]["MasterRecordId"] is None
    assert {r["Id"] for r in sf.records(soql)} == {acct(i) for i in (0, 3, 4, 5, 6, 7)}
    too_many = requests.post(
        f"{sf.url}/_sandbox/salesforce/mutate",
        json={"entity": "Account", "action": "merge", "ids": [acct(3), acct(4), acct(6)], "into": acct(0)},
    )
    assert too_many.status_code == 400


def test_archived_task_leaves_query_and_keeps_its_systemmodstamp(sf: SF) -> None:
    soql = "SELECT Id, IsArchived, IsDeleted, SystemModstamp FROM Task ORDER BY Id"
    before = {r["Id"]: r for r in sf.records(soql)}
    task = "00TRO0000000002AAA"
    sf.mutate({"entity": "Task", "action": "archive", "ids": [task]})
    assert task not in {r["Id"] for r in sf.records(soql)}
    archived = {r["Id"]: r for r in sf.records(soql, all_rows=True)}[task]
    assert (archived["IsArchived"], archived["IsDeleted"]) == (True, False)
    assert archived["SystemModstamp"] == before[task]["SystemModstamp"]


def test_describe_lists_fields_and_types(sf: SF) -> None:
    account = sf.get(f"{V}/sobjects/Account/describe").json()
    fields = {f["name"]: f["type"] for f in account["fields"]}
    assert account["name"] == "Account" and fields["MasterRecordId"] == "reference"
    assert fields["SystemModstamp"] == "datetime" and fields["IsDeleted"] == "boolean"
    opportunity = {f["name"] for f in sf.get(f"{V}/sobjects/Opportunity/describe/").json()["fields"]}
    assert "MasterRecordId" not in opportunity and "IsArchived" not in opportunity
    assert "IsArchived" in {f["name"] for f in sf.get(f"{V}/sobjects/Task/describe").json()["fields"]}
    assert sf.get(f"{V}/sobjects/Lead/describe").status_code == 404


def test_commit_delay_hides_a_stamped_row_until_it_commits(sf: SF) -> None:
    sf.faults({"commit_delay_ms": 1200})
    soql = f"SELECT Id, SystemModstamp FROM Opportunity WHERE SystemModstamp >= 2025-01-01T00:00:00Z {ORDER}"
    before = sf.records(soql)
    early = sf.mutate({"entity": "Opportunity", "ids": [opp(0)], "create": 1})
    assert sf.records(soql) == before  # stamped, not yet committed: readers see the previous version
    assert sf.query("SELECT COUNT() FROM Opportunity").json()["totalSize"] == 12
    job_info, rows = sf.bulk("SELECT Id FROM Opportunity")
    assert job_info["numberRecordsProcessed"] == 12 and f'"{opp(12)}"' not in rows
    time.sleep(0.3)
    sf.faults({"commit_delay_ms": 1})  # a quick transaction, committed a millisecond after it started
    quick = sf.mutate({"entity": "Opportunity", "ids": [opp(5)]})
    time.sleep(0.05)
    after_quick = sf.records(soql)
    assert after_quick[-1]["Id"] == opp(5) and opp(12) not in {r["Id"] for r in after_quick}
    time.sleep(1.0)
    committed = sf.records(soql)
    # The slow transaction's rows surface with SystemModstamps older than a row already read.
    assert [r["Id"] for r in committed[-3:]] == [opp(0), opp(12), opp(5)]
    assert committed[-2]["SystemModstamp"] == early["modified_at"][:-1] + "+0000"
    assert committed[-2]["SystemModstamp"] < quick["modified_at"][:-1] + "+0000"


def test_bulk_jobs_snapshot_visibility_when_created(sf: SF) -> None:
    job = requests.post(
        f"{sf.base}{V}/jobs/query",
        json={"operation": "query", "query": "SELECT Id FROM Opportunity"},
        headers=sf.headers,
    ).json()
    sf.mutate({"entity": "Opportunity", "action": "delete", "ids": [opp(0)], "create": 0})
    sf.get(f"{V}/jobs/query/{job['id']}")
    sf.get(f"{V}/jobs/query/{job['id']}")
    rows = sf.get(f"{V}/jobs/query/{job['id']}/results").text.splitlines()[1:]
    assert len(rows) == 12 and f'"{opp(0)}"' in rows


def test_bulk_short_results_drop_rows_but_report_the_full_count(sf: SF) -> None:
    sf.faults({"bulk_short_results": 3})
    info, rows = sf.bulk("SELECT Id FROM Opportunity ORDER BY Id")
    assert info["numberRecordsProcessed"] == 12 and len(rows) == 9
    assert rows == [f'"{opp(i)}"' for i in range(9)]


def test_query_locators_expire_and_an_eleventh_releases_the_oldest(sandbox_url: str) -> None:
    requests.post(f"{sandbox_url}/_sandbox/reset", json={"sizes": {"salesforce": {"Opportunity": 450}}})
    sf, other = SF(sandbox_url), SF(sandbox_url, tenant="acme")
    headers = {**sf.headers, "Sforce-Query-Options": "batchSize=200"}

    def open_query() -> str:
        r = requests.get(f"{sf.base}{V}/query", params={"q": "SELECT Id FROM Opportunity"}, headers=headers)
        return r.json()["nextRecordsUrl"]

    def more(url: str, who: SF = sf) -> requests.Response:
        return requests.get(f"{sf.base}{url}", headers={**who.headers, "Sforce-Query-Options": "batchSize=200"})

    urls = [open_query() for _ in range(10)]
    assert more(urls[0]).status_code == 200  # using a locator does not make it younger
    other_headers = {**other.headers, "Sforce-Query-Options": "batchSize=200"}
    soql = {"q": "SELECT Id FROM Opportunity"}
    other_urls = [
        requests.get(f"{sf.base}{V}/query", params=soql, headers=other_headers).json()["nextRecordsUrl"]
        for _ in range(3)
    ]
    eleventh = open_query()
    released = more(urls[0])
    assert released.status_code == 400
    assert released.json() == [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]
    assert more(urls[1]).status_code == 200 and more(eleventh).status_code == 200
    assert more(other_urls[0], other).status_code == 200  # another user's locators are their own
    assert more(urls[2], other).status_code == 400  # and nobody else's

    # A fully read query releases its locator, so it never counts toward the limit.
    page2 = more(urls[3]).json()
    last = more(page2["nextRecordsUrl"]).json()
    assert last["done"] is True and "nextRecordsUrl" not in last
    assert more(page2["nextRecordsUrl"]).status_code == 400

    sf.faults({"locator_ttl_s": 0.3, "max_open_locators": 2})
    fresh = open_query()
    time.sleep(0.5)
    expired = more(fresh)
    assert expired.status_code == 400 and expired.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
    a, b, c = open_query(), open_query(), open_query()
    assert [more(u).status_code for u in (a, b, c)] == [400, 200, 200]


def test_salesforce_fault_validation(sf: SF) -> None:
    for bad in ({"commit_delay_ms": -1}, {"max_open_locators": 0}, {"recycle_bin_emptied_at": "yesterday"}):
        assert requests.post(f"{sf.url}/_sandbox/salesforce/faults", json=bad).status_code == 400, bad
