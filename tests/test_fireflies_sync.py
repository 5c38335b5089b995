"""Fireflies.ai's own behaviour, against the sandbox over HTTP through the real assets: the ``transcripts``
query's date window (Fireflies filters on the meeting date, so incremental reads look back a day), paged
by meeting date (each page up to the oldest date read, never by ``skip``), its units (epoch ms, minutes),
and GraphQL errors inside a 200, throttling among them, which names the instant to retry at. What every
connector does is in tests/contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetKey

from definitions import connector_assets
from resources.fireflies import FirefliesResource
from resources.http import VendorError
from resources.warehouse import WarehouseResource
from tests.conftest import register
from tests.support import latest_metadata, rows, run_sync

FIREFLIES = next(a for a in connector_assets if AssetKey(["fireflies", "calls"]) in a.keys)
WS = "acme"
# Fireflies throttles inside a 200: the log names its code.
RETRY_LINE = re.compile(r"^\[Fireflies Client\] Rate limited \(too_many_requests\), retrying in (\d+)ms$")


def metadata(instance) -> dict:
    return latest_metadata(instance, "fireflies/calls", WS)


def graphql_requests(sandbox) -> list[dict]:
    """Every GraphQL request, the run's first (which user the key belongs to) included."""
    return [r for r in sandbox.requests("fireflies") if r["path"] == "/fireflies/graphql"]


def transcript_requests(sandbox) -> list[dict]:
    return [r for r in graphql_requests(sandbox) if "transcripts(" in r["body"]["query"]]


def retry_delays_logged(instance, result) -> list[int]:
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    return [int(m.group(1)) for m in (RETRY_LINE.match(msg) for msg in messages) if m]


def ms_text(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meeting_dates(sandbox) -> list[datetime]:
    """Every live transcript's meeting date, newest first (the order Fireflies serves)."""
    truth = sandbox.truth("fireflies", "transcripts")
    return sorted((datetime.fromisoformat(r["modified"]) for r in truth if r["state"] == "live"), reverse=True)


def just_past(moment: datetime) -> str:
    """A page's ``toDate``: one millisecond past the oldest meeting the read has seen."""
    return ms_text(moment + timedelta(milliseconds=1))


@pytest.fixture
def fireflies_ws(warehouse, instance, sandbox, unlimited):
    register(warehouse, instance, sandbox, WS, ["fireflies"])
    return warehouse


def test_transcripts_are_read_in_a_date_window_from_a_day_before_the_watermark(fireflies_ws, instance, sandbox):
    before = datetime.now(UTC)
    assert run_sync(instance, FIREFLIES, WS).success
    full = [r["body"]["variables"] for r in transcript_requests(sandbox)]
    # No fromDate: everything up to now. The second page ends just past the oldest meeting of the first:
    # that meeting comes again (skipped), then the 30 older ones.
    assert full[1:] == [{"limit": 50, "skip": 0, "toDate": just_past(meeting_dates(sandbox)[49])}]
    assert {k: v for k, v in full[0].items() if k != "toDate"} == {"limit": 50, "skip": 0}
    assert before <= datetime.fromisoformat(full[0]["toDate"]) <= datetime.now(UTC) + timedelta(milliseconds=1)
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM calls") == [(80, 80)]
    newest = datetime.fromisoformat(max(r["modified"] for r in sandbox.truth("fireflies", "transcripts")))
    assert datetime.fromtimestamp(metadata(instance)["watermark"], UTC) == newest
    sandbox.clear_requests("fireflies")

    assert run_sync(instance, FIREFLIES, WS).success
    [variables] = [r["body"]["variables"] for r in transcript_requests(sandbox)]
    assert {k: v for k, v in variables.items() if k != "toDate"} == {
        "fromDate": ms_text(newest - timedelta(days=1)),
        "limit": 50,
        "skip": 0,
    }
    (in_lookback,) = rows("SELECT count(*) FROM calls WHERE started_at >= :s", s=newest - timedelta(days=1))[0]
    assert in_lookback == 12  # a meeting every 2 to 2.5 hours
    meta = metadata(instance)
    assert (meta["mode"], meta["records_synced"], meta["records_reread"]) == ("incremental", 0, in_lookback)


def test_a_transcript_deleted_while_the_read_pages_loses_no_other_transcript(fireflies_ws, instance, sandbox):
    """Regression: pages were ``skip`` offsets into the newest-first order, so a transcript of page 1 deleted
    before page 2 moved every older one up a place, and the 51st newest was never read. Paged by meeting
    date, the second page starts at the oldest meeting read whatever left the list."""
    dates = meeting_dates(sandbox)
    deleted = max(sandbox.truth("fireflies", "transcripts"), key=lambda r: r["modified"])["id"]  # read on page 1
    deletion = {"entity": "transcripts", "action": "delete", "ids": [deleted]}
    # After the run's first request (the key's user) and page 1.
    sandbox.faults("fireflies", mutate_after_requests=[{"after": 2, "mutation": deletion}])
    assert run_sync(instance, FIREFLIES, WS).success
    sent = [r["body"]["variables"] for r in transcript_requests(sandbox)]
    assert [(v["skip"], v["toDate"]) for v in sent[1:]] == [(0, just_past(dates[49]))]
    live = {r["id"] for r in sandbox.truth("fireflies", "transcripts") if r["state"] == "live"}
    assert len(live) == 79 and deleted not in live
    assert {r[0] for r in rows("SELECT source_id FROM calls WHERE NOT is_deleted")} == live | {deleted}

    # Fireflies has no deletion feed: the next full read names every transcript, and the one it no longer
    # has is looked up by id and marked deleted.
    sandbox.clear_faults("fireflies")
    assert run_sync(instance, FIREFLIES, WS, tags={"full_refresh": "true"}).success
    assert rows("SELECT source_id FROM calls WHERE is_deleted") == [(deleted,)]
    assert metadata(instance)["records_deleted"] == 1


def test_a_call_row_converts_epoch_ms_and_minutes_and_names_attendees(fireflies_ws, instance, sandbox):
    assert run_sync(instance, FIREFLIES, WS).success
    source_id, title, started, duration, url, participants, raw = rows(
        "SELECT source_id, title, started_at, duration_seconds, url, participants, properties FROM calls "
        "ORDER BY started_at LIMIT 1"
    )[0]
    assert title == raw["title"] and url == f"https://app.fireflies.ai/view/{source_id}"
    assert int(started.timestamp() * 1000) == raw["date"]  # epoch ms
    assert duration == round(raw["duration"] * 60)  # minutes
    names = {a["email"]: a["displayName"] for a in raw["meeting_attendees"]}
    assert len(participants) >= 2
    assert participants == [{"name": names[e], "email": e} for e in raw["participants"]]


def test_throttling_inside_a_200_waits_until_the_instant_it_names(fireflies_ws, instance, sandbox):
    """Fireflies throttles with a too_many_requests GraphQL error in an HTTP 200, naming the instant to
    retry at (``extensions.metadata.retryAfter``, epoch ms): the wait is that instant less our now."""
    sandbox.faults("fireflies", next_429=2, retry_after_s=1)
    result = run_sync(instance, FIREFLIES, WS)
    assert result.success
    requests = graphql_requests(sandbox)
    assert [r["status"] for r in requests] == [200] * 5  # the first request throttled twice, then two pages
    assert requests[0]["body"] == requests[1]["body"] == requests[2]["body"]
    assert requests[1]["ts_ms"] - requests[0]["ts_ms"] >= 900
    delays = retry_delays_logged(instance, result)
    assert len(delays) == 2 and all(800 <= d <= 1000 for d in delays), delays
    assert rows("SELECT count(*) FROM calls") == [(80,)]


def test_an_enforced_limit_is_retried_at_the_instant_fireflies_gives(warehouse, instance, sandbox, unlimited):
    sandbox.reset(sizes={"fireflies": {"transcripts": 150}})
    sandbox.limits("fireflies", 2, window_s=2)
    register(warehouse, instance, sandbox, WS, ["fireflies"])
    result = run_sync(instance, FIREFLIES, WS)
    assert result.success
    # Each page after the first ends just past the oldest meeting read (which it serves again): 50 + 49 + 49
    # + 2 transcripts. A request over two per two seconds waits for the window to free.
    sent = transcript_requests(sandbox)
    dates = meeting_dates(sandbox)
    pages = list(dict.fromkeys(r["body"]["variables"]["toDate"] for r in sent))
    assert pages[1:] == [just_past(dates[n]) for n in (49, 98, 147)]
    assert {r["body"]["variables"]["skip"] for r in sent} == {0}
    assert {r["status"] for r in sent} == {200}  # throttling is a GraphQL error in a 200
    delays = retry_delays_logged(instance, result)
    everything = graphql_requests(sandbox)  # the key's user, then the pages, with the retries among them
    assert len(everything) == 5 + len(delays) and delays and all(0 < d <= 2000 for d in delays), delays
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM calls") == [(150, 150)]


def test_graphql_errors_in_a_200_are_errors_and_not_retried(fireflies_ws, sandbox):
    client = FirefliesResource().client_for(WarehouseResource().get_connection(WS, "fireflies"))
    with pytest.raises(VendorError) as caught:
        client.request("POST", "/graphql", json={"query": "query { transcripts(limit: 51) { id } }"})
    assert (caught.value.status, caught.value.code) == (200, "invalid_arguments")
    assert str(caught.value) == (
        "[Fireflies] HTTP 200 on POST /graphql: invalid_arguments: Invalid argument(s) were provided"
    )
    assert [r["status"] for r in graphql_requests(sandbox)] == [200]
