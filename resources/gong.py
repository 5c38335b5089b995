"""Gong API v2 client: Basic auth (access key + secret), calls by start-time window, cursor paging.

``GET /v2/calls`` lists call metadata; ``POST /v2/calls/extensive`` adds the parties (participants),
topics and speakers, so the sync reads that. Gong answers a window without calls with
404 "No calls found corresponding to the provided filters", which is an empty result, not an error.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import requests
from pydantic import BaseModel, ConfigDict, Field

from resources.connections import Connection
from resources.http import VendorClient, VendorError
from resources.models import Page, VendorRecord
from resources.vendor import VendorResource

DEFAULT_BASE_URL = "https://api.gong.io"
NO_CALLS_MESSAGE = "No calls found corresponding to the provided filters"
NO_CALLS_CODE = "no_calls"
# What the extensive read asks for: enough to type participants, plus topics and talk time for analysts.
CONTENT_SELECTOR: dict[str, Any] = {
    "context": "Extended",
    "exposedFields": {"parties": True, "content": {"topics": True}, "interaction": {"speakers": True}},
}


class GongCallMeta(VendorRecord):
    """A call as ``/v2/calls`` lists it (and as ``metaData`` of an extensive call)."""


class GongCall(BaseModel):
    """A call from ``/v2/calls/extensive``; the id lives in ``metaData``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    meta_data: GongCallMeta = Field(alias="metaData")
    parties: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def source_id(self) -> str:
        return self.meta_data.id

    @property
    def payload(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def gong_time(moment: datetime) -> str:
    """Gong's filter format has whole seconds: a window start is floored (inclusive bound)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gong_window(since: datetime, until: datetime) -> dict[str, str]:
    """``[since, until]`` in Gong's format: the exclusive end is the next whole second after ``until``."""
    end = until.replace(microsecond=0) + timedelta(seconds=1)
    return {"fromDateTime": gong_time(since), "toDateTime": gong_time(end)}


class GongClient(VendorClient):
    vendor = "Gong"

    def __init__(self, access_key: str, access_key_secret: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._authorization = "Basic " + base64.b64encode(f"{access_key}:{access_key_secret}".encode()).decode()

    def authorize(self, headers: dict[str, str]) -> None:
        headers["Authorization"] = self._authorization

    def refresh_auth(self) -> None:
        raise VendorError(self.vendor, "the access key or secret was rejected (401)", status=401)

    def classify(self, response: requests.Response) -> None:
        if response.status_code == 404 and NO_CALLS_MESSAGE in self._messages(response):
            raise VendorError(self.vendor, NO_CALLS_MESSAGE, status=404, code=NO_CALLS_CODE)
        super().classify(response)

    def error_detail(self, response: requests.Response) -> str:
        messages = self._messages(response) or [response.text[:300]]
        where = f"{response.request.method} {self._path(response.url)}"
        return f"HTTP {response.status_code} on {where}: {'; '.join(messages)}"

    @staticmethod
    def _messages(response: requests.Response) -> list[str]:
        try:
            errors = response.json().get("errors")
        except (ValueError, AttributeError):
            return []
        return [str(e) for e in errors] if isinstance(errors, list) else []

    # --- reads ----------------------------------------------------------------------------------

    def list_calls(self, since: datetime, until: datetime) -> Iterator[Page[GongCallMeta]]:
        """Call metadata for calls started in [since, until], via ``GET /v2/calls``."""
        window = gong_window(since, until)

        def fetch(cursor: str | None) -> requests.Response:
            params = {**window, **({"cursor": cursor} if cursor else {})}
            return self.request("GET", "/v2/calls", params=params)

        for body in self._pages(fetch):
            yield Page([GongCallMeta.model_validate(c) for c in body.get("calls", [])], total=_total(body))

    def extensive_calls(self, since: datetime, until: datetime) -> Iterator[Page[GongCall]]:
        """Calls started in [since, until] with their parties, via ``POST /v2/calls/extensive``."""
        window = gong_window(since, until)

        def fetch(cursor: str | None) -> requests.Response:
            body: dict[str, Any] = {"filter": window, "contentSelector": CONTENT_SELECTOR}
            if cursor:
                body["cursor"] = cursor
            return self.request("POST", "/v2/calls/extensive", json=body)

        for body in self._pages(fetch):
            yield Page([GongCall.model_validate(c) for c in body.get("calls", [])], total=_total(body))

    def _pages(self, fetch: Callable[[str | None], requests.Response]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            try:
                body = fetch(cursor).json()
            except VendorError as exc:
                if exc.code == NO_CALLS_CODE:
                    return
                raise
            yield body
            cursor = (body.get("records") or {}).get("cursor")
            if not cursor:
                return


def _total(body: dict[str, Any]) -> int | None:
    return (body.get("records") or {}).get("totalRecords")


class GongResource(VendorResource):
    """Gong client factory. Default limit: the seed's 100 requests/minute per credential (QW-4), evenly
    spaced; ``config.rate_limit`` overrides it per connection (Gong's own quota is 3/s, 10,000/day)."""

    default_rate_limit: ClassVar[tuple[int, float]] = (100, 60.0)

    def client_for(self, connection: Connection, log: Any = None) -> GongClient:
        creds = connection.credentials
        if not (creds.get("access_key") and creds.get("access_key_secret")):
            raise VendorError("Gong", "credentials need an access_key and an access_key_secret")
        return GongClient(
            access_key=creds["access_key"],
            access_key_secret=creds["access_key_secret"],
            base_url=self.base_url(connection, DEFAULT_BASE_URL),
            limiter=self.limiter("gong", creds["access_key"], connection),
            retry=self.retry_settings(connection),
            log=log,
        )
