"""monday.com item and board states, ``items(ids:)`` and item ordering, over HTTP (see conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

PAGE = (
    "query ($board: [ID!], $limit: Int!, $params: ItemsQuery) { boards(ids: $board) { "
    "items_page(limit: $limit, query_params: $params) { cursor items { id state updated_at created_at } } } }"
)
NEXT = "query ($cursor: String!) { next_items_page(cursor: $cursor, limit: 4) { cursor items { id state } } }"
BOARD = "4000000000"


def item(i: int, board: int = 0) -> str:
    return str(5_000_000_000 + board * 100_000_000 + i)


@pytest.fixture
def monday(sandbox_url: str) -> dict[str, Any]:
    body = {"seed": 2, "sizes": {"monday": {"boards": 2, "items": 20}}}
    requests.post(f"{sandbox_url}/_sandbox/reset", json=body).raise_for_status()
    token = requests.get(f"{sandbox_url}/_sandbox/connections").json()["monday"]["credentials"]["api_token"]
    return {"url": sandbox_url, "headers": {"Authorization": token}}


def gql(m: dict[str, Any], query: str, **variables: Any) -> dict[str, Any]:
    r = requests.post(f"{m['url']}/monday/v2", json={"query": query, "variables": variables}, headers=m["headers"])
    assert r.status_code == 200, r.text
    return r.json()


def mutate(m: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(f"{m['url']}/_sandbox/monday/mutate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def board_items(m: dict[str, Any], params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    first = gql(m, PAGE, board=[BOARD], limit=4, params=params)["data"]["boards"][0]["items_page"]
    out, cursor = first["items"], first["cursor"]
    while cursor:
        page = gql(m, NEXT, cursor=cursor)["data"]["next_items_page"]
        out, cursor = out + page["items"], page["cursor"]
    return out


def test_items_page_returns_active_items_only(monday):
    archived = mutate(monday, {"entity": "items", "action": "archive", "ids": [item(1)]})
    mutate(monday, {"entity": "items", "action": "delete", "ids": [item(4)]})
    mutate(monday, {"entity": "items", "action": "purge", "ids": [item(6)]})
    listed = board_items(monday)
    assert [i["id"] for i in listed] == [item(i) for i in range(10) if i not in (1, 4, 6)]
    assert {i["state"] for i in listed} == {"active"}
    assert archived["ids"] == [item(1)] and archived["modified_at"].endswith("Z")


def test_items_by_id_returns_any_state_unless_excluding_nonactive(monday):
    archived = mutate(monday, {"entity": "items", "action": "archive", "ids": [item(1)]})
    mutate(monday, {"entity": "items", "action": "delete", "ids": [item(2)]})
    mutate(monday, {"entity": "items", "action": "purge", "ids": [item(3)]})
    query = "query ($ids: [ID!], $x: Boolean) { items(ids: $ids, exclude_nonactive: $x) { id state updated_at } }"
    wanted = [item(0), item(1), item(2), item(3), "5999999999", item(5, board=1)]
    everything = gql(monday, query, ids=wanted, x=False)["data"]["items"]
    assert [(i["id"], i["state"]) for i in everything] == [
        (item(0), "active"),
        (item(1), "archived"),
        (item(2), "deleted"),
        (item(5, board=1), "active"),
    ]
    assert everything[1]["updated_at"] == archived["modified_at"]  # archiving bumps updated_at
    active = gql(monday, query, ids=wanted, x=True)["data"]["items"]
    assert [i["id"] for i in active] == [item(0), item(5, board=1)]
    literal = gql(monday, f"{{ items(ids: [{item(2)}]) {{ id state }} }}")["data"]["items"]
    assert [(i["id"], i["state"]) for i in literal] == [(item(2), "deleted")]
    too_many = gql(monday, query, ids=[item(0)] * 101)
    assert too_many["errors"][0]["extensions"]["code"] == "InvalidArgumentException"


def test_restore_makes_an_item_active_again_and_bumps_updated_at(monday):
    mutate(monday, {"entity": "items", "action": "archive", "ids": [item(2)]})
    restored = mutate(monday, {"entity": "items", "action": "restore", "ids": [item(2)]})
    ordered = board_items(monday, {"order_by": [{"column_id": "__last_updated__", "direction": "desc"}]})
    assert ordered[0]["id"] == item(2) and ordered[0]["updated_at"] == restored["modified_at"]
    bad = requests.post(
        f"{monday['url']}/_sandbox/monday/mutate", json={"entity": "items", "action": "restore", "ids": [item(2)]}
    )
    assert bad.status_code == 400


def test_items_come_in_creation_order_by_default_and_by_creation_log(monday):
    mutate(monday, {"entity": "items", "ids": [item(0)]})  # the oldest item becomes the most recently updated
    default = [i["id"] for i in board_items(monday)]
    assert default == [item(i) for i in range(10)]
    created = board_items(monday, {"order_by": [{"column_id": "__creation_log__", "direction": "asc"}]})
    assert [i["id"] for i in created] == default
    assert [i["created_at"] for i in created] == sorted(i["created_at"] for i in created)
    newest_first = board_items(monday, {"order_by": [{"column_id": "__creation_log__", "direction": "desc"}]})
    assert [i["id"] for i in newest_first] == default[::-1]
    updated = board_items(monday, {"order_by": [{"column_id": "__last_updated__", "direction": "asc"}]})
    assert [i["id"] for i in updated] == [item(i) for i in range(1, 10)] + [item(0)]


def test_archived_board_is_hidden_unless_state_asks_for_it(monday):
    board_query = "query ($s: State) { boards(state: $s) { id name state } }"
    assert [b["state"] for b in gql(monday, board_query)["data"]["boards"]] == ["active", "active"]
    result = mutate(monday, {"entity": "boards", "action": "archive", "ids": [BOARD]})
    assert result["ids"] == [BOARD]
    assert [b["id"] for b in gql(monday, board_query)["data"]["boards"]] == ["4000000001"]
    assert gql(monday, "{ boards(state: archived) { id state } }")["data"]["boards"] == [
        {"id": BOARD, "name": "Sales Pipeline", "state": "archived"}
    ]
    assert [b["state"] for b in gql(monday, board_query, s="all")["data"]["boards"]] == ["archived", "active"]
    assert gql(monday, PAGE, board=[BOARD], limit=4)["data"]["boards"] == []  # its items_page is out of reach
    items = gql(monday, "{ items(ids: [5000000003]) { id state } }")["data"]["items"]
    assert [(i["id"], i["state"]) for i in items] == [(item(3), "active")]  # items keep their own state
    mutate(monday, {"entity": "boards", "action": "restore", "ids": [BOARD]})
    assert len(board_items(monday)) == 10
    truth = requests.get(f"{monday['url']}/_sandbox/monday/truth", params={"entity": "boards"}).json()["records"]
    assert [r["state"] for r in truth] == ["live", "live"]


def test_graphql_errors_do_not_count_toward_mutate_after_requests(monday):
    trigger = {"after": 1, "mutation": {"entity": "items", "action": "archive", "ids": [item(9)]}}
    body = {"query_error": 1, "mutate_after_requests": [trigger]}
    requests.post(f"{monday['url']}/_sandbox/monday/faults", json=body).raise_for_status()
    failed = gql(monday, PAGE, board=[BOARD], limit=4)  # HTTP 200 carrying a GraphQL error
    assert failed["errors"][0]["extensions"]["code"] == "GraphQLValidationError"
    (waiting,) = requests.get(f"{monday['url']}/_sandbox/monday/faults").json()["mutate_after_requests"]
    assert (waiting["served"], waiting["fired"]) == (0, False)
    # The first successful page fires the trigger, so item 9 is archived before the pager reaches it.
    assert [i["id"] for i in board_items(monday)] == [item(i) for i in range(9)]
    (fired,) = requests.get(f"{monday['url']}/_sandbox/monday/faults").json()["mutate_after_requests"]
    assert (fired["served"], fired["fired"], fired["result"]["ids"]) == (1, True, [item(9)])
