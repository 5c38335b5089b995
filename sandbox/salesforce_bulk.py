"""Salesforce Bulk API 2.0 query jobs for the simulator (a mixin of ``salesforce.Salesforce``): create, poll,
abort, delete, and the CSV results read page by page with ``Sforce-Locator``
(https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_get_job_results.htm).

A job snapshots what it can see when it is created: the rows committed by then (see the ``commit_delay_ms``
fault in sandbox.salesforce) at their versions of that moment, so later changes never leak into its results.
``numberRecordsProcessed`` is always the job's true row count.

Faults: ``fail_bulk_jobs`` (the next N jobs end ``Failed``), ``bulk_polls_in_progress`` (status polls that
report ``InProgress`` before the job finishes, default 1) and ``bulk_short_results: k``: the results CSV
silently leaves out its last k rows while the job still reports the full ``numberRecordsProcessed`` (a
truncated download; a client must compare the rows it read with that count).
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import gen
from .core import InvalidRequest, json_response, parsed
from .soql import Soql, SoqlError
from .store import EntityStore, Selection

if TYPE_CHECKING:
    from .core import Faults

JOB_ID_PREFIX = "750RO"
DEFAULT_MAX_RECORDS = 50_000
_DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
_LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}


def errors(status: int, code: str, message: str) -> Response:
    """Salesforce's error body: a JSON array of {message, errorCode}."""
    return json_response([{"message": message, "errorCode": code}], status)


def json_datetime(ms: int) -> str:
    return gen.iso_ms(ms)[:-1] + "+0000"  # REST JSON: 2025-01-01T00:00:00.000+0000


def csv_datetime(ms: int) -> str:
    return gen.iso_ms(ms)  # Bulk CSV: 2025-01-01T00:00:00.000Z


def csv_cell(value: Any) -> str:
    if value is None:
        return ""  # Bulk CSV sends nulls as empty values
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return '"' + (text.replace('"', '""') if '"' in text else text) + '"'


def one(v: Any) -> Any:
    return v[-1] if isinstance(v, list) else v


@dataclass
class BulkJob:
    id: str
    operation: str
    soql: Soql
    store: EntityStore  # the snapshot the job reads
    selection: Selection
    delimiter: str
    line_ending: str
    created: str
    fails: bool
    polls_in_progress: int
    polls: int = 0
    state: str = "UploadComplete"

    @property
    def total(self) -> int:
        n = self.selection.total
        return n if self.soql.limit is None else min(n, self.soql.limit)

    def indices(self, offset: int, count: int, total: int) -> list[int]:
        count = max(min(count, total - offset), 0)
        return self.selection.page(self.soql.order_by, self.soql.descending, offset, count)

    def advance(self) -> None:
        """One status poll: queued -> in progress for a while -> finished."""
        if self.state in ("JobComplete", "Failed", "Aborted"):
            return
        self.polls += 1
        if self.polls <= self.polls_in_progress:
            self.state = "InProgress"
        else:
            self.state = "Failed" if self.fails else "JobComplete"


def _encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_locator(locator: str) -> int:
    try:
        offset = int(base64.b64decode(locator + "=" * (-len(locator) % 4)).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(f"invalid locator {locator!r}") from None
    if offset < 0:
        raise InvalidRequest(f"invalid locator {locator!r}")
    return offset


class BulkQueries:
    """The Bulk API 2.0 query routes; the vendor supplies the dataset hooks named below."""

    faults: Faults
    _jobs: OrderedDict[str, BulkJob]

    if TYPE_CHECKING:  # supplied by the vendor class

        def _bad_version(self, version: str) -> Response | None: ...
        def _parse(self, text: str) -> Soql: ...
        def _snapshot(self, soql: Soql, all_rows: bool) -> tuple[EntityStore, Selection]: ...
        def _next_id(self) -> int: ...
        def _remember(self, table: OrderedDict[str, Any], key: str, value: Any) -> None: ...
        def _usage_headers(self) -> dict[str, str]: ...
        def clock_ms(self) -> int: ...
        def row(
            self, spec: Any, i: int, fields: list[str], iso: Callable[[int], str], store: EntityStore
        ) -> list[Any]: ...

    # --- routes --------------------------------------------------------------------------------
    def bulk_routes(self, r: APIRouter) -> None:
        r.add_api_route("/services/data/{version}/jobs/query", self._create_job, methods=["POST"])
        r.add_api_route("/services/data/{version}/jobs/query/{job_id}", self._job_info, methods=["GET"])
        r.add_api_route("/services/data/{version}/jobs/query/{job_id}", self._abort_job, methods=["PATCH"])
        r.add_api_route("/services/data/{version}/jobs/query/{job_id}", self._delete_job, methods=["DELETE"])
        r.add_api_route("/services/data/{version}/jobs/query/{job_id}/results", self._results, methods=["GET"])

    async def _create_job(self, version: str, request: Request) -> Response:
        if (bad := self._bad_version(version)) is not None:
            return bad
        body = parsed(request).body
        if not isinstance(body, dict):
            return errors(400, "JSON_PARSER_ERROR", "request body must be a JSON object")
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            return errors(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        if body.get("contentType", "CSV") != "CSV":
            return errors(400, "INVALIDJOB", "InvalidJob : contentType must be CSV")
        delimiter = _DELIMITERS.get(body.get("columnDelimiter", "COMMA"))
        line_ending = _LINE_ENDINGS.get(body.get("lineEnding", "LF"))
        if delimiter is None or line_ending is None:
            return errors(400, "INVALIDJOB", "InvalidJob : invalid columnDelimiter or lineEnding")
        try:
            soql = self._parse(str(body.get("query", "")))
        except SoqlError as exc:
            return errors(400, exc.code, exc.message)
        if soql.is_count:
            return errors(400, "API_ERROR", "Aggregate queries are not supported by the Bulk API")
        store, selection = self._snapshot(soql, operation == "queryAll")
        extra = self.faults.extra
        fails = int(extra.get("fail_bulk_jobs") or 0) > 0
        if fails:
            extra["fail_bulk_jobs"] = int(extra["fail_bulk_jobs"]) - 1
        polls = extra.get("bulk_polls_in_progress")
        job = BulkJob(
            id=f"{JOB_ID_PREFIX}{self._next_id():010d}AAA",
            operation=operation,
            soql=soql,
            store=store,
            selection=selection,
            delimiter=delimiter,
            line_ending=line_ending,
            created=json_datetime(self.clock_ms()),
            fails=fails,
            polls_in_progress=1 if polls is None else int(polls),
        )
        self._remember(self._jobs, job.id, job)
        return json_response(self._job_body(job, version))

    def _job_body(self, job: BulkJob, version: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.soql.sobject.name,
            "createdById": "005RO0000000001AAA",
            "createdDate": job.created,
            "systemModstamp": job.created,
            "state": job.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(version[1:]),
            "jobType": "V2Query",
            "lineEnding": "CRLF" if job.line_ending == "\r\n" else "LF",
            "columnDelimiter": next(k for k, v in _DELIMITERS.items() if v == job.delimiter),
        }
        if job.polls:
            done = job.state == "JobComplete"
            body.update(numberRecordsProcessed=job.total if done else 0, retries=0, totalProcessingTime=50 * job.polls)
        if job.state == "Failed":
            body["errorMessage"] = "Failed to process query: FUNCTIONALITY_TEMPORARILY_UNAVAILABLE"
        return body

    def _job_or_404(self, job_id: str) -> BulkJob | Response:
        job = self._jobs.get(job_id)
        if job is None:
            return errors(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    async def _job_info(self, version: str, job_id: str) -> Response:
        job = self._job_or_404(job_id)
        if isinstance(job, Response):
            return job
        job.advance()
        return json_response(self._job_body(job, version), headers=self._usage_headers())

    async def _abort_job(self, version: str, job_id: str, request: Request) -> Response:
        job = self._job_or_404(job_id)
        if isinstance(job, Response):
            return job
        body = parsed(request).body
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            return errors(400, "INVALIDJOBSTATE", "Only state Aborted can be set on a query job")
        if job.state not in ("JobComplete", "Failed"):
            job.state = "Aborted"
        return json_response(self._job_body(job, version))

    async def _delete_job(self, version: str, job_id: str) -> Response:
        job = self._job_or_404(job_id)
        if isinstance(job, Response):
            return job
        del self._jobs[job_id]
        return Response(status_code=204)

    async def _results(self, version: str, job_id: str, request: Request) -> Response:
        job = self._job_or_404(job_id)
        if isinstance(job, Response):
            return job
        if job.state != "JobComplete":
            return errors(
                412,
                "JOB_NOT_COMPLETE",
                f"Job {job_id} is in state {job.state}; results are available once it is JobComplete",
            )
        q = parsed(request).query
        try:
            offset = _decode_locator(str(one(q["locator"]))) if q.get("locator") else 0
            max_records = int(one(q.get("maxRecords", DEFAULT_MAX_RECORDS)))
            if max_records <= 0:
                raise InvalidRequest("maxRecords must be positive")
        except (InvalidRequest, ValueError) as exc:
            return errors(400, "INVALID_QUERY_LOCATOR" if "locator" in str(exc) else "INVALIDURL", str(exc))
        fields, sep, eol, spec = job.soql.fields, job.delimiter, job.line_ending, job.soql.sobject
        # bulk_short_results: the download is missing its last k rows, the job info still counts them.
        served = max(job.total - int(self.faults.extra.get("bulk_short_results") or 0), 0)
        indices = job.indices(offset, max_records, served)
        lines = [sep.join(f'"{f}"' for f in fields)]
        for i in indices:
            lines.append(sep.join(csv_cell(v) for v in self.row(spec, i, fields, csv_datetime, job.store)))
        end = offset + len(indices)
        headers = {
            "Sforce-NumberOfRecords": str(len(indices)),
            "Sforce-Locator": _encode_locator(end) if end < served else "null",
            **self._usage_headers(),
        }
        return Response(eol.join(lines) + eol, 200, headers, media_type="text/csv")
