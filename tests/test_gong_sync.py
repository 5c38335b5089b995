"""Gong end to end: sandbox over HTTP -> client -> sync loop -> Postgres, through Dagster."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetKey

from definitions import connector_assets
from resources.gong import GongResource, gong_time
from resources.http import VendorError
from resources.warehouse import WarehouseResource
from tests.conftest import register
from tests.support import assert_evenly_spaced, latest_metadata, rows, run_sync

GONG = next(a for a in connector_assets if AssetKey(["gong", "calls"]) in a.keys)
WS = "acme"
EXTENSIVE = "/gong/v2/calls/extensive"
RETRY_LINE = re.compile(r"^\[Gong Client\] Rate limited \(429\), retrying in (\d+)ms$")


def metadata(instance, workspace: str = WS) -> dict:
    return latest_metadata(instance, "gong/calls", workspace)


def data_requests(sandbox) -> list[dict]:
    return [r for r in sandbox.requests("gong") if r["path"].startswith("/gong/v2/")]


def retry_delays_logged(instance, result) -> list[int]:
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    return [int(m.group(1)) for m in (RETRY_LINE.match(msg) for msg in messages) if m]


@pytest.fixture
def gong_ws(warehouse, instance, sandbox):
    register(warehouse, instance, sandbox, WS, ["gong"])
    return warehouse


def test_full_then_incremental_reads_from_watermark_minus_one_day(gong_ws, instance, sandbox):
    first = run_sync(instance, GONG, WS)
    assert first.success
    requests = data_requests(sandbox)
    assert [(r["method"], r["path"], r["status"]) for r in requests] == [("POST", EXTENSIVE, 200)] * 2
    assert requests[0]["body"]["filter"]["fromDateTime"] == "2010-01-01T00:00:00Z"
    assert "cursor" not in requests[0]["body"] and requests[1]["body"]["cursor"]
    assert requests[0]["body"]["contentSelector"]["exposedFields"]["parties"] is True
    meta = metadata(instance)
    assert (meta["mode"], meta["records_synced"], meta["records_failed"], meta["pages"]) == ("full", 120, 0, 2)
    (max_started,) = rows("SELECT max(started_at) FROM calls")[0]
    watermark = datetime.fromisoformat(meta["watermark"])
    assert watermark == max_started

    # Typed columns come from the raw call kept in properties.
    source, title, started, duration, direction, url, participants, raw = rows(
        "SELECT source, title, started_at, duration_seconds, direction, url, participants, properties "
        "FROM calls WHERE source_id = '5000000000000000007'"
    )[0]
    meta_data = raw["metaData"]
    assert source == "gong"
    assert title == meta_data["title"] and url == f"https://app.gong.io/call?id={meta_data['id']}"
    assert started == datetime.fromisoformat(meta_data["started"]) and meta_data["started"].endswith("-08:00")
    assert (duration, direction) == (meta_data["duration"], meta_data["direction"])
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
    assert len(participants) >= 2

    since = watermark - timedelta(days=1)
    (in_lookback,) = rows("SELECT count(*) FROM calls WHERE started_at >= :s", s=since)[0]
    edited_recent = sandbox.mutate("gong", "calls", 2)["ids"]
    sandbox.mutate("gong", "calls", ids=["5000000000000000000"])  # older than the lookback
    created = sandbox.mutate("gong", "calls", create=3)["created_ids"]
    sandbox.clear_requests("gong")

    second = run_sync(instance, GONG, WS)
    assert second.success
    requests = data_requests(sandbox)
    assert len(requests) == 1
    window = requests[0]["body"]["filter"]
    assert window["fromDateTime"] == gong_time(since)
    assert datetime.fromisoformat(window["toDateTime"]) > datetime.now(UTC) - timedelta(minutes=5)
    after = metadata(instance)
    assert (after["mode"], after["records_synced"]) == ("incremental", in_lookback + 3)
    assert rows("SELECT count(*) FROM calls") == [(123,)]
    titles = dict(rows("SELECT source_id, title FROM calls WHERE source_id = ANY(:ids)", ids=edited_recent))
    assert all(t.endswith(" (rev 1)") for t in titles.values()) and len(titles) == 2
    (old_title,) = rows("SELECT title FROM calls WHERE source_id = '5000000000000000000'")[0]
    assert not old_title.endswith("(rev 1)")  # edits older than the lookback wait for a full refresh
    assert {r[0] for r in rows("SELECT source_id FROM calls WHERE started_at > :w", w=watermark)} == set(created)
    log = rows("SELECT status, mode, records_synced FROM sync_log WHERE connector_type = 'gong' ORDER BY id")
    assert log == [("completed", "full", 120), ("completed", "incremental", in_lookback + 3)]


def test_lookback_is_configurable_per_connection(warehouse, instance, sandbox):
    register(warehouse, instance, sandbox, WS, ["gong"], lookback_hours=2)
    assert run_sync(instance, GONG, WS).success
    watermark = datetime.fromisoformat(metadata(instance)["watermark"])
    sandbox.clear_requests("gong")
    assert run_sync(instance, GONG, WS).success
    (request,) = data_requests(sandbox)
    assert request["body"]["filter"]["fromDateTime"] == gong_time(watermark - timedelta(hours=2))
    # Calls are 30-40 minutes apart, so a 2-hour lookback re-reads 3 or 4 of them.
    assert metadata(instance)["records_synced"] in (3, 4)
    assert (
        metadata(instance)["records_synced"]
        == rows("SELECT count(*) FROM calls WHERE started_at >= :s", s=watermark - timedelta(hours=2))[0][0]
    )


def test_no_calls_found_404_is_an_empty_result(warehouse, instance, sandbox):
    sandbox.reset(sizes={"gong": {"calls": 0}})
    register(warehouse, instance, sandbox, WS, ["gong"])
    result = run_sync(instance, GONG, WS)
    assert result.success
    assert [r["status"] for r in data_requests(sandbox)] == [404]
    assert (metadata(instance)["records_synced"], metadata(instance)["pages"]) == (0, 0)
    assert rows("SELECT status, records_synced FROM sync_log") == [("completed", 0)]


def test_list_calls_pages_the_v2_calls_endpoint_by_cursor(gong_ws, sandbox):
    client = GongResource().client_for(WarehouseResource().get_connection(WS, "gong"))
    # Call i starts 30 * i (+ under 10) minutes after 2025-01-01T00:00Z: calls 0-3 start before 02:00.
    since, until = datetime(2025, 1, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    pages = list(client.list_calls(since, until))
    assert [len(p.records) for p in pages] == [100, 16]
    assert pages[0].total == 116
    assert pages[0].records[0].id == "5000000000000000004"
    requests = data_requests(sandbox)
    assert [(r["method"], r["path"]) for r in requests] == [("GET", "/gong/v2/calls")] * 2
    assert requests[0]["query"] == {"fromDateTime": "2025-01-01T02:00:00Z", "toDateTime": "2026-01-01T00:00:01Z"}
    assert set(requests[1]["query"]) == {"fromDateTime", "toDateTime", "cursor"}


def test_rejected_secret_fails_with_a_clear_error(gong_ws, instance, sandbox):
    connection = WarehouseResource().get_connection(WS, "gong")
    wrong = connection.model_copy(update={"credentials": {**connection.credentials, "access_key_secret": "nope"}})
    client = GongResource().client_for(wrong)
    with pytest.raises(VendorError, match=r"^\[Gong\] the access key or secret was rejected \(401\)$"):
        next(client.extensive_calls(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)))


def test_qw4_120_requests_are_spaced_0_6_s_apart_with_no_429(warehouse, instance, sandbox):
    """QW-4: 11,950 calls are 120 pages of 100; the client spaces them for 100 requests/minute."""
    sandbox.reset(sizes={"gong": {"calls": 11_950}})
    register(warehouse, instance, sandbox, WS, ["gong"])
    assert run_sync(instance, GONG, WS).success
    requests = data_requests(sandbox)
    assert len(requests) == 120
    assert [r["status"] for r in requests] == [200] * 120
    stamps = [r["ts_ms"] / 1000 for r in requests]
    assert_evenly_spaced(stamps, 0.6)
    assert max(sum(1 for t in stamps if start <= t < start + 60) for start in stamps) <= 100
    assert rows("SELECT count(*) FROM calls") == [(11_950,)]
    assert metadata(instance)["api_calls"] == 120


def test_mw2_backoff_without_retry_after_is_2_4_8_seconds(gong_ws, instance, sandbox):
    sandbox.faults("gong", next_429=3)
    result = run_sync(instance, GONG, WS)
    assert result.success
    requests = data_requests(sandbox)
    assert [r["status"] for r in requests] == [429, 429, 429, 200, 200]
    gaps = [(b["ts_ms"] - a["ts_ms"]) / 1000 for a, b in zip(requests, requests[1:4], strict=False)]
    for gap, expected in zip(gaps, (2, 4, 8), strict=True):
        assert expected <= gap < expected + 1.5
    assert retry_delays_logged(instance, result) == [2000, 4000, 8000]
    assert rows("SELECT count(*) FROM calls") == [(120,)]


def test_mw2_retry_after_is_honoured(gong_ws, instance, sandbox):
    sandbox.faults("gong", next_429=2, retry_after_s=1)
    result = run_sync(instance, GONG, WS)
    assert result.success
    requests = data_requests(sandbox)
    assert [r["status"] for r in requests] == [429, 429, 200, 200]
    assert requests[1]["ts_ms"] - requests[0]["ts_ms"] >= 1000
    assert requests[2]["ts_ms"] - requests[1]["ts_ms"] >= 1000
    assert retry_delays_logged(instance, result) == [1000, 1000]


def test_mw2_stops_after_three_retries(gong_ws, instance, sandbox):
    sandbox.faults("gong", rate_429=1.0, retry_after_s=0.2)
    result = run_sync(instance, GONG, WS)
    assert not result.success
    assert [r["status"] for r in data_requests(sandbox)] == [429] * 4
    assert retry_delays_logged(instance, result) == [200, 200, 200]
    status, error = rows("SELECT status, error FROM sync_log")[0]
    assert status == "failed"
    assert error == (
        "[Gong] Rate limited (429) on POST /v2/calls/extensive; gave up after 3 retries: "
        "HTTP 429 on POST /v2/calls/extensive: API request limit exceeded"
    )


def test_lw1_bad_call_is_captured_and_the_rest_land(gong_ws, instance, sandbox):
    bad_id = "5000000000000000005"
    sandbox.faults("gong", bad_records=[bad_id])
    result = run_sync(instance, GONG, WS)
    assert result.success
    assert rows("SELECT count(*), count(*) FILTER (WHERE source_id = :id) FROM calls", id=bad_id) == [(119, 0)]
    status, errors, failed = rows("SELECT status, errors, records_failed FROM sync_log")[0]
    assert (status, failed) == ("completed_with_errors", 1)
    message = "value error, Invalid isoformat string: 'not-a-date'"
    assert errors == [f"Call: source_updated_at: V{message[1:]}; started_at: V{message[1:]} ({bad_id})"]
    dead = rows("SELECT connector, entity, source_id, error, payload FROM sync_errors")
    assert [(c, e, s, err) for c, e, s, err, _ in dead] == [("gong", "calls", bad_id, errors[0])]
    assert dead[0][4]["metaData"]["started"] == "not-a-date"
    checks = [(ev.asset_key.path, ev.passed, ev.severity.value) for ev in result.get_asset_check_evaluations()]
    assert checks == [(["gong", "calls"], False, "WARN")]
