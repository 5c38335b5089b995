"""monday.com's own behaviour, against the sandbox over HTTP through the real assets: items read board by
board in creation order, incremental reads by the ``__last_updated__`` day rule (whole days, so the
watermark's day is read again), one watermark across boards, then every read naming each board's active
items by id (monday has no feed of deleted items), the 60 requests per minute spacing, throttling reported
inside a 200 or as a 429, expiring cursors and GraphQL errors. What every connector does is in
tests/contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from dagster import AssetKey

from definitions import connector_assets
from resources.monday import ACCOUNT_QUERY
from tests.conftest import register
from tests.support import assert_evenly_spaced, latest_metadata, rows, run_sync

MONDAY = next(a for a in connector_assets if AssetKey(["monday", "tasks"]) in a.keys)
WS = "acme"
FAST_RETRY = {"backoff_base_s": 0.1, "max_backoff_s": 0.5}
BOARD_0, BOARD_1 = "4000000000", "4000000001"
BOARDS_QUERY = (
    "query ($limit: Int!, $page: Int!, $state: State) { boards(limit: $limit, page: $page, state: $state) "
    "{ id name state } }"
)
IDS_QUERY = (
    "query ($board: [ID!], $limit: Int!) { boards(ids: $board) { items_page(limit: $limit) { cursor items { id } } } }"
)
# After the items, every read names each board's active items, ids only, 500 a page (here: one page a board).
ID_LISTING = ["boards", "ids_page", "ids_page"]


def metadata(instance) -> dict:
    return latest_metadata(instance, "monday/tasks", WS)


def graphql_calls(sandbox) -> list[dict]:
    return [r for r in sandbox.requests("monday") if r["path"] == "/monday/v2"]


def root_field(request: dict) -> str:
    """What a request asks for: the account (a run's first request: which monday account the token reads),
    the boards, a board's items (``items_page``, ``next_items_page``), its active items' ids only
    (``ids_page``, ``next_ids_page``), or ``items`` by id."""
    query = request["body"]["query"]
    if query == ACCOUNT_QUERY:
        return "account"
    ids_only = "cursor items { id } }" in query
    if "next_items_page" in query:
        return "next_ids_page" if ids_only else "next_items_page"
    if "items_page" in query:
        return "ids_page" if ids_only else "items_page"
    return "items" if "items(ids:" in query else "boards"


def first_pages(sandbox) -> list[dict]:
    """The variables of each board's first items_page request."""
    return [r["body"]["variables"] for r in graphql_calls(sandbox) if root_field(r) == "items_page"]


def item_id(board: int, index: int) -> str:
    return str(5_000_000_000 + board * 100_000_000 + index)  # the sandbox's id scheme


def day_rule(day: str) -> dict:
    return {
        "rules": [
            {
                "column_id": "__last_updated__",
                "compare_attribute": "UPDATED_AT",
                "operator": "greater_than_or_equals",
                "compare_value": ["EXACT", day],
            }
        ],
        "operator": "and",
    }


def filter_day(watermark: float) -> str:
    """The day the client asks for: the watermark's UTC day less 12 h of account time-zone slack."""
    return (datetime.fromtimestamp(watermark, UTC) - timedelta(hours=12)).date().isoformat()


def revised() -> list[str]:
    """Items whose edit the warehouse holds (the sandbox appends " (rev N)" to an edited item's name)."""
    return [r[0] for r in rows("SELECT source_id FROM tasks WHERE title LIKE '% (rev %)' ORDER BY source_id")]


@pytest.fixture
def monday_ws(warehouse, instance, sandbox, unlimited):
    sandbox.reset(sizes={"monday": {"boards": 2, "items": 120}})
    register(warehouse, instance, sandbox, WS, ["monday"], retry=FAST_RETRY, page_size=25)
    return warehouse


def test_items_come_in_creation_order_and_incremental_reads_ask_for_the_watermarks_day(
    warehouse, instance, sandbox, unlimited
):
    """No order_by: in creation order an edited item keeps its place, so an edit never shifts an unread
    item behind the reader. monday filters by whole days, so items updated earlier on the watermark's day
    come back: they are re-read, unchanged, and not counted."""
    sandbox.reset(sizes={"monday": {"boards": 2, "items": 240}})
    register(warehouse, instance, sandbox, WS, ["monday"], page_size=50)
    assert run_sync(instance, MONDAY, WS).success
    calls = graphql_calls(sandbox)
    board_pages = ["items_page"] + ["next_items_page"] * 2
    assert [root_field(r) for r in calls] == ["account", "boards"] + board_pages * 2 + ID_LISTING
    assert [r["body"] for r in calls if root_field(r) == "boards"] == [
        {"query": BOARDS_QUERY, "variables": {"limit": 100, "page": 1, "state": "active"}}
    ] * 2
    assert [r["body"] for r in calls if root_field(r) == "ids_page"] == [
        {"query": IDS_QUERY, "variables": {"board": [board], "limit": 500}} for board in (BOARD_0, BOARD_1)
    ]
    assert first_pages(sandbox) == [{"board": [board], "limit": 50, "params": None} for board in (BOARD_0, BOARD_1)]
    assert not [r for r in calls if "order_by" in r["body"]["query"]]
    watermark = metadata(instance)["watermark"]
    edited = sandbox.mutate("monday", "items", 3)["ids"]
    sandbox.clear_requests("monday")

    assert run_sync(instance, MONDAY, WS).success
    day = filter_day(watermark)
    in_the_day = ["items_page", "next_items_page"]  # 72 items a board
    assert [root_field(r) for r in graphql_calls(sandbox)] == ["account", "boards"] + in_the_day * 2 + ID_LISTING
    assert first_pages(sandbox) == [
        {"board": [board], "limit": 50, "params": day_rule(day)} for board in (BOARD_0, BOARD_1)
    ]
    same_day = [r["id"] for r in sandbox.truth("monday", "items") if r["modified"] >= day and r["id"] not in edited]
    assert len(same_day) == 144  # per board, the 72 items from that day on (one every 30 minutes)
    meta = metadata(instance)
    assert (meta["mode"], meta["records_synced"], meta["records_reread"]) == ("incremental", 3, len(same_day))
    assert revised() == sorted(edited)


def test_an_item_edited_earlier_on_the_same_day_is_read_again_but_not_counted(monday_ws, instance, sandbox):
    assert run_sync(instance, MONDAY, WS).success
    earlier = sandbox.mutate("monday", "items", ids=[item_id(0, 3)])
    assert run_sync(instance, MONDAY, WS).success
    watermark = metadata(instance)["watermark"]
    assert datetime.fromtimestamp(watermark, UTC) == datetime.fromisoformat(earlier["modified_at"])
    later = sandbox.mutate("monday", "items", ids=[item_id(1, 4)])
    sandbox.clear_requests("monday")

    assert run_sync(instance, MONDAY, WS).success
    assert [v["params"] for v in first_pages(sandbox)] == [day_rule(filter_day(watermark))] * 2
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_reread"]) == (1, 1)  # the later edit; the earlier one again
    assert datetime.fromtimestamp(meta["watermark"], UTC) == datetime.fromisoformat(later["modified_at"])
    assert revised() == [item_id(0, 3), item_id(1, 4)]


def test_an_item_edited_on_a_board_already_read_is_synced_next_time(warehouse, instance, sandbox, unlimited):
    """Regression: board 0's item X is edited after board 0 was read, then board 1's item Y before its
    page is read. One watermark covers every board, and it used to be the greatest updated_at read, Y's,
    so the next sync dropped X (``updated < since``) although the day rule returned it. Now the watermark
    never passes the read's start, and X's edit is synced."""
    sandbox.reset(sizes={"monday": {"boards": 2, "items": 60}})
    register(warehouse, instance, sandbox, WS, ["monday"], page_size=20)
    x, y = item_id(0, 5), item_id(1, 25)  # Y is on board 1's second page
    sandbox.faults(
        "monday",
        latency_ms=1000,  # a second between responses: Y's updated_at (whole seconds) is later than X's
        mutate_after_requests=[
            {"after": 3, "mutation": {"entity": "items", "ids": [x]}},  # boards, board 0's two pages
            {"after": 4, "mutation": {"entity": "items", "ids": [y]}},  # board 1's first page
        ],
    )
    assert run_sync(instance, MONDAY, WS).success
    assert [root_field(r) for r in graphql_calls(sandbox)] == ["account", "boards"] + [
        "items_page",
        "next_items_page",
    ] * 2 + (ID_LISTING)
    modified = {r["id"]: r["modified"] for r in sandbox.truth("monday", "items")}
    assert modified[y] > modified[x]
    assert revised() == [y]
    first = metadata(instance)
    assert first["watermark"] == first["read_started_at"]  # not Y's time
    sandbox.clear_faults("monday")
    sandbox.clear_requests("monday")

    assert run_sync(instance, MONDAY, WS).success
    assert [v["params"] for v in first_pages(sandbox)] == [day_rule(filter_day(first["watermark"]))] * 2
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_reread"]) == (1, 1)  # X written; Y again, unchanged
    assert revised() == [x, y]


def test_an_item_archived_while_items_are_paged_loses_no_other_item(warehouse, instance, sandbox, unlimited):
    """items_page pages the board's active items by position: an item archived after its page was read moves
    every later item up one place, and the first item of the next page is never served. The id listing
    after the read names it; the warehouse lacks it, so it is fetched by id. The archived item, read while
    it was active, is not named by the listing: the next sync asks for it by id and marks it deleted."""
    sandbox.reset(sizes={"monday": {"boards": 1, "items": 60}})
    register(warehouse, instance, sandbox, WS, ["monday"], page_size=20)
    archived, skipped = item_id(0, 5), item_id(0, 20)
    sandbox.faults(
        "monday",
        # After the account, the boards and the first page of items.
        mutate_after_requests=[{"after": 3, "mutation": {"entity": "items", "action": "archive", "ids": [archived]}}],
    )
    assert run_sync(instance, MONDAY, WS).success
    calls = graphql_calls(sandbox)
    assert [root_field(r) for r in calls] == [
        "account",
        "boards",
        "items_page",  # items 0-19; then item 5 is archived
        "next_items_page",  # items 21-40: item 20 moved up to the place already read
        "next_items_page",  # items 41-59
        "boards",
        "ids_page",  # the 59 active items, item 20 among them
        "boards",  # which boards are active, for the item fetched by id
        "items",
    ]
    assert calls[-1]["body"]["variables"] == {"ids": [skipped]}  # the one named item the warehouse lacked
    assert {r[0] for r in rows("SELECT source_id FROM tasks")} == {item_id(0, i) for i in range(60)}
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_deleted"]) == (60, 0)
    sandbox.clear_faults("monday")
    sandbox.clear_requests("monday")

    assert run_sync(instance, MONDAY, WS).success
    assert [r["body"]["variables"] for r in graphql_calls(sandbox) if root_field(r) == "items"] == [{"ids": [archived]}]
    [(deleted, deleted_at)] = rows("SELECT is_deleted, deleted_at FROM tasks WHERE source_id = :i", i=archived)
    [truth] = [r for r in sandbox.truth("monday", "items") if r["id"] == archived]
    assert (deleted, deleted_at, truth["state"]) == (True, datetime.fromisoformat(truth["modified"]), "archived")
    assert metadata(instance)["records_deleted"] == 1
    assert rows("SELECT count(*) FROM tasks WHERE NOT is_deleted") == [(59,)]


def test_a_task_row_maps_board_group_status_priority_and_due_date(monday_ws, instance, sandbox):
    assert run_sync(instance, MONDAY, WS).success
    (title, status, priority, due, board, group, props) = rows(
        "SELECT title, status, priority, due_date, board, group_name, properties FROM tasks WHERE source_id = :id",
        id=item_id(0, 0),
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
    assert rows("SELECT board, count(*) FROM tasks GROUP BY board ORDER BY board") == [
        ("Customer Onboarding", 60),
        ("Sales Pipeline", 60),
    ]


def test_requests_are_spaced_a_second_apart_at_60_per_minute_with_no_429(warehouse, instance, sandbox):
    """The platform's monday budget: the default 60 requests/minute, evenly spaced, against a sandbox
    enforcing 60 per rolling minute."""
    # the account, boards, 79 pages of 10 items, boards again and 2 pages of ids (500, 290): 84 requests
    sandbox.reset(sizes={"monday": {"boards": 1, "items": 790}})
    register(warehouse, instance, sandbox, WS, ["monday"], page_size=10)
    enforced = requests.get(f"{sandbox.url}/_sandbox/monday/limits", timeout=10).json()
    assert enforced == {"limit": 60, "window_s": 60.0, "enforce_limits": True}
    assert run_sync(instance, MONDAY, WS).success
    calls = graphql_calls(sandbox)
    assert [root_field(r) for r in calls] == (
        ["account", "boards", "items_page"] + ["next_items_page"] * 78 + ["boards", "ids_page", "next_ids_page"]
    )
    assert [r["status"] for r in calls] == [200] * 84
    gaps = assert_evenly_spaced([c["ts_ms"] / 1000 for c in calls], 1.0)
    assert max(gaps) < 1.5  # evenly spaced, not bursts and pauses
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM tasks") == [(790, 790)]


@pytest.mark.parametrize("code", ["COMPLEXITY_BUDGET_EXHAUSTED", "complexityBudgetExhausted"])
def test_a_complexity_budget_error_in_a_200_waits_the_seconds_it_gives(monday_ws, instance, sandbox, code):
    sandbox.faults("monday", complexity_exhausted=1, complexity_retry_s=2, complexity_code=code)
    result = run_sync(instance, MONDAY, WS)
    assert result.success
    calls = graphql_calls(sandbox)
    assert [r["status"] for r in calls[:2]] == [200, 200]
    assert calls[0]["body"] == calls[1]["body"]  # the same query, repeated
    assert 2.0 <= (calls[1]["ts_ms"] - calls[0]["ts_ms"]) / 1000 < 3.0  # the hint, not the 0.1 s backoff
    assert f"[Monday Client] Rate limited ({code}), retrying in 2000ms" in [
        e.user_message for e in instance.all_logs(result.run_id)
    ]
    assert rows("SELECT count(*) FROM tasks") == [(120,)]


def test_an_http_429_waits_the_seconds_it_gives(monday_ws, instance, sandbox):
    sandbox.faults("monday", next_429=1, retry_after_s=1)
    result = run_sync(instance, MONDAY, WS)
    assert result.success
    calls = graphql_calls(sandbox)
    assert [r["status"] for r in calls[:2]] == [429, 200]
    assert 1.0 <= (calls[1]["ts_ms"] - calls[0]["ts_ms"]) / 1000 < 2.0
    assert "[Monday Client] Rate limited (429), retrying in 1000ms" in [
        e.user_message for e in instance.all_logs(result.run_id)
    ]


def test_an_expired_cursor_restarts_the_board_without_loss_or_double_counting(warehouse, instance, sandbox, unlimited):
    """Cursors expire after 60 minutes; the board is read again from its first page. Items read twice
    are unchanged the second time: counted as re-read, never as synced."""
    sandbox.reset(sizes={"monday": {"boards": 2, "items": 400}})
    register(warehouse, instance, sandbox, WS, ["monday"], retry=FAST_RETRY, page_size=100)
    sandbox.faults("monday", expire_cursors=1)
    assert run_sync(instance, MONDAY, WS).success
    calls = graphql_calls(sandbox)
    assert [root_field(r) for r in calls] == [
        "account",
        "boards",
        "items_page",
        "next_items_page",  # CursorExpiredError
        "items_page",
        "next_items_page",
        "items_page",
        "next_items_page",
        *ID_LISTING,
    ]
    assert calls[4]["body"] == calls[2]["body"]  # board 0 again, from its first page
    assert first_pages(sandbox) == [{"board": [b], "limit": 100, "params": None} for b in (BOARD_0, BOARD_0, BOARD_1)]
    meta = metadata(instance)
    assert (meta["records_synced"], meta["records_reread"], meta["records_failed"]) == (400, 100, 0)
    expected = {item_id(b, i) for b in range(2) for i in range(200)}
    assert {r[0] for r in rows("SELECT source_id FROM tasks")} == expected
    assert rows("SELECT count(*) FROM tasks") == [(400,)]


def test_a_graphql_query_error_fails_with_mondays_code_and_message(monday_ws, instance, sandbox):
    sandbox.faults("monday", query_error=1)
    assert not run_sync(instance, MONDAY, WS).success
    assert rows("SELECT status, error FROM sync_log") == [
        (
            "failed",
            "[Monday] HTTP 200 on POST /v2: GraphQLValidationError: Field 'itemz' doesn't exist on type 'Board'",
        )
    ]
    assert [r["status"] for r in graphql_calls(sandbox)] == [200]  # not retried


def test_a_rejected_token_fails_without_retrying_or_refreshing(monday_ws, instance, sandbox):
    sandbox.faults("monday", revoke=True)
    assert not run_sync(instance, MONDAY, WS).success
    assert rows("SELECT status, error FROM sync_log") == [
        ("failed", "[Monday] the API token was rejected (401); monday tokens cannot be refreshed")
    ]
    assert [r["status"] for r in graphql_calls(sandbox)] == [401]
