"""Salesforce client: OAuth refresh-token flow, SOQL over REST (``nextRecordsUrl`` paging) and Bulk API 2.0
query jobs (CSV results read by ``Sforce-Locator``), chosen per read by a ``COUNT()`` first.

Salesforce signals its API limit with 403 ``REQUEST_LIMIT_EXCEEDED``, not 429: that is throttling here.
Every other error is Salesforce's JSON array of ``{errorCode, message}`` and surfaces both.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from pydantic import Field

from resources.connections import Connection
from resources.http import RetryableError, VendorError
from resources.models import Page
from resources.oauth import OAuthRefreshClient
from resources.vendor import VendorResource

DEFAULT_LOGIN_URL = "https://login.salesforce.com"
TOKEN_PATH = "/services/oauth2/token"
MODIFIED_FIELD = "SystemModstamp"
QUERY_BATCH_SIZE = 2000  # the REST query's largest page
THROTTLE_CODE = "REQUEST_LIMIT_EXCEEDED"


@dataclass(frozen=True, slots=True)
class SalesforceRecord:
    """One record: its field values by API name (blank CSV values already null). ``defect`` is set when
    the row itself could not be read (a ragged CSV line), so the sync loop can capture it.

    A slotted dataclass rather than a pydantic model: the bulk path builds hundreds of thousands of
    these, and pydantic's construction cost a measured ~8 µs each (about 15% of the sync's time).
    """

    sobject: str
    fields: dict[str, Any]
    defect: str | None = None

    @property
    def source_id(self) -> str:
        return str(self.fields["Id"])

    @property
    def payload(self) -> dict[str, Any]:
        return self.fields


@dataclass(frozen=True)
class SalesforceSettings:
    """Per-connection tunables; each can be overridden by the connection's ``config`` key of that name."""

    api_version: str = "62.0"
    bulk_threshold: int = 10_000  # above this many matching records, read through Bulk API 2.0
    bulk_max_records: int = 50_000  # rows per results request: bounds the bytes held at once
    bulk_page_size: int = 5_000  # rows per page handed to the sync loop (one warehouse commit each)
    bulk_poll_interval_s: float = 0.5  # first wait between job status polls; doubles per poll
    bulk_poll_max_interval_s: float = 10.0
    bulk_timeout_s: float = 3600.0  # a job still running after this is aborted


def soql_datetime(moment: datetime) -> str:
    """An unquoted SOQL datetime literal. SOQL literals carry whole seconds, so the bound is floored:
    it never excludes a change, and the loop drops the few records it already has."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SalesforceClient(OAuthRefreshClient):
    vendor = "Salesforce"
    # Salesforce sends no expires_in (the lifetime is the org's session timeout): refresh on 401.
    no_refresh_token_message = "the access token was rejected and there is no refresh_token"

    def __init__(self, credentials: dict[str, Any], settings: SalesforceSettings, **kwargs: Any):
        super().__init__(credentials, **kwargs)
        self.settings = settings
        self.token_endpoint = f"{self.base_url}{TOKEN_PATH}"
        # The data host comes from the token response; a stored instance_url lets a stored token work.
        self.base_url = str(credentials.get("instance_url") or self.base_url).rstrip("/")
        self.data_path = f"/services/data/v{settings.api_version}"

    def accept_token(self, body: dict[str, Any]) -> None:
        super().accept_token(body)
        self.base_url = str(body["instance_url"]).rstrip("/")

    # --- error classification -------------------------------------------------------------------

    def classify(self, response: requests.Response) -> None:
        if response.status_code == 403 and _error_fields(response)[0] == THROTTLE_CODE:
            raise RetryableError("throttled", 403, self.error_detail(response), self._retry_after(response))
        super().classify(response)

    def error_detail(self, response: requests.Response) -> str:
        code, message = _error_fields(response)
        path = urlsplit(response.url).path
        base_path = urlsplit(self.base_url).path
        if base_path and path.startswith(base_path + "/services/"):
            path = path[len(base_path) :]
        return f"HTTP {response.status_code} {code} on {response.request.method} {path}: {message}"

    # --- reads ----------------------------------------------------------------------------------

    def modified_since(self, sobject: str, field_names: list[str], since: datetime | None) -> Iterator[Page[Any]]:
        """Every record of ``sobject`` (``since`` None) or those with ``SystemModstamp >= since``.

        ``COUNT()`` first: above the bulk threshold the read is a Bulk API 2.0 job, otherwise the REST
        query. Bulk results are unordered (ORDER BY would disable PK chunking); the loop's watermark
        is the greatest committed value either way, recorded only after the last page.
        """
        where = ""
        if since is not None:
            where = f" WHERE {MODIFIED_FIELD} >= {soql_datetime(since)}"
            self.log.info(f"[{self.vendor} Client] Using incremental WHERE clause:{where} ({sobject})")
        total = self.count(sobject, where)
        select = f"SELECT {', '.join(field_names)} FROM {sobject}{where}"
        if total > self.settings.bulk_threshold:
            self.log.info(
                f"[{self.vendor} Client] {sobject}: {total} records exceed the bulk threshold "
                f"({self.settings.bulk_threshold}); using Bulk API 2.0"
            )
            return self.bulk_query(sobject, select, total)
        return self.query(f"{select} ORDER BY {MODIFIED_FIELD} ASC")

    def count(self, sobject: str, where: str = "") -> int:
        body = self.request("GET", f"{self.data_path}/query", params={"q": f"SELECT COUNT() FROM {sobject}{where}"})
        return int(body.json()["totalSize"])

    def query(self, soql: str) -> Iterator[Page[SalesforceRecord]]:
        """A REST SOQL query, paged by ``nextRecordsUrl`` until ``done``."""
        headers = {"Sforce-Query-Options": f"batchSize={QUERY_BATCH_SIZE}"}
        body = self.request("GET", f"{self.data_path}/query", params={"q": soql}, headers=headers).json()
        while True:
            yield Page([_from_json(r) for r in body.get("records") or []], total=body.get("totalSize"))
            next_url = body.get("nextRecordsUrl")
            if body.get("done", True) or not next_url:
                return
            body = self.request("GET", next_url, headers=headers).json()

    def bulk_query(self, sobject: str, soql: str, total: int | None = None) -> Iterator[Page[SalesforceRecord]]:
        """A Bulk API 2.0 query job: create, poll until complete, then read the CSV by locator."""
        job = self.request(
            "POST",
            f"{self.data_path}/jobs/query",
            json={
                "operation": "query",
                "query": soql,
                "contentType": "CSV",
                "columnDelimiter": "COMMA",
                "lineEnding": "LF",
            },
        ).json()
        job_id = str(job["id"])
        self.log.info(f"[{self.vendor} Client] Bulk API 2.0 query job {job_id} created for {sobject}")
        self.wait_for_job(job_id, sobject)
        # The next results chunk downloads while this one is parsed and committed: the vendor's (or the
        # sandbox's) time to serve a chunk overlaps ours. At most two chunks are held at once.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sf-bulk") as prefetch:
            pending = prefetch.submit(self._results_chunk, job_id, None)
            try:
                while pending is not None:
                    response = pending.result()
                    locator = response.headers.get("Sforce-Locator")
                    more = bool(locator) and locator != "null"
                    pending = prefetch.submit(self._results_chunk, job_id, locator) if more else None
                    yield from self._csv_pages(response, sobject, total)
            finally:
                if pending is not None:
                    pending.cancel()

    def _results_chunk(self, job_id: str, locator: str | None) -> requests.Response:
        params: dict[str, Any] = {"maxRecords": self.settings.bulk_max_records}
        if locator:
            params["locator"] = locator
        path = f"{self.data_path}/jobs/query/{job_id}/results"
        return self.request("GET", path, params=params, headers={"Accept": "text/csv"})

    def wait_for_job(self, job_id: str, sobject: str) -> dict[str, Any]:
        """Poll the job with exponential backoff until JobComplete; Failed/Aborted/too slow is an error."""
        delay = self.settings.bulk_poll_interval_s
        deadline = time.monotonic() + self.settings.bulk_timeout_s
        while True:
            info = self.request("GET", f"{self.data_path}/jobs/query/{job_id}").json()
            state = info.get("state")
            if state == "JobComplete":
                return info
            if state in ("Failed", "Aborted"):
                reason = info.get("errorMessage") or "no error message"
                raise VendorError(
                    self.vendor, f"Bulk API 2.0 query job {job_id} ({sobject}) ended {state}: {reason}", code=state
                )
            if time.monotonic() + delay > deadline:
                self.request("PATCH", f"{self.data_path}/jobs/query/{job_id}", json={"state": "Aborted"})
                raise VendorError(
                    self.vendor,
                    f"Bulk API 2.0 query job {job_id} ({sobject}) still {state} after "
                    f"{self.settings.bulk_timeout_s:g}s; aborted it",
                )
            time.sleep(delay)
            delay = min(delay * 2, self.settings.bulk_poll_max_interval_s)

    def _csv_pages(
        self, response: requests.Response, sobject: str, total: int | None
    ) -> Iterator[Page[SalesforceRecord]]:
        """One results chunk parsed row by row into pages; blank values become null."""
        reader = csv.reader(io.TextIOWrapper(io.BytesIO(response.content), encoding="utf-8", newline=""))
        header = next(reader, None)
        if not header:
            return
        width, size = len(header), self.settings.bulk_page_size
        batch: list[SalesforceRecord] = []
        for values in reader:
            defect = None if len(values) == width else f"CSV row has {len(values)} values for {width} columns"
            record = dict(zip(header, [v or None for v in values], strict=False))
            batch.append(SalesforceRecord(sobject, record, defect))
            if len(batch) >= size:
                yield Page(batch, total=total)
                batch = []
        if batch:
            yield Page(batch, total=total)


def _from_json(record: dict[str, Any]) -> SalesforceRecord:
    fields_ = {k: v for k, v in record.items() if k != "attributes"}
    return SalesforceRecord((record.get("attributes") or {}).get("type", ""), fields_)


def _error_fields(response: requests.Response) -> tuple[str, str]:
    """(errorCode, message) of Salesforce's error array, or of an OAuth error object."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:300]
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return str(body[0].get("errorCode", "")), str(body[0].get("message", ""))
    if isinstance(body, dict) and "error" in body:
        return str(body["error"]), str(body.get("error_description", ""))
    return "", str(body)[:300]


class SalesforceResource(VendorResource):
    """Salesforce client factory.

    Default limit: 100,000 requests per 24 h per credential, evenly spaced (one call every ~0.87 s).
    Salesforce has no per-second limit, only the org's rolling daily allocation, whose minimum on a paid
    org is 100,000 (vendor-apis.md §2.7); at this pace one credential can never exhaust it, even running
    nonstop. Override per connection with ``config.rate_limit``.
    """

    default_rate_limit: ClassVar[tuple[int, float]] = (100_000, 86_400.0)

    api_version: str = Field(default=SalesforceSettings.api_version, description="REST API version, e.g. 62.0.")
    bulk_threshold: int = Field(
        default=SalesforceSettings.bulk_threshold, description="Above this many records a read uses Bulk API 2.0."
    )
    bulk_max_records: int = Field(
        default=SalesforceSettings.bulk_max_records, description="maxRecords per Bulk results request."
    )
    bulk_page_size: int = Field(
        default=SalesforceSettings.bulk_page_size, description="Bulk rows per page committed by the sync loop."
    )
    bulk_poll_interval_s: float = Field(default=SalesforceSettings.bulk_poll_interval_s)
    bulk_poll_max_interval_s: float = Field(default=SalesforceSettings.bulk_poll_max_interval_s)
    bulk_timeout_s: float = Field(default=SalesforceSettings.bulk_timeout_s)

    def settings_for(self, connection: Connection) -> SalesforceSettings:
        values = {}
        for f in fields(SalesforceSettings):
            value = connection.config.get(f.name, getattr(self, f.name))
            values[f.name] = str(value) if f.name == "api_version" else type(getattr(self, f.name))(value)
        return SalesforceSettings(**values)

    def client_for(self, connection: Connection, log: Any = None) -> SalesforceClient:
        creds = connection.credentials
        if not (creds.get("refresh_token") or (creds.get("access_token") and creds.get("instance_url"))):
            raise VendorError(
                "Salesforce",
                "credentials need an OAuth refresh_token (with client_id) or an access_token with its instance_url",
            )
        identity = f"{creds.get('client_id')}:{creds.get('refresh_token') or creds.get('access_token')}"
        return SalesforceClient(
            credentials=creds,
            settings=self.settings_for(connection),
            base_url=self.base_url(connection, DEFAULT_LOGIN_URL),
            limiter=self.limiter("salesforce", identity, connection),
            retry=self.retry_settings(connection),
            log=log,
        )


__all__ = ["SalesforceClient", "SalesforceRecord", "SalesforceResource", "SalesforceSettings", "soql_datetime"]
