"""Fireflies.ai end to end: sandbox over HTTP -> GraphQL client -> sync loop -> Postgres, through Dagster."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetKey

from definitions import connector_assets
from resources.fireflies import FirefliesResource, fireflies_time
from resources.http import VendorError
from resources.warehouse import WarehouseResource
from tests.conftest import register
from tests.support import latest_metadata, rows, run_sync

FIREFLIES = next(a for a in connector_assets if AssetKey(["fireflies", "calls"]) in a.keys)
WS = "acme"
RETRY_LINE = re.compile(r"^\[Fireflies Client\] Rate limited \(429\), retrying in (\d+)ms$")


def metadata(instance) -> dict:
    return latest_metadata(instance, "fireflies/calls", WS)


def graphql_requests(sandbox) -> list[dict]:
    return [r for r in sandbox.requests("fireflies") if r["path"] == "/fireflies/graphql"]


def retry_delays_logged(instance, result) -> list[int]:
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    return [int(m.group(1)) for m in (RETRY_LINE.match(msg) for msg in messages) if m]


def client():
    return FirefliesResource().client_for(WarehouseResource().get_connection(WS, "fireflies"))


@pytest.fixture
def fireflies_ws(warehouse, instance, sandbox):
    register(warehouse, instance, sandbox, WS, ["fireflies"])
    return warehouse


def test_full_then_incremental_reads_from_watermark_minus_one_day(fireflies_ws, instance, sandbox):
    assert run_sync(instance, FIREFLIES, WS).success
    requests = graphql_requests(sandbox)
    assert [r["status"] for r in requests] == [200, 200]
    variables = [r["body"]["variables"] for r in requests]
    assert [(v["limit"], v["skip"], "fromDate" in v) for v in variables] == [(50, 0, False), (50, 50, False)]
    meta = metadata(instance)
    assert (meta["mode"], meta["records_synced"], meta["records_failed"], meta["pages"]) == ("full", 80, 0, 2)
    (max_started,) = rows("SELECT max(started_at) FROM calls WHERE source = 'fireflies'")[0]
    watermark = datetime.fromisoformat(meta["watermark"])
    assert watermark == max_started

    source_id, title, started, duration, url, participants, raw = rows(
        "SELECT source_id, title, started_at, duration_seconds, url, participants, properties FROM calls "
        "ORDER BY started_at LIMIT 1"
    )[0]
    assert title == raw["title"] and url == f"https://app.fireflies.ai/view/{source_id}"
    assert int(started.timestamp() * 1000) == raw["date"]
    assert duration == round(raw["duration"] * 60)  # Fireflies reports minutes
    names = {a["email"]: a["displayName"] for a in raw["meeting_attendees"]}
    assert participants == [{"name": names[e], "email": e} for e in raw["participants"]]
    assert len(participants) >= 2

    since = watermark - timedelta(days=1)
    (in_lookback,) = rows("SELECT count(*) FROM calls WHERE started_at >= :s", s=since)[0]
    edited = sandbox.mutate("fireflies", "transcripts", 2)["ids"]
    created = sandbox.mutate("fireflies", "transcripts", create=2)["created_ids"]
    sandbox.clear_requests("fireflies")

    assert run_sync(instance, FIREFLIES, WS).success
    (request,) = graphql_requests(sandbox)
    assert request["body"]["variables"]["fromDate"] == fireflies_time(since)
    assert request["body"]["variables"]["skip"] == 0
    after = metadata(instance)
    assert (after["mode"], after["records_synced"]) == ("incremental", in_lookback + 2)
    assert rows("SELECT count(*) FROM calls") == [(82,)]
    titles = [t for (t,) in rows("SELECT title FROM calls WHERE source_id = ANY(:ids)", ids=edited)]
    assert len(titles) == 2 and all(t.endswith(" (rev 1)") for t in titles)
    assert {r[0] for r in rows("SELECT source_id FROM calls WHERE started_at > :w", w=watermark)} == set(created)
    log = rows("SELECT status, mode, records_synced FROM sync_log ORDER BY id")
    assert log == [("completed", "full", 80), ("completed", "incremental", in_lookback + 2)]


def test_throttling_error_waits_until_retry_after(fireflies_ws, instance, sandbox):
    sandbox.faults("fireflies", next_429=2, retry_after_s=1)
    result = run_sync(instance, FIREFLIES, WS)
    assert result.success
    requests = graphql_requests(sandbox)
    assert [r["status"] for r in requests] == [200, 200, 200, 200]  # GraphQL errors come in a 200
    assert requests[1]["ts_ms"] - requests[0]["ts_ms"] >= 900
    delays = retry_delays_logged(instance, result)
    assert len(delays) == 2 and all(800 <= d <= 1000 for d in delays)
    assert rows("SELECT count(*) FROM calls") == [(80,)]


def test_throttling_error_without_retry_after_backs_off_2_s(fireflies_ws, instance, sandbox):
    sandbox.faults("fireflies", next_429=1)
    result = run_sync(instance, FIREFLIES, WS)
    assert result.success
    assert retry_delays_logged(instance, result) == [2000]
    requests = graphql_requests(sandbox)
    assert 2000 <= requests[1]["ts_ms"] - requests[0]["ts_ms"] < 3500


def test_enforced_limit_is_retried_after_the_time_fireflies_gives(warehouse, instance, sandbox):
    sandbox.reset(sizes={"fireflies": {"transcripts": 150}})
    sandbox.limits("fireflies", 2, window_s=2)
    register(warehouse, instance, sandbox, WS, ["fireflies"], rate_limit=False)
    result = run_sync(instance, FIREFLIES, WS)
    assert result.success
    assert len(retry_delays_logged(instance, result)) >= 1
    assert rows("SELECT count(*) FROM calls") == [(150,)]


def test_graphql_errors_in_a_200_are_errors(fireflies_ws, sandbox):
    query = "query { transcripts(limit: 51) { id } }"
    with pytest.raises(VendorError) as caught:
        client().request("POST", "/graphql", json={"query": query})
    assert (caught.value.status, caught.value.code) == (200, "invalid_arguments")
    assert str(caught.value) == (
        "[Fireflies] HTTP 200 on POST /graphql: invalid_arguments: Invalid argument(s) were provided"
    )
    assert [r["status"] for r in graphql_requests(sandbox)] == [200]  # not retried


def test_rejected_api_key_fails_with_a_clear_error(fireflies_ws, sandbox):
    connection = WarehouseResource().get_connection(WS, "fireflies")
    wrong = connection.model_copy(update={"credentials": {"api_key": "not-a-key"}})
    with pytest.raises(VendorError, match=r"^\[Fireflies\] the API key was rejected \(auth_failed\)$"):
        next(FirefliesResource().client_for(wrong).transcripts(None, datetime.now(UTC)))


def test_lw1_bad_transcript_is_captured_and_the_rest_land(fireflies_ws, instance, sandbox):
    first = next(client().transcripts(None, datetime.now(UTC))).records
    bad_id = first[3].id
    sandbox.faults("fireflies", bad_records=[bad_id])
    result = run_sync(instance, FIREFLIES, WS)
    assert result.success
    assert rows("SELECT count(*), count(*) FILTER (WHERE source_id = :id) FROM calls", id=bad_id) == [(79, 0)]
    status, errors, failed = rows("SELECT status, errors, records_failed FROM sync_log")[0]
    assert (status, failed) == ("completed_with_errors", 1)
    assert errors == [f"Call: source_updated_at: Input should be a valid datetime ({bad_id})"]
    dead = rows("SELECT connector, entity, source_id, error, payload FROM sync_errors")
    assert [(c, e, s, err) for c, e, s, err, _ in dead] == [("fireflies", "calls", bad_id, errors[0])]
    assert dead[0][4]["date"] is None
    checks = [(ev.asset_key.path, ev.passed) for ev in result.get_asset_check_evaluations()]
    assert checks == [(["fireflies", "calls"], False)]
