"""The Gong and Fireflies simulators over real HTTP, against a `python -m sandbox` subprocess."""

from __future__ import annotations

import base64
import time
from datetime import datetime
from typing import Any

import pytest
import requests

QUERY = "query Q($limit: Int, $skip: Int, $fromDate: DateTime, $toDate: DateTime) { transcripts(limit: $limit, "
QUERY += "skip: $skip, fromDate: $fromDate, toDate: $toDate) { id date duration speakers { name } } }"


@pytest.fixture
def calls(sandbox_url: str) -> dict[str, Any]:
    sizes = {"gong": {"calls": 250}, "fireflies": {"transcripts": 120}}
    requests.post(f"{sandbox_url}/_sandbox/reset", json={"seed": 3, "sizes": sizes}).raise_for_status()
    return requests.get(f"{sandbox_url}/_sandbox/connections").json()


def gong_auth(calls: dict[str, Any], secret: str | None = None) -> dict[str, str]:
    creds = calls["gong"]["credentials"]
    pair = f"{creds['access_key']}:{secret or creds['access_key_secret']}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def fireflies(sandbox_url: str, calls: dict[str, Any], variables: dict[str, Any], query: str = QUERY):
    headers = {"Authorization": f"Bearer {calls['fireflies']['credentials']['api_key']}"}
    return requests.post(f"{sandbox_url}/fireflies/graphql", json={"query": query, "variables": variables},
                         headers=headers)


def test_gong_pages_by_cursor_within_a_half_open_window(sandbox_url, calls):
    url, seen, cursor = f"{sandbox_url}/gong/v2/calls/extensive", [], None
    window = {"fromDateTime": "2025-01-01T05:00:00Z", "toDateTime": "2025-01-03T05:00:00Z"}
    while True:
        body = {"filter": window, "contentSelector": {"exposedFields": {"parties": True}},
                **({"cursor": cursor} if cursor else {})}
        page = requests.post(url, json=body, headers=gong_auth(calls)).json()
        seen += page["calls"]
        cursor = page["records"].get("cursor")
        if not cursor:
            break
    starts = [datetime.fromisoformat(c["metaData"]["started"]) for c in seen]
    assert len(seen) == page["records"]["totalRecords"] == 96  # two days of calls 30 minutes apart
    assert starts == sorted(starts) and len({c["metaData"]["id"] for c in seen}) == 96
    assert min(starts) >= datetime.fromisoformat("2025-01-01T05:00:00+00:00")
    assert max(starts) < datetime.fromisoformat("2025-01-03T05:00:00+00:00")
    assert all(len(c["parties"]) >= 2 and "content" not in c for c in seen)


def test_gong_errors_use_its_envelope(sandbox_url, calls):
    url = f"{sandbox_url}/gong/v2/calls"
    empty = requests.get(url, params={"fromDateTime": "2030-01-01T00:00:00Z", "toDateTime": "2030-02-01T00:00:00Z"},
                         headers=gong_auth(calls))
    assert empty.status_code == 404
    assert empty.json()["errors"] == ["No calls found corresponding to the provided filters"]
    denied = requests.get(url, headers=gong_auth(calls, secret="wrong"))
    assert (denied.status_code, denied.json()["errors"]) == (401, ["The access key or access key secret is invalid"])


def test_gong_enforced_limit_answers_429_with_retry_after(sandbox_url, calls):
    assert requests.get(f"{sandbox_url}/_sandbox/gong/limits").json() == {
        "limit": 100, "window_s": 60.0, "enforce_limits": True
    }
    requests.post(f"{sandbox_url}/_sandbox/gong/limits", json={"limit": 2, "window_s": 3}).raise_for_status()
    responses = [requests.get(f"{sandbox_url}/gong/v2/calls", headers=gong_auth(calls)) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].headers["Retry-After"] in {"1", "2", "3"}
    assert responses[2].json()["errors"] == ["API request limit exceeded"]
    time.sleep(float(responses[2].headers["Retry-After"]))
    assert requests.get(f"{sandbox_url}/gong/v2/calls", headers=gong_auth(calls)).status_code == 200


def test_gong_edits_keep_the_start_time_and_new_calls_start_now(sandbox_url, calls):
    before = requests.get(f"{sandbox_url}/gong/v2/calls", headers=gong_auth(calls),
                          params={"fromDateTime": "2025-01-01T00:00:00Z", "toDateTime": "2025-01-01T00:20:00Z"})
    (first,) = before.json()["calls"]
    result = requests.post(f"{sandbox_url}/_sandbox/gong/mutate",
                           json={"entity": "calls", "ids": [first["id"]], "create": 1}).json()
    assert result["ids"][0] == first["id"] and len(result["created_ids"]) == 1
    after = requests.get(f"{sandbox_url}/gong/v2/calls", headers=gong_auth(calls),
                         params={"fromDateTime": "2025-01-01T00:00:00Z", "toDateTime": "2025-01-01T00:20:00Z"})
    (edited,) = after.json()["calls"]
    assert (edited["started"], edited["title"]) == (first["started"], first["title"] + " (rev 1)")
    started = datetime.fromisoformat(result["started_at"]).timestamp()
    assert abs(started - time.time()) < 5


def test_fireflies_returns_selected_fields_newest_first(sandbox_url, calls):
    response = fireflies(sandbox_url, calls, {"limit": 50, "skip": 100})
    assert response.status_code == 200
    page = response.json()["data"]["transcripts"]
    assert len(page) == 20  # 120 transcripts: the third page of 50 is short
    assert all(set(t) == {"id", "date", "duration", "speakers"} and set(t["speakers"][0]) == {"name"} for t in page)
    dates = [t["date"] for t in page]
    assert dates == sorted(dates, reverse=True)
    window = {"limit": 50, "fromDate": "2025-01-02T00:00:00.000Z", "toDate": "2025-01-03T00:00:00.000Z"}
    assert len(fireflies(sandbox_url, calls, window).json()["data"]["transcripts"]) == 12  # one every 2 hours


def test_fireflies_errors_are_graphql_errors(sandbox_url, calls):
    too_many = fireflies(sandbox_url, calls, {"limit": 51})
    assert too_many.status_code == 200
    assert [(e["code"], e["extensions"]["status"]) for e in too_many.json()["errors"]] == [("invalid_arguments", 400)]
    unknown = fireflies(sandbox_url, calls, {}, query="{ transcripts { id nope } }")
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["message"] == 'Cannot query field "nope" on type "Transcript".'
    denied = requests.post(f"{sandbox_url}/fireflies/graphql", json={"query": QUERY},
                           headers={"Authorization": "Bearer nope"})
    assert (denied.status_code, denied.json()["errors"][0]["code"]) == (401, "auth_failed")


def test_fireflies_throttling_is_a_graphql_error_with_retry_after(sandbox_url, calls):
    requests.post(f"{sandbox_url}/_sandbox/fireflies/limits", json={"limit": 1, "window_s": 2}).raise_for_status()
    assert fireflies(sandbox_url, calls, {"limit": 1}).json()["data"]["transcripts"]
    throttled = fireflies(sandbox_url, calls, {"limit": 1})
    assert throttled.status_code == 200
    (error,) = throttled.json()["errors"]
    assert (error["code"], error["extensions"]["status"]) == ("too_many_requests", 429)
    retry_at_ms = error["extensions"]["metadata"]["retryAfter"]
    assert 0 < retry_at_ms - time.time() * 1000 <= 2000
