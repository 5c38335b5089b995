"""HubSpot archive / restore / merge / purge and the search index lag, over HTTP (see conftest.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from conftest import Sandbox

DEALS = "/crm/v3/objects/deals"


def deal_id(index: int) -> str:
    return str(30_000_000 + index)


def get(sb: Sandbox, token: str, path: str, **params: Any) -> requests.Response:
    return sb.http.get(f"{sb.hubspot}{path}", params=params, headers={"Authorization": f"Bearer {token}"})


def search(sb: Sandbox, token: str, body: dict[str, Any]) -> dict[str, Any]:
    r = sb.http.post(f"{sb.hubspot}{DEALS}/search", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def list_ids(sb: Sandbox, token: str, **params: Any) -> list[str]:
    out, after = [], None
    while True:
        page = get(sb, token, DEALS, limit=7, **params, **({"after": after} if after else {})).json()
        out += [r["id"] for r in page["results"]]
        if "paging" not in page:
            return out
        after = page["paging"]["next"]["after"]


def search_ids(sb: Sandbox, token: str, **extra: Any) -> list[str]:
    body = {"sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}], "limit": 200, **extra}
    return [r["id"] for r in search(sb, token, body)["results"]]


def mutate(sb: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    return sb.control("POST", "hubspot/mutate", {"entity": "deals", **body})


def test_archived_deal_leaves_list_search_and_get_and_is_listed_with_archived_true(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 20})
    token = sandbox.token()
    before = get(sandbox, token, f"{DEALS}/{deal_id(3)}").json()
    result = mutate(sandbox, {"action": "archive", "ids": [deal_id(3), deal_id(15)]})
    assert (result["ids"], result["created_ids"], result["modified_at"]) == ([deal_id(3), deal_id(15)], [], None)

    expected_live = [deal_id(i) for i in range(20) if i not in (3, 15)]
    assert list_ids(sandbox, token) == expected_live
    assert sorted(search_ids(sandbox, token)) == expected_live
    missing = get(sandbox, token, f"{DEALS}/{deal_id(3)}")
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"

    archived = get(sandbox, token, DEALS, archived="true", limit=1).json()
    (first,) = archived["results"]
    assert first["id"] == deal_id(3) and first["archived"] is True
    assert first["updatedAt"] == before["updatedAt"]  # archiving leaves hs_lastmodifieddate alone
    assert first["properties"]["hs_lastmodifieddate"] == before["properties"]["hs_lastmodifieddate"]
    assert abs(time.time() - _epoch(first["archivedAt"])) < 5
    second = get(sandbox, token, DEALS, archived="true", limit=1, after=archived["paging"]["next"]["after"]).json()
    assert [r["id"] for r in second["results"]] == [deal_id(15)] and "paging" not in second
    assert get(sandbox, token, f"{DEALS}/{deal_id(3)}", archived="true").json()["archivedAt"] == first["archivedAt"]


def test_delete_is_archive_and_restore_bumps_the_modified_time(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 10})
    token = sandbox.token()
    mutate(sandbox, {"action": "delete", "count": 2})  # the two least recently modified
    assert list_ids(sandbox, token, archived="true") == [deal_id(0), deal_id(1)]
    restored = mutate(sandbox, {"action": "restore", "ids": [deal_id(1)]})
    assert restored["ids"] == [deal_id(1)] and restored["modified_at"] is not None
    assert list_ids(sandbox, token, archived="true") == [deal_id(0)]
    record = get(sandbox, token, f"{DEALS}/{deal_id(1)}").json()
    assert record["archived"] is False and "archivedAt" not in record
    assert record["updatedAt"] == restored["modified_at"]
    assert search_ids(sandbox, token)[-1] == deal_id(1)  # newest by modified time
    again = sandbox.http.post(
        f"{sandbox.url}/_sandbox/hubspot/mutate", json={"entity": "deals", "action": "restore", "ids": [deal_id(1)]}
    )
    assert again.status_code == 400 and "is live" in again.json()["error"]


def test_merge_hides_losers_everywhere_and_get_answers_the_survivor(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 10})
    token = sandbox.token()
    first = mutate(sandbox, {"action": "merge", "ids": [deal_id(2)], "into": deal_id(5)})
    assert first["hs_merged_object_ids"] == deal_id(2) and first["merged_into"] == deal_id(5)
    second = mutate(sandbox, {"action": "merge", "ids": [deal_id(7), deal_id(8)], "into": deal_id(5)})
    assert second["hs_merged_object_ids"] == f"{deal_id(2)};{deal_id(7)};{deal_id(8)}"

    live = list_ids(sandbox, token)
    assert live == [deal_id(i) for i in (0, 1, 3, 4, 5, 6, 9)]
    assert sorted(search_ids(sandbox, token)) == live
    assert list_ids(sandbox, token, archived="true") == []
    via_loser = get(sandbox, token, f"{DEALS}/{deal_id(7)}", properties="hs_merged_object_ids").json()
    assert via_loser["id"] == deal_id(5)
    assert via_loser["properties"]["hs_merged_object_ids"] == f"{deal_id(2)};{deal_id(7)};{deal_id(8)}"
    assert via_loser["updatedAt"] == second["modified_at"]
    plain = get(sandbox, token, f"{DEALS}/{deal_id(5)}").json()
    assert "hs_merged_object_ids" not in plain["properties"]  # not a default property
    asked = search(sandbox, token, {"properties": ["hs_merged_object_ids"], "limit": 200})["results"]
    by_id = {r["id"]: r["properties"]["hs_merged_object_ids"] for r in asked}
    assert by_id[deal_id(5)] == f"{deal_id(2)};{deal_id(7)};{deal_id(8)}" and by_id[deal_id(0)] is None
    truth = {r["id"]: r for r in sandbox.control("GET", "hubspot/truth?entity=deals")["records"]}
    assert truth[deal_id(7)] == {
        "id": deal_id(7),
        "modified": truth[deal_id(7)]["modified"],
        "state": "merged",
        "merged_into": deal_id(5),
    }


def test_purge_removes_a_record_everywhere(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 5})
    token = sandbox.token()
    mutate(sandbox, {"action": "purge", "ids": [deal_id(4)]})
    assert list_ids(sandbox, token) == [deal_id(i) for i in range(4)]
    assert deal_id(4) not in search_ids(sandbox, token)
    assert list_ids(sandbox, token, archived="true") == []
    assert get(sandbox, token, f"{DEALS}/{deal_id(4)}").status_code == 404
    assert get(sandbox, token, f"{DEALS}/{deal_id(4)}", archived="true").status_code == 404


def test_lifecycle_validation(sandbox: Sandbox) -> None:
    post = sandbox.http.post
    url = f"{sandbox.url}/_sandbox/hubspot/mutate"

    def rejected(body: dict[str, Any]) -> str:
        r = post(url, json={"entity": "deals", **body})
        assert r.status_code == 400, r.text
        return r.json()["error"]

    assert "not supported for deals" in rejected({"action": "trash", "ids": [deal_id(1)]})
    assert "needs ids" in rejected({"action": "merge", "into": deal_id(1)})
    assert "into" in rejected({"action": "merge", "ids": [deal_id(1)]})
    assert "into itself" in rejected({"action": "merge", "ids": [deal_id(1)], "into": deal_id(1)})
    assert "unknown action" in rejected({"action": "explode"})
    assert "unknown mutate fields" in rejected({"cuont": 1})
    assert "modified_time" in rejected({"ids": [deal_id(1)], "modified_time": "2025-01-01T00:00:00Z"})
    mutate(sandbox, {"action": "archive", "ids": [deal_id(1)]})
    assert "is archived" in rejected({"ids": [deal_id(1)]})  # an archived record cannot be edited


def test_search_index_lag_serves_the_previous_version_until_the_lag_passes(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 10})
    token = sandbox.token()
    old = {r["id"]: r for r in search(sandbox, token, {"limit": 200})["results"]}
    sandbox.control("POST", "hubspot/faults", {"search_index_lag_ms": 1500})
    edited = mutate(sandbox, {"ids": [deal_id(0)], "create": 1})
    mutate(sandbox, {"action": "archive", "ids": [deal_id(1)]})

    lagging = {r["id"]: r for r in search(sandbox, token, {"limit": 200})["results"]}
    assert set(lagging) == set(old)  # the created deal is missing, the archived one still shows
    assert lagging[deal_id(0)] == old[deal_id(0)]  # old properties and old hs_lastmodifieddate
    assert lagging[deal_id(1)] == old[deal_id(1)]
    newer = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": edited["modified_at"]}]}
        ]
    }
    assert search(sandbox, token, newer)["total"] == 0  # it matches (and sorts) by its old time
    # List and GET see the changes at once.
    assert deal_id(10) in list_ids(sandbox, token) and deal_id(1) not in list_ids(sandbox, token)
    assert get(sandbox, token, f"{DEALS}/{deal_id(0)}").json()["updatedAt"] == edited["modified_at"]

    time.sleep(1.6)
    caught_up = search(sandbox, token, newer)
    assert [r["id"] for r in caught_up["results"]] == [deal_id(0), deal_id(10)]
    assert deal_id(1) not in search_ids(sandbox, token)


def test_clearing_the_lag_publishes_pending_changes(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 3})
    token = sandbox.token()
    sandbox.control("POST", "hubspot/faults", {"search_index_lag_ms": 60_000})
    mutate(sandbox, {"create": 1})
    assert search(sandbox, token, {})["total"] == 3
    assert sandbox.control("GET", "hubspot/faults")["search_index_lag_ms"] == 60_000
    sandbox.control("DELETE", "hubspot/faults")
    assert "search_index_lag_ms" not in sandbox.control("GET", "hubspot/faults")
    assert search(sandbox, token, {})["total"] == 4


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
