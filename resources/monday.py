"""monday.com GraphQL client: boards, then each board's items with ``items_page`` / ``next_items_page``.

monday answers application errors with HTTP 200 and an ``errors`` array: complexity-budget and rate-limit
codes (either casing) are throttling that waits the ``retry_in_seconds`` the error carries; an expired
cursor restarts that board's pagination; anything else fails the call with monday's code and message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, ClassVar

import requests
from pydantic import ConfigDict, Field

from resources.connections import Connection
from resources.graphql import GraphQLClient
from resources.http import MAX_RETRY_AFTER_S, CursorExpired, ErrorRule, Outcome, VendorError, VendorFault
from resources.models import Page, VendorRecord
from resources.vendor import VendorResource

DEFAULT_API_VERSION = "2025-07"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
BOARDS_PAGE_SIZE = 100
MAX_CURSOR_RESTARTS = 10
# The day in a ``__last_updated__`` rule is read in the account's time zone (UTC-12 … UTC+14), so the
# filter starts at the UTC day of ``since - 12 h``: never later than ``since`` in any zone.
ACCOUNT_TZ_SLACK = timedelta(hours=12)
ITEM_FIELDS = (
    "id name created_at updated_at state group { id title } board { id name } column_values { id type text value }"
)
BOARDS_QUERY = (
    "query ($limit: Int!, $page: Int!, $state: State) { boards(limit: $limit, page: $page, state: $state) "
    "{ id name state } }"
)
ITEMS_BY_ID_QUERY = f"query ($ids: [ID!]) {{ items(ids: $ids, exclude_nonactive: false) {{ {ITEM_FIELDS} }} }}"
FIRST_IDS_QUERY = (
    "query ($board: [ID!], $limit: Int!) { boards(ids: $board) { items_page(limit: $limit) { cursor items { id } } } }"
)
NEXT_IDS_QUERY = (
    "query ($cursor: String!, $limit: Int) { next_items_page(cursor: $cursor, limit: $limit) { cursor items { id } } }"
)
ITEMS_BY_ID_MAX = 100  # ids per items(ids:) call
ACCOUNT_QUERY = "query { boards(limit: 1) { id } }"  # the cheapest query: its answer names the account
FIRST_PAGE_QUERY = (
    "query ($board: [ID!], $limit: Int!, $params: ItemsQuery) { boards(ids: $board) { "
    f"items_page(limit: $limit, query_params: $params) {{ cursor items {{ {ITEM_FIELDS} }} }} }} }}"
)
NEXT_PAGE_QUERY = (
    "query ($cursor: String!, $limit: Int) { next_items_page(cursor: $cursor, limit: $limit) { "
    f"cursor items {{ {ITEM_FIELDS} }} }} }}"
)


# Throttling, whatever the casing: a spent complexity budget, rate, IP or concurrency limits.
THROTTLE_CODES = (
    "COMPLEXITY_BUDGET_EXHAUSTED",
    "ComplexityException",
    "RATE_LIMIT_EXCEEDED",
    "IP_RATE_LIMIT_EXCEEDED",
    "FIELD_LIMIT_EXCEEDED",
    "maxConcurrencyExceeded",
    "CONCURRENCY_LIMIT_EXCEEDED",
)
CURSOR_EXPIRED_CODES = ("CursorExpiredError", "CURSOR_EXPIRED")
_RESET_IN = re.compile(r"reset in (\d+(?:\.\d+)?) seconds?")


class MondayItem(VendorRecord):
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    state: str | None = None
    group: dict[str, Any] | None = None
    board: dict[str, Any] | None = None
    column_values: list[dict[str, Any]] = Field(default_factory=list)


class MondayClient(GraphQLClient):
    vendor = "Monday"
    graphql_path = "/v2"
    error_rules = (
        *(ErrorRule(Outcome.THROTTLED, code=code) for code in THROTTLE_CODES),
        *(ErrorRule(Outcome.CURSOR_EXPIRED, code=code) for code in CURSOR_EXPIRED_CODES),
    )

    def __init__(self, api_version: str, page_size: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.api_version = api_version
        self.page_size = min(max(page_size, 1), MAX_PAGE_SIZE)
        self.cursor_restarts = 0

    def authorize(self, headers: dict[str, str]) -> None:
        headers["Authorization"] = self.credentials["api_token"]
        headers["API-Version"] = self.api_version

    def refresh_auth(self) -> None:
        raise VendorError(self.vendor, "the API token was rejected (401); monday tokens cannot be refreshed", 401)

    def account_identity(self) -> str | None:
        """The account the token belongs to: every monday response names it (``account_id``)."""
        body = self.request_json("POST", self.graphql_path, json={"query": ACCOUNT_QUERY, "variables": {}})
        return f"account {body['account_id']}" if body.get("account_id") is not None else None

    def other_error(self, body: Any) -> VendorFault | None:
        """The legacy shape: ``{"error_code", "error_message", "error_data": {"retry_in_seconds"}}``."""
        if not isinstance(body, dict) or not body.get("error_code"):
            return None
        hint = (body.get("error_data") or {}).get("retry_in_seconds")
        return VendorFault(body["error_code"], str(body.get("error_message")), _seconds(hint))

    def retry_hint(self, error: dict[str, Any], body: Any, response: requests.Response) -> float | None:
        """``retry_in_seconds`` in the error's extensions (or its ``error_data``), else "reset in N seconds"."""
        extensions = error.get("extensions") or {}
        hint = extensions.get("retry_in_seconds", (extensions.get("error_data") or {}).get("retry_in_seconds"))
        if hint is None and (reset := _RESET_IN.search(str(error.get("message")))):
            hint = reset.group(1)
        return _seconds(hint)

    # --- reads ----------------------------------------------------------------------------------

    def boards(self, state: str = "active") -> Iterator[dict[str, Any]]:
        """Boards in ``state`` (``active``, ``archived``, ``deleted`` or ``all``), with their state."""
        page = 1
        while True:
            boards = self.query(BOARDS_QUERY, {"limit": BOARDS_PAGE_SIZE, "page": page, "state": state})["boards"]
            yield from boards
            if len(boards) < BOARDS_PAGE_SIZE:
                return
            page += 1

    def active_item_ids(self, board_id: str) -> Iterator[list[str]]:
        """The ids of a board's active items, a page at a time (ids only: the cheapest full listing)."""
        page = self.query(FIRST_IDS_QUERY, {"board": [board_id], "limit": MAX_PAGE_SIZE})["boards"]
        page = page[0]["items_page"] if page else {"items": [], "cursor": None}
        while True:
            yield [str(item["id"]) for item in page["items"]]
            if not page.get("cursor"):
                return
            page = self.query(NEXT_IDS_QUERY, {"cursor": page["cursor"], "limit": MAX_PAGE_SIZE})["next_items_page"]

    def items_by_id(self, ids: list[str]) -> list[MondayItem]:
        """Items in any state (``exclude_nonactive: false``), with their ``state``; purged ids are absent."""
        found: list[MondayItem] = []
        for start in range(0, len(ids), ITEMS_BY_ID_MAX):
            chunk = ids[start : start + ITEMS_BY_ID_MAX]
            found += [MondayItem.model_validate(raw) for raw in self.query(ITEMS_BY_ID_QUERY, {"ids": chunk})["items"]]
        return found

    def items_updated_since(self, since: datetime | None) -> Iterator[Page[MondayItem]]:
        """Every board's items updated on or after the day of ``since`` (all items when None), in
        creation order. The day filter is coarse: items from earlier that day come back too."""
        for board in self.boards():
            yield from self.board_items(str(board["id"]), since)

    def board_items(self, board_id: str, since: datetime | None) -> Iterator[Page[MondayItem]]:
        """One board's items. An expired cursor (60 minutes) restarts the board from its first page: items
        read twice cost nothing, and creation order means a restart never skips one."""
        params = _updated_since_params(since)
        cursor: str | None = None
        restarts = 0
        while True:
            try:
                if cursor is None:
                    variables = {"board": [board_id], "limit": self.page_size, "params": params}
                    boards = self.query(FIRST_PAGE_QUERY, variables)["boards"]
                    if not boards:
                        return
                    page = boards[0]["items_page"]
                else:
                    page = self.query(NEXT_PAGE_QUERY, {"cursor": cursor, "limit": self.page_size})["next_items_page"]
            except CursorExpired as exc:
                restarts += 1
                self.cursor_restarts += 1
                if cursor is None or restarts > MAX_CURSOR_RESTARTS:
                    raise VendorError(self.vendor, f"cursor kept expiring on board {board_id}: {exc}") from None
                self.log.warning(f"[{self.vendor} Client] Cursor expired on board {board_id}; reading it again")
                cursor = None
                continue
            yield Page([MondayItem.model_validate(raw) for raw in page["items"]])
            cursor = page.get("cursor")
            if not cursor:
                return


def _seconds(hint: Any) -> float | None:
    return None if hint is None else min(float(hint), MAX_RETRY_AFTER_S)


def _updated_since_params(since: datetime | None) -> dict[str, Any] | None:
    """``__last_updated__`` on or after the account-local day of ``since`` (None: every item)."""
    if since is None:
        return None
    day = (since - ACCOUNT_TZ_SLACK).date()
    return {
        "rules": [
            {
                "column_id": "__last_updated__",
                "compare_attribute": "UPDATED_AT",
                "operator": "greater_than_or_equals",
                "compare_value": ["EXACT", day.isoformat()],
            }
        ],
        "operator": "and",
    }


class MondayResource(VendorResource):
    """monday.com client factory. Default limit: 60 requests / minute per API token, evenly spaced (the
    platform's budget), with 5% headroom: calls leave ~1.06 s apart, so scheduling and network jitter (tens
    of ms on a busy host) never lands two of them at monday less than a second apart. Override per
    connection with ``config.rate_limit``. ``config.page_size`` sets the items per page (default 100,
    at most 500)."""

    default_rate_limit: ClassVar[tuple[int, float]] = (60, 63.0)
    api_version: str = Field(default=DEFAULT_API_VERSION, description="Pinned monday API-Version header.")

    client_class = MondayClient
    credential_sets = (("api_token",),)
    credentials_hint = "an api_token"
    quota_identity = (("api_token",),)

    def client_options(self, connection: Connection, identity: str) -> dict[str, Any]:
        return {
            "api_version": str(connection.config.get("api_version") or self.api_version),
            "page_size": int(connection.config.get("page_size") or DEFAULT_PAGE_SIZE),
        }
