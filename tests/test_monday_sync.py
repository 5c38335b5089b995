"""monday.com end to end: sandbox over HTTP -> client -> sync loop -> Postgres, through Dagster."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from dagster import AssetKey

from definitions import connector_assets
from tests.conftest import register
from tests.support import assert_evenly_spaced, latest_metadata, rows, run_sync

MONDAY = next(a for a in connector_assets if AssetKey(["monday", "tasks"]) in a.keys)
WS = "acme"
FAST_RETRY = {"backoff_base_s": 0.1, "max_backoff_s": 0.5}
# 2 boards x 60 items, 25 per page: boards + 3 pages per board = 7 requests
SIZES = {"monday": {"boards": 2, "items": 120}}


def metadata(instance) -> dict:
    return latest_metadata(instance, "monday/tasks", WS)


def graphql_calls(sandbox) -> list[dict]:
    return [r for r in sandbox.requests("monday") if r["path"] == "/monday/v2"]


def root_field(request: dict) -> str:
    query = request["body"]["query"]
    return "next_items_page" if "next_items_page" in query else "items_page" if "items_page" in query else "boards"


def day_rule(day: str) -> list[dict]:
    return [
        {
            "column_id": "__last_updated__",
            "compare_attribute": "UPDATED_AT",
            "operator": "greater_than_or_equals",
            "compare_value": ["EXACT", day],
        }
    ]


def filter_day(watermark: str) -> str:
    """The day the client asks for: the watermark's UTC day less 12 h of account time-zone slack."""
    return (datetime.fromisoformat(watermark) - timedelta(hours=12)).date().isoformat()


@pytest.fixture
def monday_ws(warehouse, instance, sandbox):
    sandbox.reset(sizes=SIZES)
    register(warehouse, instance, sandbox, WS, ["monday"], rate_limit=False, retry=FAST_RETRY, page_size=25)
    return warehouse


def test_full_then_incremental_uses_the_day_rule(monday_ws, instance, sandbox):
    assert run_sync(instance, MONDAY, WS).success
    full = metadata(instance)
    assert (full["mode"], full["records_synced"], full["pages"], full["api_calls"]) == ("full", 120, 6, 7)
    calls = graphql_calls(sandbox)
    assert [root_field(r) for r in calls] == ["boards"] + ["items_page", "next_items_page", "next_items_page"] * 2
    assert {r["status"] for r in calls} == {200}
    first_page = calls[1]["body"]["variables"]
    assert first_page == {
        "board": ["4000000000"],
        "limit": 25,
        "params": {"order_by": [{"column_id": "__last_updated__", "direction": "asc"}]},
    }
    (max_updated,) = rows("SELECT max(source_updated_at) FROM tasks")[0]
    assert datetime.fromisoformat(full["watermark"]) == max_updated

    # Typed columns come from the item's board, group and status/priority/date columns.
    (title, status, priority, due, board, group, props) = rows(
        "SELECT title, status, priority, due_date, board, group_name, properties FROM tasks WHERE source_id = :id",
        id="5000000000",
    )[0]
    columns = {c["id"]: c for c in props["column_values"]}
    assert (title, board, group) == (props["name"], "Sales Pipeline", props["group"]["title"])
    assert (status, priority) == (columns["status"]["text"], columns["priority"]["text"])
    due_value = json.loads(columns["date4"]["value"]) if columns["date4"]["value"] else None
    expected_due = (
        datetime.fromisoformat(f"{due_value['date']}T{due_value.get('time', '00:00:00')}+00:00") if due_value else None
    )
    assert due == expected_due
    undated = rows("SELECT count(*) FROM tasks WHERE properties->'column_values'->1->>'value' IS NULL")[0][0]
    assert rows("SELECT count(*) FROM tasks WHERE due_date IS NULL") == [(undated,)]
    assert 0 < undated < 120
    assert rows("SELECT count(DISTINCT board) FROM tasks") == [(2,)]

    mutated = sandbox.mutate("monday", "items", 3)["ids"]
    sandbox.clear_requests("monday")
    assert run_sync(instance, MONDAY, WS).success
    after = metadata(instance)
    assert (after["mode"], after["records_synced"]) == ("incremental", 3)
    item_pages = [r for r in graphql_calls(sandbox) if root_field(r) == "items_page"]
    assert [r["body"]["variables"]["params"] for r in item_pages] == [
        {
            "order_by": [{"column_id": "__last_updated__", "direction": "asc"}],
            "rules": day_rule(filter_day(full["watermark"])),
            "operator": "and",
        }
    ] * 2
    watermark = datetime.fromisoformat(full["watermark"])
    changed = rows("SELECT source_id FROM tasks WHERE source_updated_at > :w", w=watermark)
    assert {r[0] for r in changed} == set(mutated)
    assert rows("SELECT count(*) FROM tasks") == [(120,)]
    assert rows("SELECT status, mode, records_synced FROM sync_log ORDER BY id") == [
        ("completed", "full", 120),
        ("completed", "incremental", 3),
    ]


def test_same_day_boundary_picks_up_later_edits_and_skips_earlier_ones(monday_ws, instance, sandbox):
    now = datetime.now(UTC)
    to_midnight = (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now).total_seconds()
    if to_midnight < 15:  # all edits below must share one UTC day
        time.sleep(to_midnight + 1)
    earlier = sandbox.mutate("monday", "items", ids=["5000000003"])
    time.sleep(1.1)  # monday's updated_at has second precision
    at_watermark = sandbox.mutate("monday", "items", ids=["5100000004"])
    assert run_sync(instance, MONDAY, WS).success
    watermark = metadata(instance)["watermark"]
    assert watermark == datetime.fromisoformat(at_watermark["modified_at"]).isoformat(timespec="milliseconds")
    written_before = dict(rows("SELECT source_id, updated_at FROM tasks"))

    time.sleep(1.1)
    later = sandbox.mutate("monday", "items", ids=["5000000010"])
    assert later["modified_at"][:10] == earlier["modified_at"][:10] == watermark[:10]
    sandbox.clear_requests("monday")
    assert run_sync(instance, MONDAY, WS).success

    meta = metadata(instance)
    assert (meta["mode"], meta["records_synced"]) == ("incremental", 1)
    assert meta["watermark"] == datetime.fromisoformat(later["modified_at"]).isoformat(timespec="milliseconds")
    item_pages = [r for r in graphql_calls(sandbox) if root_field(r) == "items_page"]
    assert {json.dumps(r["body"]["variables"]["params"]["rules"]) for r in item_pages} == {
        json.dumps(day_rule(filter_day(watermark)))
    }
    written_after = dict(rows("SELECT source_id, updated_at FROM tasks"))
    assert [i for i in written_after if written_after[i] != written_before[i]] == ["5000000010"]


def test_qw5_80_requests_spaced_1_s_apart_with_no_429(warehouse, instance, sandbox):
    """QW-5: the default 60 requests/minute, evenly spaced, against a sandbox enforcing 60/minute."""
    sandbox.reset(sizes={"monday": {"boards": 1, "items": 790}})  # boards + 79 pages of 10 = 80 requests
    register(warehouse, instance, sandbox, WS, ["monday"], page_size=10)
    enforced = requests.get(f"{sandbox.url}/_sandbox/monday/limits", timeout=10).json()
    assert enforced == {"limit": 60, "window_s": 60.0, "enforce_limits": True}
    assert run_sync(instance, MONDAY, WS).success
    calls = graphql_calls(sandbox)
    assert len(calls) == 80
    assert [r["status"] for r in calls] == [200] * 80
    gaps = assert_evenly_spaced([c["ts_ms"] / 1000 for c in calls], 1.0)
    assert max(gaps) < 1.5  # evenly spaced, not bursts and pauses
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM tasks") == [(790, 790)]


@pytest.mark.parametrize("code", ["COMPLEXITY_BUDGET_EXHAUSTED", "complexityBudgetExhausted"])
def test_complexity_budget_error_in_a_200_waits_the_hinted_delay(monday_ws, instance, sandbox, code):
    sandbox.faults("monday", complexity_exhausted=1, complexity_retry_s=2, complexity_code=code)
    assert run_sync(instance, MONDAY, WS).success
    calls = graphql_calls(sandbox)
    assert [r["status"] for r in calls[:2]] == [200, 200]
    assert calls[0]["body"] == calls[1]["body"]  # the same query, repeated
    assert 2.0 <= (calls[1]["ts_ms"] - calls[0]["ts_ms"]) / 1000 < 3.0  # the hint, not the 0.1 s backoff
    assert len(calls) == 8
    assert rows("SELECT count(*) FROM tasks") == [(120,)]


def test_http_429_is_throttling_and_honours_retry_after(monday_ws, instance, sandbox):
    sandbox.faults("monday", next_429=1, retry_after_s=1)
    assert run_sync(instance, MONDAY, WS).success
    calls = graphql_calls(sandbox)
    assert [r["status"] for r in calls[:2]] == [429, 200]
    assert (calls[1]["ts_ms"] - calls[0]["ts_ms"]) / 1000 >= 1.0
    assert rows("SELECT count(*) FROM tasks") == [(120,)]


def test_expired_cursor_restarts_the_board_from_its_progress_without_duplicates(warehouse, instance, sandbox):
    # 200 items per board, one every 30 min: a board spans ~4 days, so "from its progress" is visible.
    sandbox.reset(sizes={"monday": {"boards": 2, "items": 400}})
    register(warehouse, instance, sandbox, WS, ["monday"], rate_limit=False, retry=FAST_RETRY, page_size=100)
    sandbox.faults("monday", expire_cursors=1)
    assert run_sync(instance, MONDAY, WS).success
    calls = graphql_calls(sandbox)
    assert [root_field(r) for r in calls] == [
        "boards",
        "items_page",
        "next_items_page",
        "items_page",
        "next_items_page",
        "items_page",
        "next_items_page",
    ]
    assert "CursorExpiredError" not in json.dumps(calls[1]["body"])
    restart = calls[3]["body"]["variables"]
    assert restart["board"] == ["4000000000"]
    # Page 1 ended at item 99 (2025-01-03T01:30Z); minus 12 h of zone slack -> from 2025-01-02, not from zero.
    assert restart["params"]["rules"] == day_rule("2025-01-02")
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_failed"]) == (400, 0)  # nothing yielded twice
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM tasks") == [(400, 400)]
    expected = {str(5_000_000_000 + b * 100_000_000 + i) for b in range(2) for i in range(200)}
    assert {r[0] for r in rows("SELECT source_id FROM tasks")} == expected


def test_bad_item_is_captured_and_the_rest_land(monday_ws, instance, sandbox):
    """LW-1 for monday."""
    bad_id = "5100000007"
    sandbox.faults("monday", bad_records=[bad_id])
    result = run_sync(instance, MONDAY, WS)
    assert result.success
    assert rows("SELECT count(*) FROM tasks") == [(119,)]
    status, errors, failed = rows("SELECT status, errors, records_failed FROM sync_log")[0]
    assert (status, failed, len(errors)) == ("completed_with_errors", 1, 1)
    assert errors[0].startswith("Task: source_updated_at: ") and errors[0].endswith(f" ({bad_id})")
    dead = rows("SELECT entity, source_id, error, payload->>'updated_at' FROM sync_errors")
    assert dead == [("tasks", bad_id, errors[0], "not-a-date")]
    assert [(e.passed, e.severity.value) for e in result.get_asset_check_evaluations()] == [(False, "WARN")]


def test_graphql_query_error_fails_with_mondays_message(monday_ws, instance, sandbox):
    sandbox.faults("monday", query_error=1)
    assert not run_sync(instance, MONDAY, WS).success
    assert rows("SELECT status, error FROM sync_log") == [
        ("failed", "[Monday] GraphQL error GraphQLValidationError: Field 'itemz' doesn't exist on type 'Board'")
    ]
    assert [r["status"] for r in graphql_calls(sandbox)] == [200]  # not retried


def test_rejected_token_fails_without_retrying(monday_ws, instance, sandbox):
    sandbox.faults("monday", revoke=True)
    assert not run_sync(instance, MONDAY, WS).success
    assert rows("SELECT status, error FROM sync_log") == [
        ("failed", "[Monday] the API token was rejected (401); monday tokens cannot be refreshed")
    ]
    assert [r["status"] for r in graphql_calls(sandbox)] == [401]
