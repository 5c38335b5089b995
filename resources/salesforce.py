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
from resources.http import ErrorRule, Outcome, VendorError, VendorFault, json_body
from resources.models import Deletion, FullReadNeeded, Page
from resources.oauth import OAuthRefreshClient
from resources.vendor import VendorResource

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
    query_page_size: int = QUERY_BATCH_SIZE  # the LIMIT of each keyset REST query
    bulk_threshold: int = 10_000  # above this many matching records, read through Bulk API 2.0
    bulk_max_records: int = 50_000  # rows per results request: bounds the bytes held at once
    bulk_page_size: int = 5_000  # rows per page handed to the sync loop (one warehouse commit each)
    bulk_poll_interval_s: float = 0.5  # first wait between job status polls; doubles per poll
    bulk_poll_max_interval_s: float = 10.0
    bulk_timeout_s: float = 3600.0  # a job still running after this is aborted


def soql_datetime(moment: datetime) -> str:
    """An unquoted SOQL datetime literal, floored to whole seconds (a lower bound never excludes a change)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def soql_exact_datetime(value: str) -> str:
    """A record's SystemModstamp (``2024-06-01T10:00:00.000+0000``) as a SOQL literal with its milliseconds."""
    moment = datetime.fromisoformat(value)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _readable_stamp(fields: dict[str, Any]) -> bool:
    try:
        soql_exact_datetime(str(fields[MODIFIED_FIELD]))
    except (KeyError, ValueError):
        return False
    return True


class SalesforceClient(OAuthRefreshClient):
    vendor = "Salesforce"
    # Salesforce sends no expires_in (the lifetime is the org's session timeout): refresh on 401.
    no_refresh_token_message = "the access token was rejected and there is no refresh_token"

    error_rules = (ErrorRule(Outcome.THROTTLED, (403,), code=THROTTLE_CODE),)

    def __init__(self, settings: SalesforceSettings, **kwargs: Any):
        super().__init__(**kwargs)
        self.settings = settings
        self.token_endpoint = f"{self.base_url}{TOKEN_PATH}"
        # The data host comes from the token response; a stored instance_url lets a stored token work.
        self.base_url = self.data_host(str(self.credentials.get("instance_url") or self.base_url))
        self.data_path = f"/services/data/v{settings.api_version}"
        self._described: dict[str, set[str]] = {}
        self._org_id: str | None = None

    def accept_token(self, body: dict[str, Any]) -> None:
        super().accept_token(body)
        self.base_url = self.data_host(str(body["instance_url"]))
        # The identity URL ends in /id/<org id>/<user id>.
        parts = urlsplit(str(body.get("id") or "")).path.split("/")
        self._org_id = parts[-2] if len(parts) >= 3 and parts[-3] == "id" else None

    def account_identity(self) -> str | None:
        """The org the token belongs to, from the token response's identity URL."""
        if self.credentials.get("refresh_token"):
            self.authorize({})  # refreshes the token when there is none yet
        return None if self._org_id is None else f"org {self._org_id}"

    def data_host(self, instance_url: str) -> str:
        """An instance_url is used only on a Salesforce host (or the operator's sandbox): it comes from
        a token response or from the tenant's credentials, and either could point anywhere."""
        if not self.destinations.permits(instance_url):
            raise VendorError(self.vendor, f"instance_url is not a {self.destinations.owner} host; refusing to call it")
        return instance_url.rstrip("/")

    def extract_error(self, response: requests.Response) -> VendorFault | None:
        """Salesforce's ``[{"errorCode", "message"}]``, or an OAuth error object from the token endpoint."""
        body = json_body(response)
        if isinstance(body, list) and body and isinstance(body[0], dict):
            return VendorFault(str(body[0].get("errorCode", "")), str(body[0].get("message", "")))
        return self.oauth_error(response)

    # --- reads ----------------------------------------------------------------------------------

    def modified_since(self, sobject: str, field_names: list[str], since: datetime | None) -> Iterator[Page[Any]]:
        """Every record of ``sobject`` (``since`` None) or those with ``SystemModstamp >= since``, deleted
        ones included: every read is a ``queryAll`` (REST ``/queryAll``, Bulk ``operation: queryAll``), which
        also returns deleted, merged and archived rows (``IsDeleted``, ``MasterRecordId``, ``IsArchived``).

        ``COUNT()`` first: above the bulk threshold the read is one Bulk API 2.0 job (a snapshot),
        otherwise keyset-paged REST queries ordered by ``(SystemModstamp, Id)``. Each keyset query asks for
        rows after the last one read, so no query locator is held open: a locator expires after 15
        minutes idle, a user may hold only 10, and the sandbox pages a live order behind one.
        """
        where = f"{MODIFIED_FIELD} >= {soql_datetime(since)}" if since is not None else ""
        if where:
            self.log.info(f"[{self.vendor} Client] Using incremental WHERE clause: WHERE {where} ({sobject})")
        total = self.count(sobject, f" WHERE {where}" if where else "")
        if total > self.settings.bulk_threshold:
            self.log.info(
                f"[{self.vendor} Client] {sobject}: {total} records exceed the bulk threshold "
                f"({self.settings.bulk_threshold}); using Bulk API 2.0"
            )
            select = f"SELECT {', '.join(field_names)} FROM {sobject}" + (f" WHERE {where}" if where else "")
            return self.bulk_query(sobject, select, total)
        return self.keyset_query(sobject, field_names, where, total)

    def count(self, sobject: str, where: str = "") -> int:
        soql = f"SELECT COUNT() FROM {sobject}{where}"
        return int(self.request_json("GET", f"{self.data_path}/queryAll", params={"q": soql})["totalSize"])

    def fields_of(self, sobject: str) -> set[str]:
        """The object's field names, from ``describe`` (once per client): which lifecycle fields it has."""
        if sobject not in self._described:
            body = self.request_json("GET", f"{self.data_path}/sobjects/{sobject}/describe")
            self._described[sobject] = {f["name"] for f in body.get("fields", [])}
        return self._described[sobject]

    def deleted_between(self, sobject: str, start: datetime, end: datetime) -> list[Deletion]:
        """Records deleted in [start, end], hard deletes included (``sobjects/{type}/deleted``). Salesforce
        keeps about 15 days, less once the recycle bin is emptied: a start before ``earliestDateAvailable``
        (or ``INVALID_REPLICATION_DATE``) means deletions were lost, so the caller must read everything."""
        params = {"start": _deleted_datetime(start), "end": _deleted_datetime(end)}
        try:
            body = self.request_json("GET", f"{self.data_path}/sobjects/{sobject}/deleted/", params=params)
        except VendorError as exc:
            if exc.code == "INVALID_REPLICATION_DATE":
                raise FullReadNeeded(
                    f"Salesforce no longer lists {sobject} deletions since {params['start']}"
                ) from None
            raise
        earliest = body.get("earliestDateAvailable")
        if earliest and datetime.fromisoformat(earliest) > start:
            raise FullReadNeeded(f"Salesforce lists {sobject} deletions only since {earliest}")
        return [
            Deletion(str(d["id"]), at=datetime.fromisoformat(d["deletedDate"])) for d in body.get("deletedRecords", [])
        ]

    def records_by_id(self, sobject: str, field_names: list[str], ids: list[str]) -> list[SalesforceRecord]:
        """The rows with these ids, deleted ones included (``queryAll``); an id with no row was hard-deleted."""
        quoted = ", ".join("'" + i.replace("\\", "\\\\").replace("'", "\\'") + "'" for i in ids)
        soql = f"SELECT {', '.join(field_names)} FROM {sobject} WHERE Id IN ({quoted})"
        body = self.request_json("GET", f"{self.data_path}/queryAll", params={"q": soql})
        return [_from_json(r) for r in body.get("records") or []]

    def keyset_query(
        self, sobject: str, field_names: list[str], where: str, total: int | None = None
    ) -> Iterator[Page[SalesforceRecord]]:
        """REST queries of up to ``query_page_size`` rows ordered by ``(SystemModstamp, Id)``, each starting
        after the last row the previous one returned."""
        headers = {"Sforce-Query-Options": f"batchSize={QUERY_BATCH_SIZE}"}
        select = f"SELECT {', '.join(field_names)} FROM {sobject}"
        limit = min(max(self.settings.query_page_size, 1), QUERY_BATCH_SIZE)
        order = f"ORDER BY {MODIFIED_FIELD} ASC, Id ASC LIMIT {limit}"
        after, carried = "", set[str]()
        while True:
            conditions = " AND ".join(c for c in (where, after) if c)
            soql = f"{select}{f' WHERE {conditions}' if conditions else ''} {order}"
            body = self.request_json("GET", f"{self.data_path}/queryAll", params={"q": soql}, headers=headers)
            records = [_from_json(r) for r in body.get("records") or []]
            fresh = [r for r in records if str(r.fields["Id"]) not in carried]
            if fresh:
                yield Page(fresh, total=total)
            if len(records) < limit and body.get("done", True):
                return
            # The next query starts after the last row with a readable SystemModstamp: a malformed one (which
            # the transform dead-letters) cannot be a keyset bound. The rows after it are served again and
            # dropped here, so each is read once.
            anchor = next((i for i in reversed(range(len(records))) if _readable_stamp(records[i].fields)), None)
            if anchor is None:
                raise VendorError(self.vendor, f"no {sobject} row of a page has a readable {MODIFIED_FIELD}")
            last, carried = records[anchor].fields, {str(r.fields["Id"]) for r in records[anchor + 1 :]}
            stamp = soql_exact_datetime(str(last[MODIFIED_FIELD]))
            after = f"({MODIFIED_FIELD} > {stamp} OR ({MODIFIED_FIELD} = {stamp} AND Id > '{last['Id']}'))"

    def bulk_query(self, sobject: str, soql: str, total: int | None = None) -> Iterator[Page[SalesforceRecord]]:
        """A Bulk API 2.0 query job: create, poll until complete, then read the CSV by locator."""
        job = self.request_json(
            "POST",
            f"{self.data_path}/jobs/query",
            json={
                "operation": "queryAll",
                "query": soql,
                "contentType": "CSV",
                "columnDelimiter": "COMMA",
                "lineEnding": "LF",
            },
        )
        job_id = str(job["id"])
        self.log.info(f"[{self.vendor} Client] Bulk API 2.0 query job {job_id} created for {sobject}")
        info = self.wait_for_job(job_id, sobject)
        expected, read = int(info.get("numberRecordsProcessed") or 0), 0
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
                    for page in self._csv_pages(response, sobject, total):
                        read += len(page.records)
                        yield page
            finally:
                if pending is not None:
                    pending.cancel()
        if read != expected:
            # A short read must fail the entity: its watermark stays, and the next sync reads again.
            raise VendorError(
                self.vendor,
                f"Bulk API 2.0 query job {job_id} ({sobject}) returned {read} rows; the job processed {expected}",
                code="SHORT_READ",
            )

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
            info = self.request_json("GET", f"{self.data_path}/jobs/query/{job_id}")
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


def _deleted_datetime(moment: datetime) -> str:
    """The deleted endpoint's start/end: ISO-8601 in UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _from_json(record: dict[str, Any]) -> SalesforceRecord:
    fields_ = {k: v for k, v in record.items() if k != "attributes"}
    return SalesforceRecord((record.get("attributes") or {}).get("type", ""), fields_)


class SalesforceResource(VendorResource):
    """Salesforce client factory.

    Default limit: 100,000 requests per 24 h per credential, evenly spaced (one call every ~0.87 s).
    Salesforce has no per-second limit, only the org's rolling daily allocation, whose minimum on a paid
    org is 100,000; at this pace one credential can never exhaust it, even running
    nonstop. Override per connection with ``config.rate_limit``.
    """

    client_class = SalesforceClient
    credential_sets = (("refresh_token",), ("access_token", "instance_url"))
    credentials_hint = "an OAuth refresh_token (with client_id) or an access_token with its instance_url"
    quota_identity = (("client_id", "refresh_token"), ("refresh_token",), ("access_token",))
    default_rate_limit: ClassVar[tuple[int, float]] = (100_000, 86_400.0)

    api_version: str = Field(default=SalesforceSettings.api_version, description="REST API version, e.g. 62.0.")
    query_page_size: int = Field(
        default=SalesforceSettings.query_page_size, description="Rows per keyset REST query (at most 2,000)."
    )
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

    def client_options(self, connection: Connection, identity: str) -> dict[str, Any]:
        return {"settings": self.settings_for(connection)}


__all__ = ["SalesforceClient", "SalesforceRecord", "SalesforceResource", "SalesforceSettings", "soql_datetime"]
