"""monday.com GraphQL client: boards, then each board's items with ``items_page`` / ``next_items_page``.

monday answers application errors with HTTP 200 and an ``errors`` array, so ``classify_success`` reads
every body: complexity-budget and rate-limit codes (either casing) become throttling that waits the
``retry_in_seconds`` the error carries; an expired cursor restarts that board's pagination from how far
it got; anything else is a ``VendorError`` naming monday's code and message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import requests
from pydantic import ConfigDict, Field

from resources.connections import Connection
from resources.http import MAX_RETRY_AFTER_S, RetryableError, VendorClient, VendorError, parse_retry_after
from resources.models import Page, VendorRecord
from resources.vendor import VendorResource

DEFAULT_BASE_URL = "https://api.monday.com"
DEFAULT_API_VERSION = "2025-07"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
BOARDS_PAGE_SIZE = 100
MAX_CURSOR_RESTARTS = 10
# The day in a ``__last_updated__`` rule is read in the account's time zone (UTC-12 … UTC+14), so the
# filter starts at the UTC day of ``since - 12 h``: never later than ``since`` in any zone.
ACCOUNT_TZ_SLACK = timedelta(hours=12)
# A restart re-reads from the account-local day of (last update - 12 h): at most ~50 h back (UTC+14).
REREAD_SPAN = timedelta(days=3)
ITEM_FIELDS = (
    "id name created_at updated_at state group { id title } board { id name } column_values { id type text value }"
)
BOARDS_QUERY = "query ($limit: Int!, $page: Int!) { boards(limit: $limit, page: $page) { id name } }"
FIRST_PAGE_QUERY = (
    "query ($board: [ID!], $limit: Int!, $params: ItemsQuery) { boards(ids: $board) { "
    f"items_page(limit: $limit, query_params: $params) {{ cursor items {{ {ITEM_FIELDS} }} }} }} }}"
)
NEXT_PAGE_QUERY = (
    "query ($cursor: String!, $limit: Int) { next_items_page(cursor: $cursor, limit: $limit) { "
    f"cursor items {{ {ITEM_FIELDS} }} }} }}"
)


def _normalise(code: str) -> str:
    """COMPLEXITY_BUDGET_EXHAUSTED and complexityBudgetExhausted are the same code."""
    return re.sub(r"[^a-z]", "", code.lower())


THROTTLE_CODES = {
    _normalise(c)
    for c in (
        "COMPLEXITY_BUDGET_EXHAUSTED",
        "ComplexityException",
        "RATE_LIMIT_EXCEEDED",
        "IP_RATE_LIMIT_EXCEEDED",
        "FIELD_LIMIT_EXCEEDED",
        "maxConcurrencyExceeded",
        "CONCURRENCY_LIMIT_EXCEEDED",
    )
}
CURSOR_EXPIRED_CODES = {_normalise(c) for c in ("CursorExpiredError", "CURSOR_EXPIRED")}
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


class MondayThrottled(RetryableError):
    """Throttling signalled by a monday error code (in a 200 or a 429 body)."""

    def __init__(self, code: str, status: int, detail: str, retry_after_s: float | None):
        super().__init__("throttled", status, detail, retry_after_s)
        self.code = code

    def describe(self) -> str:
        return f"Rate limited ({self.status})" if self.status == 429 else f"Rate limited ({self.code})"


class CursorExpired(Exception):
    """``next_items_page`` refused a cursor older than 60 minutes."""


class MondayClient(VendorClient):
    vendor = "Monday"

    def __init__(self, token: str, api_version: str, page_size: int, **kwargs: Any):
        super().__init__(**kwargs)
        self._token = token
        self.api_version = api_version
        self.page_size = min(max(page_size, 1), MAX_PAGE_SIZE)
        self.cursor_restarts = 0

    # --- auth and error classification ---------------------------------------------------------

    def authorize(self, headers: dict[str, str]) -> None:
        headers["Authorization"] = self._token
        headers["API-Version"] = self.api_version

    def refresh_auth(self) -> None:
        raise VendorError(self.vendor, "the API token was rejected (401); monday tokens cannot be refreshed", 401)

    def classify(self, response: requests.Response) -> None:
        if response.status_code == 429:
            code, _, hint = self._first_error(response)
            raise MondayThrottled(code or "429", 429, self.error_detail(response), hint)
        super().classify(response)

    def classify_success(self, response: requests.Response) -> None:
        code, message, hint = self._first_error(response)
        if code is None and message is None:
            return
        normalised = _normalise(code or "")
        if normalised in THROTTLE_CODES:
            raise MondayThrottled(code or "", response.status_code, f"{code}: {message}", hint)
        if normalised in CURSOR_EXPIRED_CODES:
            raise CursorExpired(message)
        raise VendorError(self.vendor, f"GraphQL error {code}: {message}", status=response.status_code, code=code)

    def _first_error(self, response: requests.Response) -> tuple[str | None, str | None, float | None]:
        """(code, message, retry hint in s) of the body's first error, in the current or legacy shape."""
        try:
            body = response.json()
        except ValueError:
            return None, None, parse_retry_after(response.headers.get("Retry-After"))
        errors = body.get("errors") if isinstance(body, dict) else None
        if not errors and not (isinstance(body, dict) and body.get("error_code")):
            return None, None, None
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        extensions = first.get("extensions") or {}
        code = extensions.get("code") or body.get("error_code")
        message = first.get("message") or body.get("error_message") or (errors[0] if errors else None)
        data = extensions.get("error_data") or body.get("error_data") or {}
        hint = extensions.get("retry_in_seconds", data.get("retry_in_seconds"))
        if hint is None and (reset := _RESET_IN.search(str(message))):
            hint = reset.group(1)
        seconds = float(hint) if hint is not None else parse_retry_after(response.headers.get("Retry-After"))
        return code, str(message), None if seconds is None else min(seconds, MAX_RETRY_AFTER_S)

    def error_detail(self, response: requests.Response) -> str:
        code, message, _ = self._first_error(response)
        if message is None:
            return super().error_detail(response)
        return f"HTTP {response.status_code} on POST /v2: {code}: {message}"

    # --- reads ----------------------------------------------------------------------------------

    def query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v2", json={"query": query, "variables": variables}).json()["data"]

    def boards(self) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            boards = self.query(BOARDS_QUERY, {"limit": BOARDS_PAGE_SIZE, "page": page})["boards"]
            yield from boards
            if len(boards) < BOARDS_PAGE_SIZE:
                return
            page += 1

    def items_updated_since(self, since: datetime | None) -> Iterator[Page[MondayItem]]:
        """Every board's items updated on or after the day of ``since`` (all items when None), oldest
        first per board. The day filter is coarse: the sync loop drops items older than ``since``."""
        for board in self.boards():
            yield from self.board_items(str(board["id"]), since)

    def board_items(self, board_id: str, since: datetime | None) -> Iterator[Page[MondayItem]]:
        progress = _BoardProgress(since)
        cursor: str | None = None
        restarts = 0
        while True:
            try:
                if cursor is None:
                    variables = {"board": [board_id], "limit": self.page_size, "params": progress.query_params()}
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
                self.log.warning(
                    f"[{self.vendor} Client] Cursor expired on board {board_id}; restarting from "
                    f"{progress.restart_day() or 'the first item'}"
                )
                cursor = None
                continue
            items = [MondayItem.model_validate(raw) for raw in page["items"]]
            yield Page(progress.unseen(items))
            cursor = page.get("cursor")
            if not cursor:
                return


class _BoardProgress:
    """How far one board's ascending-by-update pagination got, so an expired cursor restarts at the
    last update reached (not from zero) and skips exactly the item versions already yielded."""

    def __init__(self, since: datetime | None) -> None:
        self.since = since
        self.last_seen: datetime | None = None
        # (id, updated_at) -> parsed time, for versions a restart could read again
        self.yielded: dict[tuple[str, str | None], datetime | None] = {}

    def restart_day(self) -> date | None:
        marks = [m for m in (self.since, self.last_seen) if m is not None]
        return (max(marks) - ACCOUNT_TZ_SLACK).date() if marks else None

    def query_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"order_by": [{"column_id": "__last_updated__", "direction": "asc"}]}
        day = self.restart_day()
        if day is not None:
            params["rules"] = [
                {
                    "column_id": "__last_updated__",
                    "compare_attribute": "UPDATED_AT",
                    "operator": "greater_than_or_equals",
                    "compare_value": ["EXACT", day.isoformat()],
                }
            ]
            params["operator"] = "and"
        return params

    def unseen(self, items: list[MondayItem]) -> list[MondayItem]:
        fresh = []
        for item in items:
            version = (item.id, item.updated_at)
            if version in self.yielded:
                continue
            fresh.append(item)
            moment = _parse(item.updated_at)
            self.yielded[version] = moment
            if moment is not None and (self.last_seen is None or moment > self.last_seen):
                self.last_seen = moment
        if self.last_seen is not None:  # a restart re-reads at most a couple of days before last_seen
            horizon = self.last_seen - REREAD_SPAN
            self.yielded = {v: m for v, m in self.yielded.items() if m is None or m >= horizon}
        return fresh


def _parse(value: str | None) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class MondayResource(VendorResource):
    """monday.com client factory. Default limit: 60 requests / minute per API token, evenly spaced (the
    seed's QW-5), with 5% headroom: calls leave ~1.06 s apart, so scheduling and network jitter (tens
    of ms on a busy host) never lands two of them at monday less than a second apart. Override per
    connection with ``config.rate_limit``. ``config.page_size`` sets the items per page (default 100,
    at most 500)."""

    default_rate_limit: ClassVar[tuple[int, float]] = (60, 63.0)
    api_version: str = Field(default=DEFAULT_API_VERSION, description="Pinned monday API-Version header.")

    def client_for(self, connection: Connection, log: Any = None) -> MondayClient:
        token = connection.credentials.get("api_token")
        if not token:
            raise VendorError("Monday", "credentials need an api_token")
        return MondayClient(
            token=token,
            api_version=str(connection.config.get("api_version") or self.api_version),
            page_size=int(connection.config.get("page_size") or DEFAULT_PAGE_SIZE),
            base_url=self.base_url(connection, DEFAULT_BASE_URL),
            limiter=self.limiter("monday", token, connection),
            retry=self.retry_settings(connection),
            log=log,
        )
