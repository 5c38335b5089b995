"""Control-API additions over HTTP: mutate actions, truth, the vendor clock (Date header, clock_offset_s),
mutate_after_requests triggers, and clearing knobs (see conftest.py for the sandbox process)."""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from conftest import Sandbox

DEALS = "/crm/v3/objects/deals"


def deal_id(index: int) -> str:
    return str(30_000_000 + index)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def dates(response: requests.Response) -> list[str]:
    return response.raw.headers.getlist("Date")


def test_every_vendor_response_carries_exactly_one_date_header_from_the_vendor_clock(sandbox: Sandbox) -> None:
    token = sandbox.token()
    ok = sandbox.http.get(f"{sandbox.hubspot}{DEALS}", headers={"Authorization": f"Bearer {token}"})
    denied = sandbox.http.get(f"{sandbox.hubspot}{DEALS}")
    refresh = sandbox.refresh()
    unknown = sandbox.http.get(f"{sandbox.hubspot}/no/such/path", headers={"Authorization": f"Bearer {token}"})
    control = sandbox.http.get(f"{sandbox.url}/_sandbox/health")
    for r in (ok, denied, refresh, unknown, control):
        (value,) = dates(r)
        assert abs(parsedate_to_datetime(value).timestamp() - time.time()) < 3, value
    assert [r.status_code for r in (ok, denied, refresh, unknown)] == [200, 401, 200, 404]
    assert dates(ok)[0].endswith(" GMT") and len(dates(ok)[0]) == 29  # e.g. "Sun, 06 Nov 1994 08:49:37 GMT"


def test_clock_offset_moves_the_date_header_and_every_mutation_stamp(sandbox: Sandbox) -> None:
    sandbox.control("POST", "hubspot/faults", {"clock_offset_s": -3600})
    assert sandbox.control("GET", "hubspot/faults")["clock_offset_s"] == -3600
    token = sandbox.token()
    r = sandbox.http.get(f"{sandbox.hubspot}{DEALS}", headers={"Authorization": f"Bearer {token}"})
    assert abs(parsedate_to_datetime(dates(r)[0]).timestamp() - (time.time() - 3600)) < 3
    edited = sandbox.control("POST", "hubspot/mutate", {"entity": "deals", "ids": [deal_id(1)]})
    assert abs(epoch(edited["modified_at"]) - (time.time() - 3600)) < 3
    archived = sandbox.control("POST", "hubspot/mutate", {"entity": "deals", "action": "archive", "ids": [deal_id(2)]})
    record = sandbox.http.get(
        f"{sandbox.hubspot}{DEALS}/{deal_id(2)}",
        params={"archived": "true"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert record["archivedAt"] == archived["changed_at"]
    assert abs(epoch(record["archivedAt"]) - (time.time() - 3600)) < 3
    other = sandbox.http.get(f"{sandbox.url}/salesforce/services/data/v62.0/query")
    assert abs(parsedate_to_datetime(dates(other)[0]).timestamp() - time.time()) < 3  # per vendor
    sandbox.control("DELETE", "hubspot/faults")
    assert sandbox.control("GET", "hubspot/faults")["clock_offset_s"] == 0


def test_mutate_after_requests_edits_between_two_pages(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 30})
    token = sandbox.token()
    trigger = {"after": 1, "path_contains": "/search", "mutation": {"entity": "deals", "ids": [deal_id(2)]}}
    shown = sandbox.control("POST", "hubspot/faults", {"mutate_after_requests": [trigger]})
    assert shown["mutate_after_requests"] == [{**trigger, "served": 0, "fired": False, "result": None, "error": None}]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}], "limit": 10}
    sandbox.http.get(f"{sandbox.hubspot}{DEALS}", headers=headers)  # not a search: does not count
    sandbox.refresh()  # token endpoints never count
    page1 = sandbox.http.post(f"{sandbox.hubspot}{DEALS}/search", json=body, headers=headers).json()
    assert [r["id"] for r in page1["results"]] == [deal_id(i) for i in range(10)]
    page2 = sandbox.http.post(f"{sandbox.hubspot}{DEALS}/search", json={**body, "after": "10"}, headers=headers)
    # deal 2 moved to the end between the pages, so deal 10 slid into page 1's range and is never seen.
    assert [r["id"] for r in page2.json()["results"]] == [deal_id(i) for i in range(11, 21)]
    (fired,) = sandbox.control("GET", "hubspot/faults")["mutate_after_requests"]
    assert (fired["served"], fired["fired"], fired["error"]) == (1, True, None)
    assert fired["result"]["ids"] == [deal_id(2)]


def test_triggers_count_only_successful_data_requests_and_fire_once(sandbox: Sandbox) -> None:
    token = sandbox.token()
    headers = {"Authorization": f"Bearer {token}"}
    triggers = [
        {"after": 2, "mutation": {"entity": "deals", "create": 1}},
        {"after": 3, "mutation": {"entity": "deals", "ids": ["1"]}},  # fails when it fires: unknown id
    ]
    sandbox.control("POST", "hubspot/faults", {"mutate_after_requests": triggers, "next_429": 1})
    codes = [sandbox.http.get(f"{sandbox.hubspot}{DEALS}", headers=headers).status_code for _ in range(5)]
    assert codes == [429, 200, 200, 200, 200]
    first, second = sandbox.control("GET", "hubspot/faults")["mutate_after_requests"]
    assert (first["served"], first["fired"], first["result"]["created_ids"]) == (2, True, [deal_id(120)])
    assert (second["served"], second["fired"], second["result"]) == (3, True, None)
    assert "unknown deals id" in second["error"]
    truth = sandbox.control("GET", "hubspot/truth?entity=deals")["records"]
    assert len(truth) == 121  # created once, not on every later request
    sandbox.control("DELETE", "hubspot/faults")
    assert sandbox.control("GET", "hubspot/faults")["mutate_after_requests"] == []


def test_trigger_validation(sandbox: Sandbox) -> None:
    url = f"{sandbox.url}/_sandbox/hubspot/faults"
    for bad in (
        {"mutate_after_requests": {"after": 1}},
        {"mutate_after_requests": [{"after": 0, "mutation": {"entity": "deals"}}]},
        {"mutate_after_requests": [{"after": 1, "mutation": {"entity": "deals", "action": "nope"}}]},
        {"mutate_after_requests": [{"after": 1, "mutation": {"entity": "deals"}, "extra": 1}]},
    ):
        r = sandbox.http.post(url, json=bad)
        assert r.status_code == 400, (bad, r.text)


def test_reset_clears_every_new_knob(sandbox: Sandbox) -> None:
    sandbox.control(
        "POST",
        "hubspot/faults",
        {
            "clock_offset_s": 5,
            "search_index_lag_ms": 10,
            "mutate_after_requests": [{"after": 1, "mutation": {"entity": "deals"}}],
        },
    )
    sandbox.reset()
    faults = sandbox.control("GET", "hubspot/faults")
    assert faults["clock_offset_s"] == 0 and faults["mutate_after_requests"] == []
    assert "search_index_lag_ms" not in faults


def test_truth_lists_every_record_with_its_state_and_refuses_large_entities(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 4})
    sandbox.control("POST", "hubspot/mutate", {"entity": "deals", "action": "archive", "ids": [deal_id(1)]})
    sandbox.control("POST", "hubspot/mutate", {"entity": "deals", "action": "purge", "ids": [deal_id(2)]})
    records = sandbox.control("GET", "hubspot/truth?entity=deals")["records"]
    assert [(r["id"], r["state"], r["merged_into"]) for r in records] == [
        (deal_id(0), "live", None),
        (deal_id(1), "archived", None),
        (deal_id(2), "purged", None),
        (deal_id(3), "live", None),
    ]
    assert all(epoch(r["modified"]) > 0 for r in records)
    sandbox.reset(sizes={"deals": 50_001})
    too_big = sandbox.http.get(f"{sandbox.url}/_sandbox/hubspot/truth", params={"entity": "deals"})
    assert too_big.status_code == 400 and "50000" in too_big.json()["error"]
    unknown = sandbox.http.get(f"{sandbox.url}/_sandbox/hubspot/truth", params={"entity": "calls"})
    assert unknown.status_code == 400
    assert sandbox.http.get(f"{sandbox.url}/_sandbox/nope/truth").status_code == 404


@pytest.mark.parametrize(
    ("vendor", "entity"),
    [
        ("hubspot", "contacts"),
        ("salesforce", "Opportunity"),
        ("gong", "calls"),
        ("monday", "items"),
        ("monday", "boards"),
        ("fireflies", "transcripts"),
        ("google_drive", "files"),
    ],
)
def test_truth_answers_every_entity_mutate_accepts(sandbox: Sandbox, vendor: str, entity: str) -> None:
    records = sandbox.control("GET", f"{vendor}/truth?entity={entity}")["records"]
    assert records and {"id", "modified", "state", "merged_into"} <= set(records[0])
    assert {r["state"] for r in records} <= {"live", "trashed"}


def test_unsupported_actions_are_400_per_vendor(sandbox: Sandbox) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("salesforce", {"entity": "Opportunity", "action": "merge", "ids": ["006RO0000000001AAA"], "into": "x"}),
        ("salesforce", {"entity": "Account", "action": "archive", "count": 1}),
        ("gong", {"entity": "calls", "action": "restore", "ids": ["5000000000000000000"]}),
        ("fireflies", {"entity": "transcripts", "action": "archive", "count": 1}),
        ("monday", {"entity": "boards", "action": "edit", "count": 1}),
        ("google_drive", {"entity": "files", "action": "archive", "count": 1}),
        ("gong", {"entity": "calls", "count": 1, "time_offset_s": -60}),  # time_offset_s needs create
        ("fireflies", {"entity": "transcripts", "create": 1, "modified_time": "2025-01-01T00:00:00Z"}),
    ]
    for vendor, body in cases:
        r = requests.post(f"{sandbox.url}/_sandbox/{vendor}/mutate", json=body)
        assert r.status_code == 400, (vendor, body, r.text)
        assert r.json()["error"]


def test_an_outage_after_n_requests_answers_5xx_until_cleared(sandbox_url: str) -> None:
    requests.post(f"{sandbox_url}/_sandbox/reset", json={"seed": 1}).raise_for_status()
    requests.post(f"{sandbox_url}/_sandbox/gong/faults", json={"outage_after_requests": 1}).raise_for_status()
    creds = requests.get(f"{sandbox_url}/_sandbox/connections").json()["gong"]["credentials"]
    auth = (creds["access_key"], creds["access_key_secret"])
    window = {"fromDateTime": "2010-01-01T00:00:00Z", "toDateTime": "2030-01-01T00:00:00Z"}
    statuses = [requests.get(f"{sandbox_url}/gong/v2/calls", params=window, auth=auth).status_code for _ in range(3)]
    assert statuses == [200, 503, 503]
    requests.delete(f"{sandbox_url}/_sandbox/gong/faults").raise_for_status()
    assert requests.get(f"{sandbox_url}/gong/v2/calls", params=window, auth=auth).status_code == 200


def test_the_request_log_names_the_random_fault_that_answered(sandbox: Sandbox) -> None:
    token = sandbox.token()
    auth = {"Authorization": f"Bearer {token}"}
    sandbox.control("DELETE", "hubspot/requests")
    for faults in ({"rate_429": 1.0}, {"rate_429": 0, "rate_5xx": 1.0}, {"rate_5xx": 0}):
        sandbox.control("POST", "hubspot/faults", faults)
        sandbox.http.get(f"{sandbox.hubspot}{DEALS}", headers=auth)
    logged = sandbox.control("GET", "hubspot/requests")["requests"]
    assert [(r["status"], r["fault"]) for r in logged] == [(429, "rate_429"), (503, "rate_5xx"), (200, None)]
