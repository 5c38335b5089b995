"""HubSpot CRM v3 client: private-app or OAuth auth; reads through the search endpoint, keyset-paged by id
(full syncs) or by last-modified time (incremental ones)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

import requests
from pydantic import BaseModel, ConfigDict, Field

from resources.connections import Connection
from resources.http import VendorError, VendorFault, json_body
from resources.models import Page, VendorRecord
from resources.oauth import OAuthRefreshClient
from resources.rate_limit import Limiter
from resources.vendor import VendorResource

SEARCH_PAGE_SIZE = 200  # search's largest page; ``config.page_size`` may ask for less
LIST_PAGE_SIZE = 100  # the list endpoint's largest page


def modified_property(object_type: str) -> str:
    """Contacts are the one object whose last-modified property lacks the ``hs_`` prefix."""
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


class HubSpotObject(VendorRecord):
    model_config = ConfigDict(extra="ignore")

    properties: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = Field(default=None, alias="createdAt")
    updated_at: str | None = Field(default=None, alias="updatedAt")
    archived: bool = False
    archived_at: str | None = Field(default=None, alias="archivedAt")

    @property
    def payload(self) -> dict[str, Any]:
        # model_dump(by_alias=True), built by hand: a sixth of the cost, and paid for every record synced.
        record = {
            "id": self.id,
            "properties": self.properties,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": self.archived,
        }
        if self.archived_at is not None:
            record["archivedAt"] = self.archived_at
        return record


class _NextPage(BaseModel):
    after: str | None = None


class _Paging(BaseModel):
    next: _NextPage | None = None


class HubSpotPage(BaseModel):
    """A list or search response, decoded and validated in one pass from the raw body."""

    results: list[HubSpotObject] = Field(default_factory=list)
    paging: _Paging | None = None
    total: int | None = None

    @property
    def next_after(self) -> str | None:
        return self.paging.next.after if self.paging and self.paging.next else None


class HubSpotClient(OAuthRefreshClient):
    vendor = "HubSpot"
    # HubSpot says a 401 is not a reliable refresh signal: expires_in is tracked instead.
    default_expires_in_s = 1800
    no_refresh_token_message = "the private-app token was rejected (401)"

    def __init__(self, search_limiter: Limiter, page_size: int = SEARCH_PAGE_SIZE, **kwargs: Any):
        super().__init__(**kwargs)
        self.token_endpoint = f"{self.base_url}/oauth/v1/token"
        self._search_limiter = search_limiter
        self.page_size = min(max(page_size, 1), SEARCH_PAGE_SIZE)
        self._hub_id: int | None = None

    def accept_token(self, body: dict[str, Any]) -> None:
        super().accept_token(body)
        self._hub_id = body.get("hub_id")

    def account_identity(self) -> str | None:
        """The portal (``hub_id`` of the OAuth token response); a private-app token does not say."""
        if self.credentials.get("refresh_token"):
            self.authorize({})  # refreshes the token when there is none yet
        return None if self._hub_id is None else f"portal {self._hub_id}"

    def extract_error(self, response: requests.Response) -> VendorFault | None:
        """``{"message", "category"}`` (a 429 names its ``policyName`` instead)."""
        body = json_body(response)
        if not isinstance(body, dict) or "message" not in body:
            return None
        return VendorFault(body.get("category") or body.get("policyName"), str(body["message"]))

    # --- reads ----------------------------------------------------------------------------------

    def objects_by_id(self, object_type: str, properties: list[str]) -> Iterator[Page[HubSpotObject]]:
        """Every record, in id order (full sync).

        Keyset paging: each request asks for ids above the last one read, from offset 0. Ids never change,
        so records edited, archived or created while the read runs never shift others past it, and the
        search endpoint's 10,000-result cap never applies (the list endpoint's cursor gives neither)."""
        last_id, total = 0, None
        while True:
            filters = [{"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)}]
            page = self._search(object_type, filters, "hs_object_id", properties)
            total = page.total if total is None else total  # later pages count only what is left
            if page.results:
                yield Page(page.results, total=total)
                last_id = int(page.results[-1].id)
            if not page.next_after:
                return

    def archived_objects(self, object_type: str, properties: list[str]) -> Iterator[Page[HubSpotObject]]:
        """Every archived record, with ``archivedAt``: the list endpoint with ``archived=true``. Search never
        returns archived records and the list has no filter on ``archivedAt``, so this pages the whole
        archive (archiving does not change a record's last-modified time)."""
        params: dict[str, Any] = {"limit": LIST_PAGE_SIZE, "archived": "true", "properties": ",".join(properties)}
        while True:
            page = self.request_json("GET", f"/crm/v3/objects/{object_type}", params=params, model=HubSpotPage)
            yield Page(page.results)
            if not page.next_after:
                return
            params["after"] = page.next_after

    def object_by_id(self, object_type: str, object_id: str, properties: list[str]) -> HubSpotObject | None:
        """One live record; None when it is archived or gone (404). An id merged away answers with the
        record it was merged into."""
        params = {"properties": ",".join(properties)}
        path = f"/crm/v3/objects/{object_type}/{object_id}"
        try:
            return self.request_json("GET", path, params=params, model=HubSpotObject)
        except VendorError as exc:
            if exc.status == 404:
                return None
            raise

    def modified_since(self, object_type: str, since: datetime, properties: list[str]) -> Iterator[Page[HubSpotObject]]:
        """Records modified at or after ``since``, oldest first (incremental sync).

        Keyset paging on the modified time: each request asks for ``>=`` the last instant read, from
        offset 0, and skips the ids already read at that instant. An offset (search's ``after``) would
        shift past a record whenever one read earlier is edited and moves to the end of the order. When
        a whole page shares one instant, that instant is paged by id before moving on."""
        prop = modified_property(object_type)
        frontier, total = _Frontier(_epoch_ms(since)), None
        while True:
            filters = [{"propertyName": prop, "operator": "GTE", "value": str(frontier.instant_ms)}]
            page = self._search(object_type, filters, prop, properties)
            total = page.total if total is None else total  # later pages count only what is left
            fresh = frontier.advance(page.results, prop)
            if fresh:
                yield Page(fresh, total=total)
            if not page.next_after:
                return
            if not fresh:  # a full page at one instant, all read: page that instant by id
                yield from self._one_instant(object_type, prop, frontier, properties)
                frontier.step_past_instant()

    def _one_instant(
        self, object_type: str, prop: str, frontier: _Frontier, properties: list[str]
    ) -> Iterator[Page[HubSpotObject]]:
        last_id = 0
        while True:
            filters = [
                {"propertyName": prop, "operator": "EQ", "value": str(frontier.instant_ms)},
                {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)},
            ]
            page = self._search(object_type, filters, "hs_object_id", properties)
            if not page.results:
                return
            fresh = [r for r in page.results if r.id not in frontier.ids_at_instant]
            if fresh:
                yield Page(fresh)
            last_id = int(page.results[-1].id)
            if not page.next_after:
                return

    def _search(self, object_type: str, filters: list[dict], sort_by: str, properties: list[str]) -> HubSpotPage:
        self.wait_for_slot(self._search_limiter)
        body = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort_by, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": self.page_size,
            "after": "0",
        }
        return self.request_json("POST", f"/crm/v3/objects/{object_type}/search", json=body, model=HubSpotPage)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _record_modified_ms(record: HubSpotObject, prop: str) -> int | None:
    # The record-level updatedAt mirrors the modified property and stays parseable even when a
    # property value is malformed, so paging never depends on a bad record.
    value = record.updated_at or record.properties.get(prop)
    try:
        return _epoch_ms(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return None


class _Frontier:
    """How far a keyset read by modified time got: the latest instant read and the ids read at it."""

    def __init__(self, instant_ms: int) -> None:
        self.instant_ms = instant_ms
        self.ids_at_instant: set[str] = set()

    def advance(self, records: list[HubSpotObject], prop: str) -> list[HubSpotObject]:
        """The records not read yet; moves the frontier to the last of them."""
        fresh = []
        for record in records:
            ms = _record_modified_ms(record, prop)
            if ms is not None and ms < self.instant_ms:
                continue  # behind the frontier: an older version the index still shows, already read
            if ms == self.instant_ms and record.id in self.ids_at_instant:
                continue
            fresh.append(record)
            if ms is None:
                continue
            if ms > self.instant_ms:
                self.instant_ms, self.ids_at_instant = ms, set()
            self.ids_at_instant.add(record.id)
        return fresh

    def step_past_instant(self) -> None:
        self.instant_ms, self.ids_at_instant = self.instant_ms + 1, set()


class HubSpotResource(VendorResource):
    """HubSpot client factory. Default limit: 100 requests / 10 s per app (Free/Starter tier);
    search is additionally held to 5 requests / s."""

    client_class = HubSpotClient
    credential_sets = (("access_token",), ("refresh_token",))
    credentials_hint = "an access_token or an OAuth refresh_token"
    quota_identity = (("access_token",), ("client_id", "refresh_token"))
    default_rate_limit: ClassVar[tuple[int, float]] = (100, 10.0)
    search_rate_limit: ClassVar[tuple[int, float]] = (5, 1.0)

    def client_options(self, connection: Connection, identity: str) -> dict[str, Any]:
        search = self.limiter(
            "hubspot",
            identity,
            connection,
            scope="search",
            config_key="search_rate_limit",
            default=self.search_rate_limit,
        )
        return {"search_limiter": search, "page_size": int(connection.config.get("page_size") or SEARCH_PAGE_SIZE)}


__all__ = ["HubSpotClient", "HubSpotObject", "HubSpotResource", "modified_property"]
