"""Gong's own behaviour, against the sandbox over HTTP through the real assets: the extensive-calls window
(Gong filters on the call time, not a modified time, so incremental reads look back), the cursor that is
the earlier of a call's scheduled and actual start, the 404 that means "no calls", the 100 requests per
minute spacing and the retry log lines. What every connector does is in tests/contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetKey

from definitions import connector_assets
from resources.gong import CONTENT_SELECTOR
from sync_assets import loop
from tests.conftest import register
from tests.support import assert_evenly_spaced, latest_metadata, rows, run_sync

GONG = next(a for a in connector_assets if AssetKey(["gong", "calls"]) in a.keys)
WS = "acme"
EXTENSIVE = "/gong/v2/calls/extensive"
RETRY_LINE = re.compile(r"^\[Gong Client\] Rate limited \(429\), retrying in (\d+)ms$")
LATEST_CALL = "5000000000000000119"  # the sandbox's newest call (of 120): a Google Meet that started late


def call_id(index: int) -> str:
    return str(5_000_000_000_000_000_000 + index)  # the sandbox's id scheme


def metadata(instance) -> dict:
    return latest_metadata(instance, "gong/calls", WS)


def watermark(instance) -> datetime:
    return datetime.fromtimestamp(metadata(instance)["watermark"], UTC)


def data_requests(sandbox) -> list[dict]:
    return [r for r in sandbox.requests("gong") if r["path"].startswith("/gong/v2/")]


def retry_delays_logged(instance, result) -> list[int]:
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    return [int(m.group(1)) for m in (RETRY_LINE.match(msg) for msg in messages) if m]


def whole_seconds(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def gong_ws(warehouse, instance, sandbox):
    register(warehouse, instance, sandbox, WS, ["gong"])
    return warehouse


def test_calls_are_read_from_the_extensive_endpoint_in_a_window_a_day_before_the_watermark(gong_ws, instance, sandbox):
    assert run_sync(instance, GONG, WS).success
    full = data_requests(sandbox)
    assert [(r["method"], r["path"], r["status"]) for r in full] == [("POST", EXTENSIVE, 200)] * 2
    assert full[0]["body"]["filter"]["fromDateTime"] == "2010-01-01T00:00:00Z"  # Gong needs a window start
    assert full[0]["body"]["contentSelector"] == CONTENT_SELECTOR
    assert "cursor" not in full[0]["body"] and full[1]["body"]["cursor"]
    assert full[1]["body"]["filter"] == full[0]["body"]["filter"]
    mark = watermark(instance)
    sandbox.clear_requests("gong")

    before = datetime.now(UTC)
    assert run_sync(instance, GONG, WS).success
    [request] = data_requests(sandbox)
    window = request["body"]["filter"]
    assert window["fromDateTime"] == whole_seconds(mark - timedelta(days=1))
    # The end is now, as an exclusive bound: the whole second after it.
    assert before <= datetime.fromisoformat(window["toDateTime"]) <= datetime.now(UTC) + timedelta(seconds=1)
    (in_lookback,) = rows("SELECT count(*) FROM calls WHERE source_updated_at >= :s", s=mark - timedelta(days=1))[0]
    assert 40 < in_lookback < 60  # a call every 30 minutes: about a day of them is read again
    meta = metadata(instance)
    assert (meta["mode"], meta["records_synced"], meta["records_reread"]) == ("incremental", 0, in_lookback)


def test_the_lookback_is_configurable_per_connection(warehouse, instance, sandbox):
    register(warehouse, instance, sandbox, WS, ["gong"], lookback_hours=2)
    assert run_sync(instance, GONG, WS).success
    mark = watermark(instance)
    sandbox.clear_requests("gong")
    assert run_sync(instance, GONG, WS).success
    [request] = data_requests(sandbox)
    assert request["body"]["filter"]["fromDateTime"] == whole_seconds(mark - timedelta(hours=2))
    (in_lookback,) = rows("SELECT count(*) FROM calls WHERE source_updated_at >= :s", s=mark - timedelta(hours=2))[0]
    assert in_lookback == 5  # calls 115-119, about 30 minutes apart: the watermark's own included
    assert metadata(instance)["records_reread"] == in_lookback


def test_the_cursor_is_the_earlier_of_scheduled_and_started_for_a_conference_that_started_late(
    warehouse, instance, sandbox
):
    """Gong filters web conferences on their scheduled time. The newest call, a Google Meet scheduled for
    11:35:00 that started at 11:36:12, must hold the watermark at 11:35:00: a call scheduled for 11:35:36
    that Gong lists only later is then still inside the next window (at its start, with no lookback)."""
    register(warehouse, instance, sandbox, WS, ["gong"], lookback_hours=0)
    assert run_sync(instance, GONG, WS).success
    [(cursor, props)] = rows("SELECT source_updated_at, properties FROM calls WHERE source_id = :id", id=LATEST_CALL)
    scheduled, started = (datetime.fromisoformat(props["metaData"][k]) for k in ("scheduled", "started"))
    assert (props["metaData"]["system"], scheduled, started) == (
        "Google Meet",
        datetime(2025, 1, 3, 11, 35, tzinfo=UTC),
        datetime(2025, 1, 3, 11, 36, 12, tzinfo=UTC),
    )
    assert cursor == scheduled == watermark(instance)

    late_time = scheduled + timedelta(seconds=36)
    offset_s = (late_time - datetime.now(UTC)).total_seconds()
    [late] = sandbox.mutate("gong", "calls", create=1, time_offset_s=offset_s, system="Zoom")["created_ids"]
    sandbox.clear_requests("gong")

    assert run_sync(instance, GONG, WS).success
    [request] = data_requests(sandbox)
    assert request["body"]["filter"]["fromDateTime"] == "2025-01-03T11:35:00Z"
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_reread"]) == (1, 1)  # the late call; the newest, unchanged
    [(late_props,)] = rows("SELECT properties FROM calls WHERE source_id = :id", id=late)
    assert abs(datetime.fromisoformat(late_props["metaData"]["scheduled"]) - late_time) <= timedelta(seconds=1)


def test_a_call_deleted_while_the_window_is_paged_makes_it_read_again_and_loses_no_other_call(
    gong_ws, instance, sandbox
):
    """Gong's cursor pages a live list: a call of page 1 deleted before page 2 moves every later call up a
    place, and the first call of page 2 is never served. Every page reports the window's totalRecords;
    when it falls during the read, the window is read again."""
    deleted, first_of_page_2 = call_id(5), call_id(100)
    deletion = {"entity": "calls", "action": "delete", "ids": [deleted]}
    sandbox.faults("gong", mutate_after_requests=[{"after": 1, "mutation": deletion}])
    result = run_sync(instance, GONG, WS)
    assert result.success
    sent = [r["body"] for r in data_requests(sandbox)]
    # Page 1 counts 120 calls, page 2 (after the deletion) 119: read again, 119 and 119.
    assert ["cursor" in body for body in sent] == [False, True, False, True]
    assert all(body["filter"] == sent[0]["filter"] for body in sent)  # the same window each time
    assert "[Gong Client] calls left the window while it was read (try 1); reading it again" in [
        e.user_message for e in instance.all_logs(result.run_id)
    ]
    assert {r[0] for r in rows("SELECT source_id FROM calls")} == {call_id(i) for i in range(120)}
    assert rows("SELECT count(*) FROM calls WHERE source_id = :i", i=first_of_page_2) == [(1,)]
    meta = metadata(instance)
    # The second read finds the call the first one missed; the 118 others it read again, unchanged.
    assert (meta["records_synced"], meta["records_reread"], meta["records_deleted"]) == (120, 118, 0)


def test_a_sync_seven_days_after_the_last_full_read_reads_every_call_and_marks_the_deleted_one(
    gong_ws, instance, sandbox, monkeypatch
):
    """Regression: Gong keeps no deletion feed, so a full read every 7 days names every call and finds the
    deleted ones. A connection's overrides (applied to every cursor, even with none set) dropped the
    interval, and the periodic full read never came."""
    assert run_sync(instance, GONG, WS).success
    sandbox.mutate("gong", "calls", action="delete", ids=[call_id(7)])  # far older than the lookback
    sandbox.clear_requests("gong")
    week_later = datetime.now(UTC) + timedelta(days=7)
    monkeypatch.setattr(loop, "utcnow", lambda: week_later)

    assert run_sync(instance, GONG, WS).success
    meta = metadata(instance)
    assert (meta["mode"], meta["records_deleted"]) == ("full", 1)
    assert data_requests(sandbox)[0]["body"]["filter"]["fromDateTime"] == "2010-01-01T00:00:00Z"
    assert rows("SELECT source_id FROM calls WHERE is_deleted") == [(call_id(7),)]


def test_no_calls_found_404_is_an_empty_result(warehouse, instance, sandbox):
    sandbox.reset(sizes={"gong": {"calls": 0}})
    register(warehouse, instance, sandbox, WS, ["gong"])
    assert run_sync(instance, GONG, WS).success
    assert [r["status"] for r in data_requests(sandbox)] == [404]
    meta = metadata(instance)
    assert (meta["records_synced"], meta["pages"], meta["records_failed"]) == (0, 0, 0)
    assert rows("SELECT status, records_synced, error FROM sync_log") == [("completed", 0, None)]


def test_a_call_row_types_gongs_metadata_and_parties(gong_ws, instance, sandbox):
    assert run_sync(instance, GONG, WS, selection=["gong/calls"]).success
    title, started, duration, direction, url, participants, raw = rows(
        "SELECT title, started_at, duration_seconds, direction, url, participants, properties "
        "FROM calls WHERE source_id = '5000000000000000007'"
    )[0]
    meta_data = raw["metaData"]
    assert (title, url) == (meta_data["title"], f"https://app.gong.io/call?id={meta_data['id']}")
    assert started == datetime.fromisoformat(meta_data["started"]) and meta_data["started"].endswith("-08:00")
    assert (duration, direction) == (meta_data["duration"], meta_data["direction"])
    assert len(participants) >= 2
    assert participants == [
        {
            "name": p["name"],
            "email": p["emailAddress"],
            "title": p["title"],
            "affiliation": p["affiliation"],
            "user_id": p["userId"],
        }
        for p in raw["parties"]
    ]


def test_requests_are_evenly_spaced_at_100_per_minute_with_no_429(warehouse, instance, sandbox):
    """The platform's Gong budget (100 requests/minute): 11,950 calls are 120 pages of 100, against a sandbox enforcing
    100 requests per rolling minute; the client spaces them 0.6 s apart instead of bursting."""
    sandbox.reset(sizes={"gong": {"calls": 11_950}})
    register(warehouse, instance, sandbox, WS, ["gong"])
    assert run_sync(instance, GONG, WS).success
    requests = data_requests(sandbox)
    assert [r["status"] for r in requests] == [200] * 120
    stamps = [r["ts_ms"] / 1000 for r in requests]
    assert_evenly_spaced(stamps, 0.6)
    assert max(sum(1 for t in stamps if start <= t < start + 60) for start in stamps) <= 100
    assert rows("SELECT count(*) FROM calls") == [(11_950,)]
    assert metadata(instance)["api_calls"] == 120


def test_retry_log_lines_state_each_backoff_in_milliseconds(warehouse, instance, sandbox):
    register(warehouse, instance, sandbox, WS, ["gong"], retry={"backoff_base_s": 0.1})
    sandbox.faults("gong", next_429=3)
    result = run_sync(instance, GONG, WS)
    assert result.success
    assert [r["status"] for r in data_requests(sandbox)] == [429, 429, 429, 200, 200]
    assert retry_delays_logged(instance, result) == [100, 200, 400]


def test_persistent_throttling_logs_each_retry_after_and_fails_with_gongs_message(gong_ws, instance, sandbox):
    sandbox.faults("gong", rate_429=1.0, retry_after_s=0.2)
    result = run_sync(instance, GONG, WS)
    assert not result.success
    assert [r["status"] for r in data_requests(sandbox)] == [429] * 4
    assert retry_delays_logged(instance, result) == [200, 200, 200]
    assert rows("SELECT status, error FROM sync_log") == [
        (
            "failed",
            "[Gong] Rate limited (429) on POST /v2/calls/extensive; gave up after 3 retries: "
            "API request limit exceeded",
        )
    ]
