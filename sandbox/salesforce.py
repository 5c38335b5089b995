"""Salesforce simulator (wire facts: docs/vendors.md, Salesforce): OAuth refresh-token flow, SOQL over REST
(query / queryAll, ``nextRecordsUrl`` paging, ``COUNT()``), the Bulk API 2.0 query-job life cycle with
CSV results read by ``Sforce-Locator`` (sandbox.salesforce_bulk), ``sobjects/{type}/deleted`` and
``sobjects/{type}/describe``, Salesforce's JSON error arrays and its 403 ``REQUEST_LIMIT_EXCEEDED`` throttling.
The SOQL served is documented in sandbox.soql; datetime literals are unquoted, a quoted one is
``MALFORMED_QUERY``. Fields beyond the generated ones: ``IsDeleted`` (all objects), ``MasterRecordId``
(Account, Contact only; selecting it elsewhere is ``INVALID_FIELD``) and ``IsArchived`` (Task only).

Lifecycle (``POST /_sandbox/salesforce/mutate`` actions), as documented for the REST API
(https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_queryall.htm,
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getdeleted.htm):

- ``delete``: ``query`` stops returning the row; ``queryAll`` (REST and Bulk ``"operation": "queryAll"``)
  returns it with ``IsDeleted = true`` and ``SystemModstamp`` bumped to the deletion time; the ``deleted``
  endpoint lists it with its ``deletedDate``.
- ``purge`` (hard delete, or emptied recycle bin): gone from ``queryAll``, still listed by ``deleted``.
- ``restore`` (undelete, from the recycle bin only): ``IsDeleted = false``, ``SystemModstamp`` bumps.
- ``merge`` (Account and Contact; a master and at most two others, as Salesforce merges up to three
  records): the losers get ``IsDeleted = true`` and ``MasterRecordId`` = the survivor in ``queryAll``; every
  record involved gets a new ``SystemModstamp``.
- ``archive`` (Task only; Salesforce archives old activities): ``IsArchived = true``, ``query`` stops
  returning it, ``queryAll`` returns it with ``IsDeleted = false``; ``SystemModstamp`` is unchanged.

``GET .../sobjects/{type}/deleted/?start=&end=`` lists records deleted in [start, end] with
``earliestDateAvailable`` (15 days before now: the recycle bin's retention) and ``latestDateCovered``
(min(end, now)); a ``start`` before ``earliestDateAvailable`` is 400 ``INVALID_REPLICATION_DATE``.

Faults (``POST /_sandbox/salesforce/faults``), besides the Bulk ones in sandbox.salesforce_bulk:
- ``commit_delay_ms`` (D): Salesforce stamps ``SystemModstamp`` when a transaction starts, but readers see
  the row only once it commits, so a row can surface with a ``SystemModstamp`` older than rows already
  read (Salesforce's replication guide says as much: ``latestDateCovered`` exists "to capture the changes
  that started after this date but did not complete before the endDate",
  https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_getupdated_getupdatedresult.htm).
  A change at vendor time t is stamped t and becomes visible to ``query``, ``queryAll``, ``COUNT()``, Bulk
  jobs and ``deleted`` at t + D; before that they see the previous version (a created row is absent). Bulk
  jobs snapshot visibility when created. Turning the fault off publishes everything still pending.
- ``locator_ttl_s`` (default 900) and ``max_open_locators`` (default 10): a query locator
  (``nextRecordsUrl``) is a server-side cursor that expires after 15 minutes of inactivity, and a user holds
  at most 10; opening an 11th releases the oldest, and a released or expired locator answers 400
  ``INVALID_QUERY_LOCATOR``
  (https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_query_querylocator.htm).
  Salesforce relaxed these limits from API 56.0 (results kept 2 days, no per-user cap); the defaults model
  the stricter documented behaviour. Locators are counted per credential; a fully read or expired query
  holds none. Paging itself is deliberately unkind: each page is cut by offset from the current ordering,
  so rows changed between pages can be skipped or repeated.
- ``recycle_bin_emptied_at`` (ISO-8601 or "now"): moves ``earliestDateAvailable`` forward to that instant;
  records deleted before it are gone from ``queryAll`` (hard-deleted).
- ``fail_bulk_jobs``, ``bulk_polls_in_progress``, ``bulk_short_results``: see sandbox.salesforce_bulk.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import gen
from .core import (
    Identity,
    OAuthApps,
    OAuthCredential,
    SandboxRequest,
    Vendor,
    json_response,
    parsed,
    truth_rows,
)
from .core import InvalidRequest as BadRequest
from .mutation import Mutation
from .salesforce_bulk import BulkJob, BulkQueries, json_datetime, one
from .salesforce_bulk import errors as _errors
from .soql import SObject, Soql, SoqlError, parse
from .store import LIVE, EntityStore, Group, Lagged, Override, Selection

QUERY_PAGE_DEFAULT = 2000
QUERY_PAGE_MIN = 200
MAX_CURSORS = 1000  # open query cursors and jobs kept; older ones are forgotten
MAX_SIZE = 10_000_000
TOKEN_TTL_S = 7200  # Salesforce sends no expires_in: the org's session timeout applies (2 h default)
RECYCLE_BIN_MS = 15 * gen.DAY_MS
LOCATOR_TTL_S = 900
MAX_OPEN_LOCATORS = 10
MAX_MERGE_LOSERS = 2
DELETED, MERGED, ARCHIVED, PURGED = "deleted", "merged", "archived", "purged"
_NS = uuid.UUID("3b0c7d2e-58a4-4f0e-9d61-2a7c5e9b1f03")
_VERSION = re.compile(r"^v\d{2,3}\.0$")
_NUMERIC_FAULTS = (
    "commit_delay_ms",
    "locator_ttl_s",
    "max_open_locators",
    "bulk_short_results",
    "fail_bulk_jobs",
    "bulk_polls_in_progress",
)

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


_BASE_ACTIONS = frozenset({"edit", "delete", "restore", "purge"})
SOBJECTS = {
    s.name: s
    for s in (
        SObject(
            "Account",
            "001",
            _account,
            (("Name", "string"), ("Website", "url"), ("Industry", "picklist"), ("Phone", "phone")),
            mergeable=True,
        ),
        SObject(
            "Contact",
            "003",
            _contact,
            (
                ("FirstName", "string"),
                ("LastName", "string"),
                ("Email", "email"),
                ("Phone", "phone"),
                ("Title", "string"),
                ("AccountId", "reference"),
            ),
            mergeable=True,
        ),
        SObject(
            "Opportunity",
            "006",
            _opportunity,
            (
                ("Name", "string"),
                ("Amount", "currency"),
                ("StageName", "picklist"),
                ("Type", "picklist"),
                ("CloseDate", "date"),
                ("OwnerId", "reference"),
                ("AccountId", "reference"),
            ),
        ),
        SObject(
            "Task",
            "00T",
            _task,
            (
                ("Subject", "combobox"),
                ("Status", "picklist"),
                ("Priority", "picklist"),
                ("ActivityDate", "date"),
                ("TaskSubtype", "picklist"),
                ("OwnerId", "reference"),
            ),
            archivable=True,
        ),
    )
}


def _actions(spec: SObject) -> frozenset[str]:
    return _BASE_ACTIONS | ({"merge"} if spec.mergeable else set()) | ({"archive"} if spec.archivable else set())


def parse_soql(text: str) -> Soql:
    return parse(text, SOBJECTS)


@dataclass
class Locator:
    """An open REST query cursor (``nextRecordsUrl``): what it reads and who holds it."""

    soql: Soql
    version: str
    all_rows: bool  # queryAll
    total: int  # totalSize as of the first page
    credential: str | None
    last_used: float  # machine clock, s


def _credential(tenant: str) -> OAuthCredential:
    def u(kind: str) -> str:
        return uuid.uuid5(_NS, f"salesforce:{tenant}:{kind}").hex

    return OAuthCredential("3MVG9" + u("client"), u("secret").upper(), "5Aep861" + u("refresh"))


class Salesforce(BulkQueries, Vendor):
    name = "salesforce"
    default_sizes = {"Opportunity": 120, "Contact": 150, "Account": 60, "Task": 80}
    # The org's daily API allocation (100,000 per rolling 24 h at the minimum paid tier).
    default_limit = (100_000, 86_400.0)
    extra_fault_keys = frozenset(
        {
            "fail_bulk_jobs",
            "bulk_polls_in_progress",
            "bulk_short_results",
            "commit_delay_ms",
            "locator_ttl_s",
            "max_open_locators",
            "recycle_bin_emptied_at",
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self.apps = OAuthApps(_credential("default"))
        self.stores: dict[str, EntityStore] = {}
        self.committed: dict[str, Lagged] = {}
        self._hash_prefix: dict[str, int] = {}
        self._locators: OrderedDict[str, Locator] = OrderedDict()
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
        self.committed = {name: Lagged(store) for name, store in self.stores.items()}
        self._locators.clear()
        self._jobs.clear()
        self._ids = itertools.count(1)
        self._api_usage = 0

    def _base_ms_fn(self, name: str) -> Callable[[int], int]:
        prefix, mix1, origin = self._hash_prefix[name], gen.mix1, gen.ORIGIN_MS
        # Distinct and strictly increasing: one record per second plus a sub-second jitter.
        return lambda i: origin + i * 1000 + mix1(prefix, i) % 1000

    def _delay_ms(self) -> int:
        return int(float(self.faults.extra.get("commit_delay_ms") or 0))

    def readable(self, spec: SObject) -> EntityStore:
        """The committed rows now: what queries, Bulk jobs and the deleted endpoint see."""
        return self.committed[spec.name].current(self.clock_ms(), self._delay_ms() > 0)

    def _emptied_ms(self) -> int | None:
        raw = self.faults.extra.get("recycle_bin_emptied_at")
        return None if raw is None else int(gen.parse_time_ms(raw) or 0)

    def _hard_deleted(self, o: Override | None, emptied: int | None = None) -> bool:
        """Purged, or deleted before the recycle bin was emptied (`emptied`: the fault's value, if known)."""
        if o is None:
            return False
        if o.state == PURGED:
            return True
        emptied = self._emptied_ms() if emptied is None else emptied
        return o.state in (DELETED, MERGED) and emptied is not None and (o.state_ms or 0) < emptied

    def _keep(self, store: EntityStore, all_rows: bool) -> Callable[[int], bool]:
        """Which overlay rows a query (live only) or queryAll (deleted and archived too) returns."""
        if not all_rows:
            return store.is_live
        emptied = self._emptied_ms()
        return lambda i: not self._hard_deleted(store.overrides[i], emptied)

    def _select(self, soql: Soql, all_rows: bool, store: EntityStore) -> Selection:
        return store.select(soql.groups, keep=self._keep(store, all_rows))

    def _snapshot(self, soql: Soql, all_rows: bool) -> tuple[EntityStore, Selection]:
        store = self.readable(soql.sobject).copy()
        return store, self._select(soql, all_rows, store)

    def _parse(self, text: str) -> Soql:
        return parse_soql(text)

    def _next_id(self) -> int:
        return next(self._ids)

    def normalize_faults(self, patch: dict[str, Any]) -> dict[str, Any]:
        out = dict(patch)
        for key in _NUMERIC_FAULTS:
            value = out.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise BadRequest(f"{key} must be a non-negative number, got {value!r}")
        if out.get("max_open_locators") is not None and out["max_open_locators"] < 1:
            raise BadRequest("max_open_locators must be at least 1")
        emptied = out.get("recycle_bin_emptied_at")
        if emptied is not None:
            moment = self.clock_ms() if emptied == "now" else gen.parse_time_ms(emptied)
            if moment is None or gen.parse_number(emptied) is not None:
                raise BadRequest(f"recycle_bin_emptied_at must be ISO-8601 or 'now', got {emptied!r}")
            out["recycle_bin_emptied_at"] = gen.iso_ms(int(moment))
        return out

    def apply(self, m: Mutation) -> dict[str, Any]:
        spec = SOBJECTS.get(m.entity)
        if spec is None:
            raise BadRequest(f"salesforce: unknown entity {m.entity!r} (one of {sorted(SOBJECTS)})")
        m.check("salesforce", spec.name, _actions(spec))
        store, now = self.stores[spec.name], self.clock_ms()
        self.committed[spec.name].prepare(self._delay_ms() > 0)
        if m.action == "merge":
            return self._merge(spec, m, now)
        if m.ids is not None:
            indices = list(dict.fromkeys(self._existing(spec, x, m.action) for x in m.ids))
        else:  # the `count` least recently modified live rows
            indices = store.select([Group()], keep=store.is_live).page("modified", False, 0, m.count)
        created: list[int] = []
        stamp: int | None = None
        if m.action == "edit":
            if not indices and not m.create:
                return {"ids": [], "created_ids": [], "modified_at": None}
            stamp, created = store.bump(indices, m.create, now)
        elif m.action in ("delete", "restore"):
            stamp = store.next_ms(now)
            for i in indices:
                store.set_time(i, stamp)
                store.set_state(i, DELETED if m.action == "delete" else LIVE, stamp)
        else:  # archive keeps SystemModstamp; purge is a hard delete (a deleted row keeps its deletedDate)
            for i in indices:
                store.set_state(i, ARCHIVED if m.action == "archive" else PURGED, now, keep_since=True)
        changed = [*indices, *created]
        at = stamp if stamp is not None else now
        self.committed[spec.name].publish(changed, at + self._delay_ms(), self._delay_ms() > 0)
        return {
            "ids": [spec.record_id(i) for i in changed],
            "created_ids": [spec.record_id(i) for i in created],
            "modified_at": None if stamp is None else gen.iso_ms(stamp),
            "changed_at": gen.iso_ms(at),
            "visible_at": gen.iso_ms(at + self._delay_ms()),
        }

    def _merge(self, spec: SObject, m: Mutation, now: int) -> dict[str, Any]:
        store = self.stores[spec.name]
        survivor = self._existing(spec, str(m.into), "merge")
        losers = list(dict.fromkeys(self._existing(spec, x, "merge") for x in m.ids or []))
        if survivor in losers:
            raise BadRequest("salesforce: a record cannot be merged into itself")
        if len(losers) > MAX_MERGE_LOSERS:
            raise BadRequest(f"salesforce: merge takes a master record and at most {MAX_MERGE_LOSERS} others")
        stamp = store.next_ms(now)
        for i in losers:
            store.set_time(i, stamp)
            store.set_state(i, MERGED, stamp, merged_into=survivor)
        store.set_time(survivor, stamp)
        self.committed[spec.name].publish([*losers, survivor], stamp + self._delay_ms(), self._delay_ms() > 0)
        return {
            "ids": [spec.record_id(i) for i in [*losers, survivor]],
            "created_ids": [],
            "modified_at": gen.iso_ms(stamp),
            "changed_at": gen.iso_ms(stamp),
            "visible_at": gen.iso_ms(stamp + self._delay_ms()),
            "merged_into": spec.record_id(survivor),
        }

    def _existing(self, spec: SObject, record_id: str, action: str) -> int:
        i = self._index(spec, record_id)
        if i is None:
            raise BadRequest(f"salesforce: unknown {spec.name} id {record_id!r}")
        o = self.stores[spec.name].overrides.get(i)
        state = "hard-deleted" if self._hard_deleted(o) else (o.state if o else LIVE)
        allowed = {"restore": (DELETED, MERGED), "purge": (LIVE, DELETED, MERGED, ARCHIVED)}.get(action, (LIVE,))
        if state not in allowed:
            raise BadRequest(f"salesforce: {spec.name} {record_id} is {state}; {action} needs {' or '.join(allowed)}")
        return i

    def truth(self, entity: str) -> list[dict[str, Any]]:
        spec = SOBJECTS.get(entity)
        if spec is None:
            raise BadRequest(f"salesforce: unknown entity {entity!r} (one of {sorted(SOBJECTS)})")

        def state_of(o: Override | None) -> str:
            return PURGED if self._hard_deleted(o) else (o.state if o else LIVE)

        return truth_rows(self.stores[spec.name], spec.record_id, gen.iso_ms, state_of)

    def _index(self, spec: SObject, record_id: str) -> int | None:
        digits = record_id[5:15]
        if len(record_id) != 18 or not record_id.startswith(spec.key_prefix) or not digits.isdigit():
            return None
        i = int(digits)
        return i if i < self.stores[spec.name].n_total else None

    def values(self, spec: SObject, i: int, store: EntityStore) -> tuple[dict[str, Any], int, int]:
        """A record's field values (datetimes as epoch ms under their names), modified and created ms."""
        h = gen.mix1(self._hash_prefix[spec.name], i)
        base_ms = gen.ORIGIN_MS + i * 1000
        o = store.overrides.get(i)
        created = base_ms - (h >> 8) % (400 * gen.DAY_MS)
        if o is None:
            modified, version = base_ms + h % 1000, 0
        else:
            modified, version = o.modified_ms, o.version
            created = o.created_ms if o.created_ms is not None else created
        values = spec.fields(h, i, version, created)
        state = o.state if o is not None else LIVE
        values["IsDeleted"] = state in (DELETED, MERGED)
        if spec.mergeable:
            values["MasterRecordId"] = spec.record_id(o.merged_into) if o and o.merged_into is not None else None
        if spec.archivable:
            values["IsArchived"] = state == ARCHIVED
        return values, modified, created

    def row(self, spec: SObject, i: int, fields: list[str], iso: Callable[[int], str], store: EntityStore) -> list[Any]:
        """The selected fields of record i, in SELECT order; datetimes rendered by ``iso``."""
        values, modified, created = self.values(spec, i, store)
        rid = spec.record_id(i)
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
        data = "/services/data/{version}"
        r.add_api_route("/services/oauth2/token", self._token, methods=["POST"])
        r.add_api_route(data + "/query", self._query, methods=["GET"])
        r.add_api_route(data + "/queryAll", self._query, methods=["GET"])
        r.add_api_route(data + "/query/{cursor}", self._query_more, methods=["GET"])
        r.add_api_route(data + "/queryAll/{cursor}", self._query_more, methods=["GET"])
        for slash in ("", "/"):
            r.add_api_route(data + "/sobjects/{sobject}/deleted" + slash, self._deleted, methods=["GET"])
            r.add_api_route(data + "/sobjects/{sobject}/describe" + slash, self._describe, methods=["GET"])
        self.bulk_routes(r)
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
                # The identity URL names the org (00D…) and the user (005…) the token belongs to.
                "id": f"{instance}/id/00DRO{gen.account_number(cred.client_id, 10):010d}AAA/005RO0000000001AAA",
                "token_type": "Bearer",
                "issued_at": str(self.clock_ms()),
            }
        )

    def _bad_version(self, version: str) -> Response | None:
        if _VERSION.match(version):
            return None
        return _errors(404, "NOT_FOUND", "The requested resource does not exist")

    def _remember(self, table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        while len(table) > MAX_CURSORS:
            table.popitem(last=False)

    # --- REST query, query locators --------------------------------------------------------------
    async def _query(self, version: str, request: Request) -> Response:
        if (bad := self._bad_version(version)) is not None:
            return bad
        req = parsed(request)
        try:
            soql = parse_soql(str(one(req.query.get("q", ""))))
        except SoqlError as exc:
            return _errors(400, exc.code, exc.message)
        all_rows = req.subpath.endswith("/queryAll")
        selection = self._select(soql, all_rows, self.readable(soql.sobject))
        total = selection.total if soql.limit is None else min(selection.total, soql.limit)
        if soql.is_count:
            return json_response({"totalSize": total, "done": True, "records": []}, headers=self._usage_headers())
        key = f"01gRO{next(self._ids):010d}AAA"
        credential = request.state.sandbox_identity.credential
        locator = Locator(soql, version, all_rows, total, credential, time.time())
        return self._query_page(key, locator, selection, 0, _batch_size(req), req.subpath)

    async def _query_more(self, version: str, cursor: str, request: Request) -> Response:
        if (bad := self._bad_version(version)) is not None:
            return bad
        key, _, offset = cursor.rpartition("-")
        locator = self._locators.get(key)
        now = time.time()
        if locator is not None and now - locator.last_used > self._locator_ttl_s():
            del self._locators[key]  # expired: 15 minutes (locator_ttl_s) without use
            locator = None
        credential = request.state.sandbox_identity.credential
        if locator is None or not offset.isdigit() or locator.credential != credential:
            return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        locator.last_used = now
        req = parsed(request)
        selection = self._select(locator.soql, locator.all_rows, self.readable(locator.soql.sobject))
        return self._query_page(key, locator, selection, int(offset), _batch_size(req), req.subpath.rsplit("/", 1)[0])

    def _query_page(
        self, key: str, locator: Locator, selection: Selection, offset: int, size: int, base_path: str
    ) -> Response:
        """One page cut by offset from the current ordering (live paging: rows changed between pages move)."""
        soql = locator.soql
        spec, fields = soql.sobject, soql.fields
        store = self.readable(spec)
        attrs_url = f"/services/data/{locator.version}/sobjects/{spec.name}/"
        wanted = max(min(size, locator.total - offset), 0)
        records = []
        for i in selection.page(soql.order_by, soql.descending, offset, wanted):
            record = dict(zip(fields, self.row(spec, i, fields, json_datetime, store), strict=True))
            records.append({"attributes": {"type": spec.name, "url": attrs_url + spec.record_id(i)}, **record})
        end = offset + len(records)
        done = end >= locator.total or len(records) < wanted
        body: dict[str, Any] = {"totalSize": locator.total, "done": done}
        if done:
            self._locators.pop(key, None)  # fully read: the cursor is released
        else:
            body["nextRecordsUrl"] = f"{base_path}/{key}-{end}"
            self._hold(key, locator)
        body["records"] = records
        return json_response(body, headers=self._usage_headers())

    def _locator_ttl_s(self) -> float:
        ttl = self.faults.extra.get("locator_ttl_s")
        return LOCATOR_TTL_S if ttl is None else float(ttl)

    def _hold(self, key: str, locator: Locator) -> None:
        """Keep a locator open; a credential's oldest open one is released beyond max_open_locators."""
        if key in self._locators:
            return
        now, ttl = time.time(), self._locator_ttl_s()
        for stale in [k for k, held in self._locators.items() if now - held.last_used > ttl]:
            del self._locators[stale]
        limit = int(self.faults.extra.get("max_open_locators") or MAX_OPEN_LOCATORS)
        mine = [k for k, held in self._locators.items() if held.credential == locator.credential]
        for released in mine[: max(len(mine) - limit + 1, 0)]:
            del self._locators[released]
        self._remember(self._locators, key, locator)

    # --- deleted and describe ------------------------------------------------------------------
    async def _deleted(self, version: str, sobject: str, request: Request) -> Response:
        if (bad := self._bad_version(version)) is not None:
            return bad
        spec = SOBJECTS.get(sobject)
        if spec is None:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        q = parsed(request).query
        now = self.clock_ms()
        earliest = max(now - RECYCLE_BIN_MS, self._emptied_ms() or 0)
        bounds = []
        for name in ("start", "end"):
            raw = one(q.get(name))
            moment = None if raw is None else gen.parse_time_ms(raw)
            if moment is None or gen.parse_number(raw) is not None:
                return _errors(400, "INVALID_REPLICATION_DATE", f"{name} must be a dateTime, got {raw!r}")
            bounds.append(int(moment))
        start, end = bounds
        if start < earliest:
            return _errors(
                400,
                "INVALID_REPLICATION_DATE",
                f"startDate must be on or after the earliest available date {json_datetime(earliest)}",
            )
        if end < start:
            return _errors(400, "INVALID_REPLICATION_DATE", "endDate must be after startDate")
        latest = min(end, now)
        store = self.readable(spec)
        found = sorted(
            (o.state_ms, i)
            for i in store.nonlive
            if (o := store.overrides[i]).state in (DELETED, MERGED, PURGED)
            and o.state_ms is not None
            and start <= o.state_ms <= latest
        )
        body = {
            "deletedRecords": [{"id": spec.record_id(i), "deletedDate": json_datetime(ms)} for ms, i in found],
            "earliestDateAvailable": json_datetime(earliest),
            "latestDateCovered": json_datetime(latest),
        }
        return json_response(body, headers=self._usage_headers())

    async def _describe(self, version: str, sobject: str) -> Response:
        if (bad := self._bad_version(version)) is not None:
            return bad
        spec = SOBJECTS.get(sobject)
        if spec is None:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        body = {
            "name": spec.name,
            "label": spec.name,
            "keyPrefix": spec.key_prefix,
            "queryable": True,
            "fields": [{"name": n, "type": t, "label": n} for n, t in spec.field_types.items()],
        }
        return json_response(body, headers=self._usage_headers())


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


__all__ = ["SOBJECTS", "Salesforce", "parse_soql"]
