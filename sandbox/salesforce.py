"""Salesforce simulator (reference: vendor-apis.md §2): OAuth refresh-token flow, SOQL over REST
(query / queryAll, ``nextRecordsUrl`` paging, ``COUNT()``), the Bulk API 2.0 query-job life cycle with
CSV results read by ``Sforce-Locator``, Salesforce's JSON error arrays and its 403
``REQUEST_LIMIT_EXCEEDED`` throttling.

The SOQL grammar served is what a sync sends: ``SELECT <fields> | COUNT() FROM <object>
[WHERE <datetime field> <op> <literal> [AND ...]] [ORDER BY <field> [ASC|DESC]] [LIMIT n]``.
Datetime literals are unquoted, as in SOQL; a quoted one is ``MALFORMED_QUERY``.

Vendor-specific fault settings (``POST /_sandbox/salesforce/faults``):
- ``fail_bulk_jobs``: the next N bulk query jobs created end ``Failed``;
- ``bulk_polls_in_progress``: how many status polls a job reports ``InProgress`` before it
  finishes (default 1).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import gen
from .core import Identity, OAuthApps, OAuthCredential, SandboxRequest, Vendor, json_response, now_ms, parsed
from .core import InvalidRequest as BadRequest
from .store import INF, EntityStore, Group, Selection

JOB_ID_PREFIX = "750RO"
QUERY_PAGE_DEFAULT = 2000
QUERY_PAGE_MIN = 200
DEFAULT_MAX_RECORDS = 50_000
MAX_CURSORS = 1000  # open query cursors and jobs kept; older ones are forgotten
MAX_SIZE = 10_000_000
TOKEN_TTL_S = 7200  # Salesforce sends no expires_in: the org's session timeout applies (2 h default)
_NS = uuid.UUID("3b0c7d2e-58a4-4f0e-9d61-2a7c5e9b1f03")
_VERSION = re.compile(r"^v\d{2,3}\.0$")
_SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>\w+)(?:\s+(?P<dir>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(r"^\s*(?P<field>\w+)\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>\S+)\s*$")
_DATETIME_LITERAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:\d{2})$")
_DATETIME_FIELDS = {"SystemModstamp", "LastModifiedDate"}  # both follow the record's modified time
_DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
_LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}

_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
_INDUSTRIES = ("Technology", "Finance", "Healthcare", "Retail", "Manufacturing", "Education", "Media", "Energy")
_TITLES = ("CEO", "CTO", "VP Sales", "Head of Operations", "Account Executive", "Procurement Manager")
_TASK_STATUS = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
_TASK_PRIORITY = ("High", "Normal", "Low")
_TASK_SUBTYPE = ("Task", "Email", "Call")
_TASK_VERBS = ("Call", "Email", "Follow up with", "Send proposal to", "Book demo with", "Check in with")
_OPP_TYPES = ("New Business", "Existing Business")


def _sf_id(prefix: str, i: int) -> str:
    """18 characters like a real id: key prefix, pod, a zero-padded index and a fixed suffix."""
    return f"{prefix}RO{i:010d}AAA"


def _phone(h: int) -> str | None:
    return None if h % 7 == 0 else f"+1 555 {(h >> 12) % 900 + 100:03d} {(h >> 24) % 10000:04d}"


def _date(ms: int) -> str:
    return gen.iso_ms(ms)[:10]


def _account(h: int, i: int, v: int, created: int) -> dict[str, Any]:
    word, suffix = gen.pick(h, gen.COMPANY_WORDS), gen.pick(h, gen.COMPANY_SUFFIXES, 8)
    return {
        "Name": f"{word} {suffix} {i}{_rev(v)}",
        "Website": f"https://www.{word}-{suffix}-{i}.example.com".lower(),
        "Industry": gen.pick(h, _INDUSTRIES, 16),
        "Phone": _phone(h),
    }


def _contact(h: int, i: int, v: int, created: int) -> dict[str, Any]:
    first, last = gen.pick(h, gen.FIRST_NAMES), gen.pick(h, gen.LAST_NAMES, 8)
    return {
        "FirstName": first,
        "LastName": last + _rev(v),
        "Email": f"{first}.{last}{i}@{gen.pick(h, gen.COMPANY_WORDS, 16)}.example.com".lower(),
        "Phone": _phone(h),
        "Title": gen.pick(h, _TITLES, 24),
        "AccountId": _sf_id("001", (h >> 32) % 1000),
    }


def _opportunity(h: int, i: int, v: int, created: int) -> dict[str, Any]:
    return {
        "Name": f"{gen.pick(h, gen.COMPANY_WORDS)} {gen.pick(h, gen.PRODUCTS, 8)} {i}{_rev(v)}",
        "Amount": float((h >> 16) % 99_500 + 500 + 250 * v),
        "StageName": gen.pick(h, _STAGES, 24),
        "Type": gen.pick(h, _OPP_TYPES, 28),
        "CloseDate": _date(created + ((h >> 32) % 120 + 1) * gen.DAY_MS),
        "OwnerId": _sf_id("005", (h >> 40) % 20),
        "AccountId": _sf_id("001", (h >> 44) % 1000),
    }


def _task(h: int, i: int, v: int, created: int) -> dict[str, Any]:
    who = f"{gen.pick(h, gen.FIRST_NAMES, 8)} {gen.pick(h, gen.LAST_NAMES, 16)}"
    return {
        "Subject": f"{gen.pick(h, _TASK_VERBS)} {who}{_rev(v)}",
        "Status": gen.pick(h, _TASK_STATUS, 24),
        "Priority": gen.pick(h, _TASK_PRIORITY, 32),
        "ActivityDate": None if h % 5 == 0 else _date(created + ((h >> 40) % 30 + 1) * gen.DAY_MS),
        "TaskSubtype": gen.pick(h, _TASK_SUBTYPE, 36),
        "OwnerId": _sf_id("005", (h >> 44) % 20),
    }


def _rev(version: int) -> str:
    return f" (rev {version})" if version else ""


@dataclass(frozen=True)
class SObject:
    name: str
    key_prefix: str
    fields: Callable[[int, int, int, int], dict[str, Any]]  # (hash, index, version, created_ms) -> values

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(self.fields(0, 0, 0, 0)) | {"Id", "CreatedDate", "SystemModstamp", "LastModifiedDate"}


SOBJECTS = {
    s.name: s
    for s in (
        SObject("Account", "001", _account),
        SObject("Contact", "003", _contact),
        SObject("Opportunity", "006", _opportunity),
        SObject("Task", "00T", _task),
    )
}


class SoqlError(Exception):
    """A SOQL the org rejects: HTTP 400 with Salesforce's error code."""

    def __init__(self, code: str, message: str):
        self.code, self.message = code, message
        super().__init__(message)


@dataclass(frozen=True)
class Soql:
    sobject: SObject
    fields: list[str]  # empty for COUNT()
    groups: list[Group]
    order_by: str  # "modified" or "index"
    descending: bool
    limit: int | None

    @property
    def is_count(self) -> bool:
        return not self.fields


def _malformed(message: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", message)


def _literal_ms(field_name: str, value: str) -> int:
    if value[:1] in ("'", '"'):
        raise _malformed(
            f"value of filter criterion for field '{field_name}' must be of type dateTime "
            "and should not be enclosed in quotes"
        )
    if not _DATETIME_LITERAL.match(value):
        raise _malformed(f"line 1:0 no viable alternative at character '{value[:20]}'")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int(moment.astimezone(UTC).timestamp() * 1000)


def _time_range(op: str, ms: int) -> list[tuple[int, int]]:
    ranges = {
        ">=": [(ms, INF)],
        ">": [(ms + 1, INF)],
        "<": [(-INF, ms)],
        "<=": [(-INF, ms + 1)],
        "=": [(ms, ms + 1)],
        "!=": [(-INF, ms), (ms + 1, INF)],
    }
    return ranges[op]


def parse_soql(text: str) -> Soql:
    match = _SOQL.match(text or "")
    if match is None:
        raise _malformed("unexpected token: query must be SELECT <fields> FROM <object> ...")
    sobject = SOBJECTS.get(match["object"])
    if sobject is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"sObject type '{match['object']}' is not supported. If you are "
            "attempting to use a custom object, be sure to append the '__c' after the entity name.",
        )
    raw_fields = [f.strip() for f in match["fields"].split(",")]
    is_count = [f.upper() for f in raw_fields] == ["COUNT()"]
    for name in [] if is_count else raw_fields:
        if name not in sobject.field_names:
            raise SoqlError(
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{sobject.name}'. If you are "
                "attempting to use a custom field, be sure to append the '__c' after the custom field "
                "name. Please reference your WSDL or the describe call for the appropriate names.",
            )
    group = Group()
    for condition in re.split(r"\s+AND\s+", match["where"] or "", flags=re.IGNORECASE) if match["where"] else []:
        cond = _CONDITION.match(condition)
        if cond is None or cond["field"] not in _DATETIME_FIELDS:
            raise _malformed(
                f"sandbox: WHERE supports {sorted(_DATETIME_FIELDS)} comparisons joined by AND, "
                f"got {condition.strip()!r}"
            )
        ranges = _time_range(cond["op"], _literal_ms(cond["field"], cond["value"]))
        group.ms = [(max(a, c), min(b, d)) for a, b in group.ms for c, d in ranges if max(a, c) < min(b, d)]
    order = match["order"]
    if is_count and order:
        raise _malformed("ORDER BY is not allowed with COUNT()")
    if order and order not in _DATETIME_FIELDS | {"Id"}:
        raise _malformed(f"sandbox: ORDER BY supports SystemModstamp or Id, got {order!r}")
    return Soql(
        sobject=sobject,
        fields=[] if is_count else raw_fields,
        groups=[group],
        order_by="modified" if order in _DATETIME_FIELDS else "index",
        descending=(match["dir"] or "").upper() == "DESC",
        limit=int(match["limit"]) if match["limit"] else None,
    )


@dataclass
class Cursor:
    """A query's result set: a lazy selection of the store plus what to render from it."""

    soql: Soql
    selection: Selection
    version: str

    @property
    def total(self) -> int:
        n = self.selection.total
        return n if self.soql.limit is None else min(n, self.soql.limit)

    def indices(self, offset: int, count: int) -> list[int]:
        count = max(min(count, self.total - offset), 0)
        return self.selection.page(self.soql.order_by, self.soql.descending, offset, count)


@dataclass
class BulkJob:
    id: str
    operation: str
    cursor: Cursor
    delimiter: str
    line_ending: str
    created: str
    fails: bool
    polls_in_progress: int
    polls: int = 0
    state: str = "UploadComplete"

    def advance(self) -> None:
        """One status poll: queued -> in progress for a while -> finished."""
        if self.state in ("JobComplete", "Failed", "Aborted"):
            return
        self.polls += 1
        if self.polls <= self.polls_in_progress:
            self.state = "InProgress"
        else:
            self.state = "Failed" if self.fails else "JobComplete"


def _credential(tenant: str) -> OAuthCredential:
    def u(kind: str) -> str:
        return uuid.uuid5(_NS, f"salesforce:{tenant}:{kind}").hex

    return OAuthCredential("3MVG9" + u("client"), u("secret").upper(), "5Aep861" + u("refresh"))


def _errors(status: int, code: str, message: str) -> Response:
    return json_response([{"message": message, "errorCode": code}], status)


def _encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_locator(locator: str) -> int:
    try:
        offset = int(base64.b64decode(locator + "=" * (-len(locator) % 4)).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest(f"invalid locator {locator!r}") from None
    if offset < 0:
        raise BadRequest(f"invalid locator {locator!r}")
    return offset


def _one(v: Any) -> Any:
    return v[-1] if isinstance(v, list) else v


class Salesforce(Vendor):
    name = "salesforce"
    default_sizes = {"Opportunity": 120, "Contact": 150, "Account": 60, "Task": 80}
    # The org's daily API allocation (100,000 per rolling 24 h at the minimum paid tier).
    default_limit = (100_000, 86_400.0)
    extra_fault_keys = frozenset({"fail_bulk_jobs", "bulk_polls_in_progress"})

    def __init__(self) -> None:
        super().__init__()
        self.apps = OAuthApps(_credential("default"))
        self.stores: dict[str, EntityStore] = {}
        self._hash_prefix: dict[str, int] = {}
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._jobs: OrderedDict[str, BulkJob] = OrderedDict()
        self._ids = itertools.count(1)
        self._api_usage = 0

    # --- dataset -------------------------------------------------------------------------------
    def reset(self, seed: int, sizes: dict[str, int]) -> None:
        for name, size in sizes.items():
            if name not in SOBJECTS or not 0 <= int(size) <= MAX_SIZE:
                raise BadRequest(f"salesforce: unknown entity {name!r} or size outside 0..{MAX_SIZE}")
        self._hash_prefix = {name: gen.mix(seed, gen.name_code("salesforce:" + name)) for name in SOBJECTS}
        self.stores = {name: EntityStore(int(sizes[name]), self._base_ms_fn(name)) for name in SOBJECTS}
        self._cursors.clear()
        self._jobs.clear()
        self._ids = itertools.count(1)
        self._api_usage = 0

    def _base_ms_fn(self, name: str) -> Callable[[int], int]:
        prefix, mix1, origin = self._hash_prefix[name], gen.mix1, gen.ORIGIN_MS
        # Distinct and strictly increasing: one record per second plus a sub-second jitter.
        return lambda i: origin + i * 1000 + mix1(prefix, i) % 1000

    def mutate(self, entity: str, count: int, ids: list[str] | None, create: int) -> dict[str, Any]:
        spec = SOBJECTS.get(entity)
        if spec is None:
            raise BadRequest(f"salesforce: unknown entity {entity!r} (one of {sorted(SOBJECTS)})")
        store = self.stores[spec.name]
        if ids is not None:
            indices = [self._index(spec, x) for x in ids]
            if any(i is None for i in indices):
                raise BadRequest(f"salesforce: unknown {spec.name} id in {ids}")
        else:
            indices = store.select([Group()]).page("modified", False, 0, count)  # oldest first
        if not indices and not create:
            return {"ids": [], "created_ids": [], "modified_at": None}
        t, created = store.bump([i for i in indices if i is not None], create, int(now_ms()))
        return {
            "ids": [_sf_id(spec.key_prefix, i) for i in [*dict.fromkeys(indices), *created]],
            "created_ids": [_sf_id(spec.key_prefix, i) for i in created],
            "modified_at": gen.iso_ms(t),
        }

    def _index(self, spec: SObject, record_id: str) -> int | None:
        digits = record_id[5:15]
        if len(record_id) != 18 or not record_id.startswith(spec.key_prefix) or not digits.isdigit():
            return None
        i = int(digits)
        return i if i < self.stores[spec.name].n_total else None

    def values(self, spec: SObject, i: int) -> tuple[dict[str, Any], int, int]:
        """A record's field values (datetimes as epoch ms under their names), modified and created ms."""
        h = gen.mix1(self._hash_prefix[spec.name], i)
        base_ms = gen.ORIGIN_MS + i * 1000
        o = self.stores[spec.name].overrides.get(i)
        created = base_ms - (h >> 8) % (400 * gen.DAY_MS)
        if o is None:
            modified, version = base_ms + h % 1000, 0
        else:
            modified, version = o.modified_ms, o.version
            created = o.created_ms if o.created_ms is not None else created
        return spec.fields(h, i, version, created), modified, created

    def row(self, spec: SObject, i: int, fields: list[str], iso: Callable[[int], str]) -> list[Any]:
        """The selected fields of record i, in SELECT order; datetimes rendered by ``iso``."""
        values, modified, created = self.values(spec, i)
        rid = _sf_id(spec.key_prefix, i)
        stamp = "not-a-date" if rid in self.faults.bad_records else iso(modified)
        values.update(Id=rid, CreatedDate=iso(created), SystemModstamp=stamp, LastModifiedDate=iso(modified))
        return [values[f] for f in fields]

    # --- identity and vendor error bodies ------------------------------------------------------
    def connection(self, base_url: str, tenant: str) -> dict[str, Any]:
        cred = self.apps.issue(_credential(tenant))
        return {
            "credentials": cred.as_dict(),
            "config": {"base_url": base_url},
        }

    def is_auth_endpoint(self, req: SandboxRequest) -> bool:
        return req.subpath == "/services/oauth2/token"

    def identify(self, req: SandboxRequest) -> Identity:
        if self.is_auth_endpoint(req):
            client_id = _client_auth(req)[0]
            return Identity(client_id if self.apps.knows_client(client_id) else None, False)
        return self.tokens.lookup(req.bearer())

    def unauthorized(self, req: SandboxRequest) -> Response:
        return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def revoked_auth(self, req: SandboxRequest) -> Response:
        return json_response({"error": "invalid_grant", "error_description": "expired access/refresh token"}, 400)

    def rate_limited(self, retry_after_s: float | None) -> Response:
        # Salesforce throttles with 403, not 429, and sends no Retry-After; one is added only when a
        # test injects it.
        resp = _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        if retry_after_s is not None:
            resp.headers["Retry-After"] = f"{retry_after_s:g}"
        return resp

    def server_error(self, status: int) -> Response:
        if status == 503:
            return _errors(503, "SERVER_UNAVAILABLE", "Server is temporarily unavailable. Please try again later.")
        return _errors(
            status,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this "
            "ErrorId if you contact support: 1234567890-12345 (-1234567890)",
        )

    def _usage_headers(self) -> dict[str, str]:
        self._api_usage += 1
        return {"Sforce-Limit-Info": f"api-usage={self._api_usage}/{self.default_limit[0]}"}

    # --- routes --------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/services/oauth2/token", self._token, methods=["POST"])
        r.add_api_route("/services/data/{version}/query", self._query, methods=["GET"])
        r.add_api_route("/services/data/{version}/queryAll", self._query, methods=["GET"])
        r.add_api_route("/services/data/{version}/query/{cursor}", self._query_more, methods=["GET"])
        r.add_api_route("/services/data/{version}/queryAll/{cursor}", self._query_more, methods=["GET"])
        r.add_api_route("/services/data/{version}/jobs/query", self._create_job, methods=["POST"])
        r.add_api_route("/services/data/{version}/jobs/query/{job_id}", self._job_info, methods=["GET"])
        r.add_api_route("/services/data/{version}/jobs/query/{job_id}", self._abort_job, methods=["PATCH"])
        r.add_api_route("/services/data/{version}/jobs/query/{job_id}", self._delete_job, methods=["DELETE"])
        r.add_api_route("/services/data/{version}/jobs/query/{job_id}/results", self._results, methods=["GET"])
        return r

    async def _token(self, request: Request) -> Response:
        req = parsed(request)
        form = req.body if isinstance(req.body, dict) else {}
        if form.get("grant_type") != "refresh_token":
            return json_response(
                {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, 400
            )
        client_id, client_secret = _client_auth(req)
        cred = self.apps.by_refresh_token(str(form.get("refresh_token", "")))
        if cred is None or client_id != cred.client_id:
            return json_response({"error": "invalid_grant", "error_description": "authentication failure"}, 400)
        if client_secret != cred.client_secret:
            return json_response({"error": "invalid_client", "error_description": "invalid client credentials"}, 400)
        access = self.tokens.issue(cred.client_id, TOKEN_TTL_S, prefix="00DRO0000000001!AQ")
        instance = f"http://{req.headers.get('host', '127.0.0.1')}/{self.name}"
        return json_response(
            {
                "access_token": access,
                "signature": base64.b64encode(uuid.uuid4().bytes).decode(),
                "scope": "api refresh_token",
                "instance_url": instance,
                "id": f"{instance}/id/00DRO0000000001AAA/005RO0000000001AAA",
                "token_type": "Bearer",
                "issued_at": str(int(now_ms())),
            }
        )

    def _bad_version(self, version: str) -> Response | None:
        if _VERSION.match(version):
            return None
        return _errors(404, "NOT_FOUND", "The requested resource does not exist")

    def _open(self, soql_text: str, version: str) -> Cursor:
        soql = parse_soql(soql_text)
        selection = self.stores[soql.sobject.name].select(soql.groups)
        return Cursor(soql, selection, version)

    def _remember(self, table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        while len(table) > MAX_CURSORS:
            table.popitem(last=False)

    async def _query(self, version: str, request: Request) -> Response:
        if (bad := self._bad_version(version)) is not None:
            return bad
        req = parsed(request)
        try:
            cursor = self._open(str(_one(req.query.get("q", ""))), version)
        except SoqlError as exc:
            return _errors(400, exc.code, exc.message)
        if cursor.soql.is_count:
            return json_response(
                {"totalSize": cursor.total, "done": True, "records": []}, headers=self._usage_headers()
            )
        key = f"01gRO{next(self._ids):010d}AAA"
        self._remember(self._cursors, key, cursor)
        return self._query_page(key, cursor, 0, _batch_size(req), req.subpath)

    async def _query_more(self, version: str, cursor: str, request: Request) -> Response:
        if (bad := self._bad_version(version)) is not None:
            return bad
        key, _, offset = cursor.rpartition("-")
        found = self._cursors.get(key)
        if found is None or not offset.isdigit():
            return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        req = parsed(request)
        return self._query_page(key, found, int(offset), _batch_size(req), req.subpath.rsplit("/", 1)[0])

    def _query_page(self, key: str, cursor: Cursor, offset: int, size: int, base_path: str) -> Response:
        spec, fields = cursor.soql.sobject, cursor.soql.fields
        attrs_url = f"/services/data/{cursor.version}/sobjects/{spec.name}/"
        records = []
        for i in cursor.indices(offset, size):
            record = dict(zip(fields, self.row(spec, i, fields, _json_datetime), strict=True))
            rid = _sf_id(spec.key_prefix, i)
            records.append({"attributes": {"type": spec.name, "url": attrs_url + rid}, **record})
        end = offset + len(records)
        body: dict[str, Any] = {"totalSize": cursor.total, "done": end >= cursor.total}
        if end < cursor.total:
            body["nextRecordsUrl"] = f"{base_path}/{key}-{end}"
        body["records"] = records
        return json_response(body, headers=self._usage_headers())

    # --- Bulk API 2.0 --------------------------------------------------------------------------
    async def _create_job(self, version: str, request: Request) -> Response:
        if (bad := self._bad_version(version)) is not None:
            return bad
        body = parsed(request).body
        if not isinstance(body, dict):
            return _errors(400, "JSON_PARSER_ERROR", "request body must be a JSON object")
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            return _errors(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        if body.get("contentType", "CSV") != "CSV":
            return _errors(400, "INVALIDJOB", "InvalidJob : contentType must be CSV")
        delimiter = _DELIMITERS.get(body.get("columnDelimiter", "COMMA"))
        line_ending = _LINE_ENDINGS.get(body.get("lineEnding", "LF"))
        if delimiter is None or line_ending is None:
            return _errors(400, "INVALIDJOB", "InvalidJob : invalid columnDelimiter or lineEnding")
        try:
            cursor = self._open(str(body.get("query", "")), version)
        except SoqlError as exc:
            return _errors(400, exc.code, exc.message)
        if cursor.soql.is_count:
            return _errors(400, "API_ERROR", "Aggregate queries are not supported by the Bulk API")
        extra = self.faults.extra
        fails = int(extra.get("fail_bulk_jobs") or 0) > 0
        if fails:
            extra["fail_bulk_jobs"] = int(extra["fail_bulk_jobs"]) - 1
        polls = extra.get("bulk_polls_in_progress")
        job = BulkJob(
            id=f"{JOB_ID_PREFIX}{next(self._ids):010d}AAA",
            operation=operation,
            cursor=cursor,
            delimiter=delimiter,
            line_ending=line_ending,
            created=_json_datetime(int(now_ms())),
            fails=fails,
            polls_in_progress=1 if polls is None else int(polls),
        )
        self._remember(self._jobs, job.id, job)
        return json_response(self._job_body(job, version))

    def _job_body(self, job: BulkJob, version: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.cursor.soql.sobject.name,
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
            body.update(
                numberRecordsProcessed=job.cursor.total if done else 0, retries=0, totalProcessingTime=50 * job.polls
            )
        if job.state == "Failed":
            body["errorMessage"] = "Failed to process query: FUNCTIONALITY_TEMPORARILY_UNAVAILABLE"
        return body

    def _job_or_404(self, job_id: str) -> BulkJob | Response:
        job = self._jobs.get(job_id)
        if job is None:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
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
            return _errors(400, "INVALIDJOBSTATE", "Only state Aborted can be set on a query job")
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
            return _errors(
                412,
                "JOB_NOT_COMPLETE",
                f"Job {job_id} is in state {job.state}; results are available once it is JobComplete",
            )
        q = parsed(request).query
        try:
            offset = _decode_locator(str(_one(q["locator"]))) if q.get("locator") else 0
            max_records = int(_one(q.get("maxRecords", DEFAULT_MAX_RECORDS)))
            if max_records <= 0:
                raise BadRequest("maxRecords must be positive")
        except (BadRequest, ValueError) as exc:
            return _errors(400, "INVALID_QUERY_LOCATOR" if "locator" in str(exc) else "INVALIDURL", str(exc))
        cursor, fields, sep, eol = job.cursor, job.cursor.soql.fields, job.delimiter, job.line_ending
        spec = cursor.soql.sobject
        indices = cursor.indices(offset, max_records)
        lines = [sep.join(f'"{f}"' for f in fields)]
        for i in indices:
            lines.append(sep.join(_csv_cell(v) for v in self.row(spec, i, fields, _csv_datetime)))
        end = offset + len(indices)
        headers = {
            "Sforce-NumberOfRecords": str(len(indices)),
            "Sforce-Locator": _encode_locator(end) if end < cursor.total else "null",
            **self._usage_headers(),
        }
        return Response(eol.join(lines) + eol, 200, headers, media_type="text/csv")


def _client_auth(req: SandboxRequest) -> tuple[str | None, str | None]:
    """Client credentials from the form, or from HTTP Basic auth (both are accepted by Salesforce)."""
    form = req.body if isinstance(req.body, dict) else {}
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    scheme, _, encoded = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
    return client_id, client_secret


def _batch_size(req: SandboxRequest) -> int:
    options = req.headers.get("sforce-query-options", "")
    match = re.search(r"batchSize=(\d+)", options)
    size = int(match.group(1)) if match else QUERY_PAGE_DEFAULT
    return min(max(size, QUERY_PAGE_MIN), QUERY_PAGE_DEFAULT)


def _json_datetime(ms: int) -> str:
    return gen.iso_ms(ms)[:-1] + "+0000"  # REST JSON: 2025-01-01T00:00:00.000+0000


def _csv_datetime(ms: int) -> str:
    return gen.iso_ms(ms)  # Bulk CSV: 2025-01-01T00:00:00.000Z


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""  # Bulk CSV sends nulls as empty values
    text = str(value)
    return '"' + (text.replace('"', '""') if '"' in text else text) + '"'


__all__ = ["SOBJECTS", "Salesforce", "parse_soql"]
