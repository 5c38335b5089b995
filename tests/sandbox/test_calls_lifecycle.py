"""Gong's call-time rule, late calls and transcripts, and deletions, over HTTP (see conftest.py)."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from sandbox.gong import WEB_CONFERENCE_SYSTEMS

TRANSCRIPTS = "query Q($limit: Int, $fromDate: DateTime, $toDate: DateTime) { transcripts(limit: $limit, "
TRANSCRIPTS += "fromDate: $fromDate, toDate: $toDate) { id title date } }"


@pytest.fixture
def conn(sandbox_url: str) -> dict[str, Any]:
    sizes = {"gong": {"calls": 300}, "fireflies": {"transcripts": 40}}
    requests.post(f"{sandbox_url}/_sandbox/reset", json={"seed": 4, "sizes": sizes}).raise_for_status()
    return requests.get(f"{sandbox_url}/_sandbox/connections").json()


def gong_headers(conn: dict[str, Any]) -> dict[str, str]:
    creds = conn["gong"]["credentials"]
    pair = f"{creds['access_key']}:{creds['access_key_secret']}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def gong_calls(url: str, conn: dict[str, Any], **window: str) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        body = {"filter": window, **({"cursor": cursor} if cursor else {})}
        r = requests.post(f"{url}/gong/v2/calls/extensive", json=body, headers=gong_headers(conn))
        if r.status_code == 404:
            return out
        out += [c["metaData"] for c in r.json()["calls"]]
        cursor = r.json()["records"].get("cursor")
        if not cursor:
            return out


def call_time(meta: dict[str, Any]) -> datetime:
    """The rule a client applies: scheduled for web conferences, started otherwise."""
    key = "scheduled" if meta["system"] in WEB_CONFERENCE_SYSTEMS else "started"
    return datetime.fromisoformat(meta[key])


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_gong_filters_and_sorts_conferences_by_schedule_and_other_calls_by_start(sandbox_url, conn):
    calls = gong_calls(sandbox_url, conn)
    assert len(calls) == 300
    times = [call_time(c) for c in calls]
    assert times == sorted(times)
    conferences = [c for c in calls if c["system"] in WEB_CONFERENCE_SYSTEMS]
    phones = [c for c in calls if c["system"] not in WEB_CONFERENCE_SYSTEMS]
    assert conferences and phones
    skew = [(datetime.fromisoformat(c["started"]) - datetime.fromisoformat(c["scheduled"])) for c in conferences]
    assert min(skew) < timedelta(0) < max(skew) and all(abs(s) <= timedelta(minutes=4) for s in skew)
    assert all(datetime.fromisoformat(c["scheduled"]).minute % 5 == 0 for c in conferences)
    assert {c["media"] for c in conferences} == {"Video"} and {c["media"] for c in phones} == {"Audio"}
    assert all(c["meetingUrl"] is None and c["direction"] in ("Inbound", "Outbound") for c in phones)

    early = next(c for c in conferences if c["started"] < c["scheduled"])
    window = gong_calls(
        sandbox_url, conn, fromDateTime=early["scheduled"], toDateTime=iso(call_time(early) + timedelta(minutes=1))
    )
    assert [c["id"] for c in window] == [early["id"]]  # it started before fromDateTime and is still in
    late = next(c for c in conferences if c["started"] > c["scheduled"])
    before = iso(call_time(late))
    assert late["id"] not in {
        c["id"] for c in gong_calls(sandbox_url, conn, toDateTime=before, fromDateTime="2025-01-01T00:00:00Z")
    }


def test_gong_call_created_two_hours_late_lands_in_the_past(sandbox_url, conn):
    created = requests.post(
        f"{sandbox_url}/_sandbox/gong/mutate",
        json={"entity": "calls", "create": 1, "time_offset_s": -7200, "system": "Outreach"},
    ).json()
    (call_id,) = created["created_ids"]
    started = datetime.fromisoformat(created["started_at"])
    assert abs((datetime.now(UTC) - timedelta(hours=2) - started).total_seconds()) < 5
    recent = gong_calls(sandbox_url, conn, fromDateTime=iso(datetime.now(UTC) - timedelta(minutes=30)))
    assert call_id not in {c["id"] for c in recent}  # a watermark at "now - 30 min" never sees it
    window = gong_calls(sandbox_url, conn, fromDateTime=iso(started - timedelta(minutes=1)))
    (meta,) = [c for c in window if c["id"] == call_id]
    assert (meta["system"], meta["started"]) == ("Outreach", created["started_at"])
    zoom = requests.post(
        f"{sandbox_url}/_sandbox/gong/mutate",
        json={"entity": "calls", "create": 1, "time_offset_s": -600, "system": "Zoom"},
    ).json()
    (zoom_meta,) = [
        c for c in gong_calls(sandbox_url, conn, fromDateTime=iso(started)) if c["id"] in zoom["created_ids"]
    ]
    assert zoom_meta["scheduled"] == zoom["started_at"] and zoom_meta["direction"] == "Conference"


def test_deleted_gong_call_is_gone_from_every_read(sandbox_url, conn):
    victim = "5000000000000000003"
    r = requests.post(
        f"{sandbox_url}/_sandbox/gong/mutate", json={"entity": "calls", "action": "delete", "ids": [victim]}
    )
    assert r.json()["ids"] == [victim]
    assert victim not in {c["id"] for c in gong_calls(sandbox_url, conn)}
    by_id = requests.post(
        f"{sandbox_url}/gong/v2/calls/extensive", json={"filter": {"callIds": [victim]}}, headers=gong_headers(conn)
    )
    assert by_id.status_code == 404
    assert by_id.json()["errors"] == ["No calls found corresponding to the provided filters"]
    listed = requests.get(f"{sandbox_url}/gong/v2/calls", headers=gong_headers(conn)).json()
    assert listed["records"]["totalRecords"] == 299
    truth = requests.get(f"{sandbox_url}/_sandbox/gong/truth", params={"entity": "calls"}).json()["records"]
    assert [r["state"] for r in truth if r["id"] == victim] == ["deleted"]


def fireflies(url: str, conn: dict[str, Any], variables: dict[str, Any]) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {conn['fireflies']['credentials']['api_key']}"}
    r = requests.post(f"{url}/fireflies/graphql", json={"query": TRANSCRIPTS, "variables": variables}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["data"]["transcripts"]


def test_fireflies_transcript_processed_hours_after_the_meeting(sandbox_url, conn):
    created = requests.post(
        f"{sandbox_url}/_sandbox/fireflies/mutate", json={"entity": "transcripts", "create": 1, "time_offset_s": -10800}
    ).json()
    (tid,) = created["created_ids"]
    assert abs(created["date"] / 1000 - (time.time() - 10800)) < 5
    newest = fireflies(sandbox_url, conn, {"limit": 1})
    assert newest[0]["id"] == tid  # still the newest meeting of the generated history (all in 2025)
    since = iso(datetime.now(UTC) - timedelta(hours=1))
    assert fireflies(sandbox_url, conn, {"fromDate": since}) == []
    window = fireflies(sandbox_url, conn, {"fromDate": iso(datetime.now(UTC) - timedelta(hours=4))})
    assert [t["id"] for t in window] == [tid] and window[0]["date"] == created["date"]


def test_deleted_fireflies_transcript_is_gone(sandbox_url, conn):
    first = fireflies(sandbox_url, conn, {"limit": 3})
    requests.post(
        f"{sandbox_url}/_sandbox/fireflies/mutate",
        json={"entity": "transcripts", "action": "delete", "ids": [first[1]["id"]]},
    ).raise_for_status()
    after = fireflies(sandbox_url, conn, {"limit": 3})
    assert [t["id"] for t in after[:2]] == [first[0]["id"], first[2]["id"]]
    assert len(fireflies(sandbox_url, conn, {"limit": 50})) == 39


def test_fireflies_retry_after_is_a_moment_on_the_vendor_clock(sandbox_url, conn):
    requests.post(f"{sandbox_url}/_sandbox/fireflies/faults", json={"clock_offset_s": 3600}).raise_for_status()
    requests.post(f"{sandbox_url}/_sandbox/fireflies/limits", json={"limit": 1, "window_s": 30}).raise_for_status()
    fireflies(sandbox_url, conn, {"limit": 1})
    headers = {"Authorization": f"Bearer {conn['fireflies']['credentials']['api_key']}"}
    throttled = requests.post(f"{sandbox_url}/fireflies/graphql", json={"query": TRANSCRIPTS}, headers=headers)
    (error,) = throttled.json()["errors"]
    retry_at = error["extensions"]["metadata"]["retryAfter"] / 1000
    assert 3600 < retry_at - time.time() <= 3600 + 31
    server_now = datetime.strptime(throttled.headers["Date"], "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    assert 0 < retry_at - server_now.timestamp() <= 31  # relative to the Date header it is a short wait
