"""Gong API v2 client: Basic auth (access key + secret), calls by call-time window, cursor paging.

``POST /v2/calls/extensive`` returns calls with their parties (participants), topics and speakers. Gong
answers a window without calls with 404 "No calls found corresponding to the provided filters": an empty
result, not an error. Errors are ``{"requestId", "errors": [<message>, ...]}``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import requests
from pydantic import BaseModel, ConfigDict, Field

from resources.http import ErrorRule, NoResults, Outcome, VendorClient, VendorError, VendorFault, json_body
from resources.models import Page, VendorRecord
from resources.paging import cursor_pages
from resources.vendor import VendorResource

NO_CALLS_MESSAGE = "No calls found corresponding to the provided filters"
NO_CALLS_CODE = "no_calls"
# What the extensive read asks for: enough to type participants, plus topics and talk time for analysts.
CONTENT_SELECTOR: dict[str, Any] = {
    "context": "Extended",
    "exposedFields": {"parties": True, "content": {"topics": True}, "interaction": {"speakers": True}},
}


class GongCallMeta(VendorRecord):
    """A call's ``metaData``, as ``/v2/calls/extensive`` (and ``/v2/calls``) report it."""


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
    error_rules = (ErrorRule(Outcome.EMPTY, (404,), message=NO_CALLS_MESSAGE),)

    def authorize(self, headers: dict[str, str]) -> None:
        pair = f"{self.credentials['access_key']}:{self.credentials['access_key_secret']}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()

    def refresh_auth(self) -> None:
        raise VendorError(self.vendor, "the access key or secret was rejected (401)", status=401)

    def account_identity(self) -> str | None:
        """Gong names no account to its API keys; a key belongs to one company, so the key stands for it
        (a fingerprint: rotating the key for the same company also starts a full sync)."""
        return "key " + hashlib.sha256(str(self.credentials["access_key"]).encode()).hexdigest()[:16]

    def extract_error(self, response: requests.Response) -> VendorFault | None:
        body = json_body(response)
        errors = body.get("errors") if isinstance(body, dict) else None
        return VendorFault(message="; ".join(map(str, errors))) if isinstance(errors, list) else None

    # --- reads ----------------------------------------------------------------------------------

    def extensive_calls(
        self, since: datetime, until: datetime, call_ids: list[str] | None = None
    ) -> Iterator[Page[GongCall]]:
        """Calls whose call time (scheduled for web conferences, else started) is in [since, until] (only
        ``call_ids``, when given), with their parties, via ``POST /v2/calls/extensive``."""
        window: dict[str, Any] = gong_window(since, until)
        if call_ids is not None:
            window["callIds"] = call_ids

        def fetch(cursor: str | None) -> dict[str, Any]:
            body: dict[str, Any] = {"filter": window, "contentSelector": CONTENT_SELECTOR}
            if cursor:
                body["cursor"] = cursor
            return self.request_json("POST", "/v2/calls/extensive", json=body)

        try:
            for body in cursor_pages(fetch, lambda b: (b.get("records") or {}).get("cursor")):
                records = body.get("records") or {}
                yield Page(
                    [GongCall.model_validate(c) for c in body.get("calls", [])], total=records.get("totalRecords")
                )
        except NoResults:
            return


class GongResource(VendorResource):
    """Gong client factory. Default limit: 100 requests/minute per credential, evenly
    spaced; ``config.rate_limit`` overrides it per connection (Gong's own quota is 3/s, 10,000/day)."""

    client_class = GongClient
    credential_sets = (("access_key", "access_key_secret"),)
    credentials_hint = "an access_key and an access_key_secret"
    quota_identity = (("access_key",),)
    default_rate_limit: ClassVar[tuple[int, float]] = (100, 60.0)
