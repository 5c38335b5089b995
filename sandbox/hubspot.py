"""HubSpot CRM v3 simulator (wire facts: docs/vendors.md, HubSpot): OAuth v1 refresh, object list and search
for deals/contacts/companies/tasks, the 10,000-result search cap, HubSpot's error bodies and the
100-requests-per-rolling-10-s limit.

Lifecycle (``POST /_sandbox/hubspot/mutate`` actions), as HubSpot's CRM objects API behaves
(https://developers.hubspot.com/docs/api/crm/understanding-the-crm):

- ``delete`` / ``archive`` (one thing in HubSpot: deleting archives): the record leaves the list and search,
  ``GET .../{id}`` answers 404, and ``GET .../{type}?archived=true`` lists it (same ``after`` paging) with
  ``"archived": true`` and ``archivedAt``. Archiving leaves ``hs_lastmodifieddate``/``updatedAt`` alone.
- ``restore``: back in list and search with its modified time bumped to the restore time.
- ``merge`` (``ids`` lose, ``into`` survives; POST /crm/v3/objects/{type}/merge): a loser vanishes from list,
  search and ``archived=true``; ``GET`` of a loser id answers the survivor's record; the survivor's
  ``hs_merged_object_ids`` (returned when asked for in ``properties``) gains the loser ids, ``;``-joined,
  and its modified time bumps.
- ``purge`` (GDPR-style permanent delete): gone everywhere.

Fault ``search_index_lag_ms`` (L): HubSpot documents search as eventually consistent ("it may take a few
moments for created or updated records to appear in search results",
https://developers.hubspot.com/docs/api/crm/search). While L > 0 a change made at vendor time t reaches
the search endpoint only at t + L; until then search serves the record's previous version (old properties,
old ``hs_lastmodifieddate``, so it also filters and sorts by the old time), a created record is missing and
an archived one still shows. List, GET and ``archived=true`` see every change at once.

Fault ``poison_records`` (``{"<record id>": {"<property>": "<value>"}}``): those records are served with
those property values, as HubSpot stores and returns them: longer text than a warehouse column holds
(HubSpot's text properties take 65,536 characters), NUL characters (JSON ``\u0000``), amounts of any size.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import gen
from .core import (
    Identity,
    OAuthApps,
    OAuthCredential,
    RenderCache,
    SandboxRequest,
    Vendor,
    json_response,
    parsed,
    rate_remaining,
    truth_rows,
)
from .core import InvalidRequest as BadRequest
from .mutation import Mutation
from .store import ALL, LIVE, EntityStore, Group, Lagged, numeric_ranges, ranges_and

SEARCH_CAP = 10_000
ACTIONS = frozenset({"edit", "delete", "archive", "restore", "merge", "purge"})
ARCHIVED, MERGED, PURGED = "archived", "merged", "purged"
MERGED_IDS = "hs_merged_object_ids"
_NS = uuid.UUID("6d1f4c1e-2f7a-4c55-9a0b-5a6e1b7c0d42")
_OPERATORS = {
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
}
_DEAL_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)
_INDUSTRIES = (
    "COMPUTER_SOFTWARE",
    "FINANCIAL_SERVICES",
    "HOSPITAL_HEALTH_CARE",
    "RETAIL",
    "LOGISTICS_AND_SUPPLY_CHAIN",
    "MARKETING_AND_ADVERTISING",
    "TELECOMMUNICATIONS",
    "HIGHER_EDUCATION",
)
_TASK_STATUS = ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED")
_TASK_PRIORITY = ("NONE", "LOW", "MEDIUM", "HIGH")
_TASK_VERBS = ("Call", "Email", "Follow up with", "Send proposal to", "Book demo with", "Check in with")


def _rev(version: int) -> str:
    return f" (rev {version})" if version else ""


def _phone(h: int) -> str:
    return f"+1 555 {(h >> 12) % 900 + 100:03d} {(h >> 24) % 10000:04d}"


def _deal(h: int, i: int, v: int, created: int) -> dict[str, str]:
    return {
        "dealname": f"{gen.pick(h, gen.COMPANY_WORDS)} {gen.pick(h, gen.PRODUCTS, 8)} {i}{_rev(v)}",
        "amount": str((h >> 16) % 99_500 + 500 + 250 * v),
        "dealstage": gen.pick(h, _DEAL_STAGES, 24),
        "pipeline": "default",
        "closedate": gen.iso_ms(created + ((h >> 32) % 120 + 1) * gen.DAY_MS),
    }


def _contact(h: int, i: int, v: int, created: int) -> dict[str, str]:
    first, last = gen.pick(h, gen.FIRST_NAMES), gen.pick(h, gen.LAST_NAMES, 8)
    company = gen.pick(h, gen.COMPANY_WORDS, 16)
    return {
        "email": f"{first}.{last}{i}@{company}.example.com".lower(),
        "firstname": first,
        "lastname": last + _rev(v),
        "phone": _phone(h),
        "company": f"{company} {gen.pick(h, gen.COMPANY_SUFFIXES, 40)}",
    }


def _company(h: int, i: int, v: int, created: int) -> dict[str, str]:
    word, suffix = gen.pick(h, gen.COMPANY_WORDS), gen.pick(h, gen.COMPANY_SUFFIXES, 8)
    return {
        "name": f"{word} {suffix} {i}{_rev(v)}",
        "domain": f"{word}-{suffix}-{i}.example.com".lower(),
        "industry": gen.pick(h, _INDUSTRIES, 16),
        "phone": _phone(h),
    }


def _task(h: int, i: int, v: int, created: int) -> dict[str, str]:
    who = f"{gen.pick(h, gen.FIRST_NAMES, 8)} {gen.pick(h, gen.LAST_NAMES, 16)}"
    return {
        "hs_task_subject": f"{gen.pick(h, _TASK_VERBS)} {who}{_rev(v)}",
        "hs_task_status": gen.pick(h, _TASK_STATUS, 24),
        "hs_task_priority": gen.pick(h, _TASK_PRIORITY, 32),
        "hs_timestamp": gen.iso_ms(created + ((h >> 40) % 30 + 1) * gen.DAY_MS),
    }


@dataclass(frozen=True)
class ObjectSpec:
    name: str
    type_id: str
    modified_prop: str
    id_base: int  # record i has id id_base + i; ranges are disjoint so ids never collide across objects
    fields: Callable[[int, int, int, int], dict[str, str]]  # (hash, index, version, created_ms) -> props

    def prop_names(self) -> set[str]:
        return set(self.fields(0, 0, 0, 0)) | {"hs_object_id", "createdate", self.modified_prop, MERGED_IDS}


OBJECTS = {
    s.name: s
    for s in (
        ObjectSpec("contacts", "0-1", "lastmodifieddate", 10_000_000, _contact),
        ObjectSpec("companies", "0-2", "hs_lastmodifieddate", 20_000_000, _company),
        ObjectSpec("deals", "0-3", "hs_lastmodifieddate", 30_000_000, _deal),
        ObjectSpec("tasks", "0-27", "hs_lastmodifieddate", 40_000_000, _task),
    )
}
_BY_TYPE = {**OBJECTS, **{s.type_id: s for s in OBJECTS.values()}}
JSON_CACHE_SIZE = 250_000  # rendered records kept (~0.5 KB each) for repeated reads of the same pages
MAX_SIZE = 10_000_000  # the id ranges above leave room for this many records per object


def _error(status: int, message: str, category: str, **extra: Any) -> Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    return json_response({**body, **extra}, status)


def _oauth_error(status: str, message: str, sub_category: str, **extra: str) -> Response:
    """OAuth endpoint errors use a status code word instead of "error" (HubSpot v1 token endpoint)."""
    return json_response(
        {
            "status": status,
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": "VALIDATION_ERROR",
            "subCategory": sub_category,
            **extra,
        },
        400,
    )


def _credential(tenant: str) -> OAuthCredential:
    def u(kind: str) -> str:
        return str(uuid.uuid5(_NS, f"hubspot:{tenant}:{kind}"))

    return OAuthCredential(u("client"), u("secret"), "na1-" + u("refresh")[4:])


class HubSpot(Vendor):
    name = "hubspot"
    default_sizes = {"deals": 120, "contacts": 150, "companies": 60, "tasks": 80}
    default_limit = (100, 10.0)
    extra_fault_keys = frozenset({"search_index_lag_ms", "poison_records"})
    token_ttl_s = 1800

    def __init__(self) -> None:
        super().__init__()
        self.apps = OAuthApps(_credential("default"))
        self.stores: dict[str, EntityStore] = {}
        self.search_index: dict[str, Lagged] = {}
        self._hash_prefix: dict[str, int] = {}
        self._json_cache = RenderCache(JSON_CACHE_SIZE)

    # --- dataset -------------------------------------------------------------------------------
    def reset(self, seed: int, sizes: dict[str, int]) -> None:
        for name, size in sizes.items():
            if name not in OBJECTS or not 0 <= int(size) <= MAX_SIZE:
                raise BadRequest(f"hubspot: unknown entity {name!r} or size outside 0..{MAX_SIZE}")
        self._json_cache.clear()
        self._hash_prefix = {name: gen.mix(seed, gen.name_code("hubspot:" + name)) for name in OBJECTS}
        self.stores = {name: EntityStore(int(sizes[name]), self._base_ms_fn(name)) for name in OBJECTS}
        self.search_index = {name: Lagged(store) for name, store in self.stores.items()}

    def _base_ms_fn(self, name: str) -> Callable[[int], int]:
        prefix = self._hash_prefix[name]
        mix1, origin = gen.mix1, gen.ORIGIN_MS
        # Distinct and strictly increasing: one record per second plus a sub-second jitter.
        return lambda i: origin + i * 1000 + mix1(prefix, i) % 1000

    def normalize_faults(self, patch: dict[str, Any]) -> dict[str, Any]:
        poison = patch.get("poison_records")
        if poison is not None and not (
            isinstance(poison, dict)
            and all(isinstance(p, dict) and all(isinstance(v, str | None) for v in p.values()) for p in poison.values())
        ):
            raise BadRequest('poison_records must be {"<record id>": {"<property>": "<text value or null>"}}')
        return patch

    def _poison(self) -> dict[str, dict[str, str | None]]:
        return self.faults.extra.get("poison_records") or {}

    def _lag_ms(self) -> float:
        return float(self.faults.extra.get("search_index_lag_ms") or 0)

    def searchable(self, spec: ObjectSpec) -> EntityStore:
        """The search index's view of the object now (lagging the live records by search_index_lag_ms)."""
        lag = self._lag_ms()
        return self.search_index[spec.name].current(self.clock_ms(), lag > 0)

    def apply(self, m: Mutation) -> dict[str, Any]:
        spec = _BY_TYPE.get(m.entity)
        if spec is None:
            raise BadRequest(f"hubspot: unknown entity {m.entity!r} (one of {sorted(OBJECTS)})")
        m.check("hubspot", spec.name, ACTIONS)
        store, now = self.stores[spec.name], self.clock_ms()
        self.search_index[spec.name].prepare(self._lag_ms() > 0)
        if m.action == "merge":
            return self._merge(spec, m, now)
        wanted_state = ARCHIVED if m.action == "restore" else LIVE
        if m.ids is not None:
            indices = [self._existing(spec, x, wanted_state) for x in m.ids]
        else:  # the `count` least recently modified live records
            indices = store.select([Group()], keep=store.is_live).page("modified", False, 0, m.count)
        indices = list(dict.fromkeys(indices))
        created: list[int] = []
        modified: int | None = None
        if m.action == "edit":
            if not indices and not m.create:
                return {"ids": [], "created_ids": [], "modified_at": None}
            modified, created = store.bump(indices, m.create, now)
        elif m.action == "restore":
            modified = store.next_ms(now)
            for i in indices:
                store.set_time(i, modified)
                store.set_state(i, LIVE)
        else:  # delete/archive keep the modified time; purge is final
            for i in indices:
                store.set_state(i, PURGED if m.action == "purge" else ARCHIVED, now)
        changed = [*indices, *created]
        self.search_index[spec.name].publish(changed, (modified or now) + int(self._lag_ms()), self._lag_ms() > 0)
        return {
            "ids": [str(spec.id_base + i) for i in changed],
            "created_ids": [str(spec.id_base + i) for i in created],
            "modified_at": None if modified is None else gen.iso_ms(modified),
            "changed_at": gen.iso_ms(modified or now),
        }

    def _merge(self, spec: ObjectSpec, m: Mutation, now: int) -> dict[str, Any]:
        store = self.stores[spec.name]
        survivor = self._existing(spec, str(m.into), LIVE)
        losers = list(dict.fromkeys(self._existing(spec, x, LIVE) for x in m.ids or []))
        if survivor in losers:
            raise BadRequest("hubspot: a record cannot be merged into itself")
        t = store.next_ms(now)
        for i in losers:
            store.set_state(i, MERGED, now, merged_into=survivor)
        o = store.set_time(survivor, t)
        earlier = (o.attrs or {}).get(MERGED_IDS)
        merged = ";".join([*([earlier] if earlier else []), *(str(spec.id_base + i) for i in losers)])
        o.attrs = {**(o.attrs or {}), MERGED_IDS: merged}
        self.search_index[spec.name].publish([*losers, survivor], t + int(self._lag_ms()), self._lag_ms() > 0)
        return {
            "ids": [str(spec.id_base + i) for i in [*losers, survivor]],
            "created_ids": [],
            "modified_at": gen.iso_ms(t),
            "changed_at": gen.iso_ms(t),
            "merged_into": str(spec.id_base + survivor),
            MERGED_IDS: merged,
        }

    def _existing(self, spec: ObjectSpec, record_id: str, state: str) -> int:
        i = self._index(spec, record_id)
        if i is None:
            raise BadRequest(f"hubspot: unknown {spec.name} id {record_id!r}")
        actual = self.stores[spec.name].state(i)
        if actual != state:
            raise BadRequest(f"hubspot: {spec.name} {record_id} is {actual}, the action needs it {state}")
        return i

    def truth(self, entity: str) -> list[dict[str, Any]]:
        spec = _BY_TYPE.get(entity)
        if spec is None:
            raise BadRequest(f"hubspot: unknown entity {entity!r} (one of {sorted(OBJECTS)})")
        return truth_rows(self.stores[spec.name], lambda i: str(spec.id_base + i), gen.iso_ms)

    def _index(self, spec: ObjectSpec, record_id: str) -> int | None:
        if not record_id.isdigit():
            return None
        i = int(record_id) - spec.id_base
        return i if 0 <= i < self.stores[spec.name].n_total else None

    def record(
        self, spec: ObjectSpec, i: int, wanted: frozenset[str] | None = None, store: EntityStore | None = None
    ) -> dict[str, Any]:
        rid, props, created_iso, modified_iso, archived_at = self._parts(spec, i, wanted, store)
        out: dict[str, Any] = {
            "id": rid,
            "properties": props,
            "createdAt": created_iso,
            "updatedAt": modified_iso,
            "archived": archived_at is not None,
        }
        if archived_at is not None:
            out["archivedAt"] = archived_at
        return out

    def record_json(
        self, spec: ObjectSpec, i: int, wanted: frozenset[str] | None = None, store: EntityStore | None = None
    ) -> str:
        """record() serialised by hand (generated values never need JSON escaping; tests check this) and
        cached, since building and encoding records is most of the cost of serving a page."""
        o = (store or self.stores[spec.name]).overrides.get(i)
        rev, bad, poison = (o.rev if o else 0), self.faults.bad_records, self._poison()
        if poison and str(spec.id_base + i) in poison:  # vendor text: JSON-escaped, never cached
            return json.dumps(self.record(spec, i, wanted, store), separators=(",", ":"))
        cached = self._json_cache.get((spec.name, wanted), i, rev)
        if cached is not None and (not bad or str(spec.id_base + i) not in bad):
            return cached
        rid, props, created_iso, modified_iso, archived_at = self._parts(spec, i, wanted, store)
        body = ",".join([f'"{k}":"{v}"' if v is not None else f'"{k}":null' for k, v in props.items()])
        tail = "false" if archived_at is None else f'true,"archivedAt":"{archived_at}"'
        out = (
            f'{{"id":"{rid}","properties":{{{body}}},"createdAt":"{created_iso}",'
            f'"updatedAt":"{modified_iso}","archived":{tail}}}'
        )
        if rid not in bad:
            self._json_cache.put((spec.name, wanted), i, rev, out)
        return out

    def _parts(
        self,
        spec: ObjectSpec,
        i: int,
        wanted: frozenset[str] | None,
        store: EntityStore | None = None,
    ) -> tuple[str, dict[str, str | None], str, str, str | None]:
        h = gen.mix1(self._hash_prefix[spec.name], i)
        base_ms = gen.ORIGIN_MS + i * 1000
        o = (store or self.stores[spec.name]).overrides.get(i)
        archived_at = None
        if o is None:
            modified, version, created = base_ms + h % 1000, 0, base_ms - (h >> 8) % (400 * gen.DAY_MS)
        else:
            modified, version = o.modified_ms, o.version
            created = o.created_ms if o.created_ms is not None else base_ms - (h >> 8) % (400 * gen.DAY_MS)
            if o.state == ARCHIVED and o.state_ms is not None:
                archived_at = gen.iso_ms(o.state_ms)
        rid = str(spec.id_base + i)
        created_iso, modified_iso = gen.iso_ms(created), gen.iso_ms(modified)
        props: dict[str, str | None] = dict(spec.fields(h, i, version, created))
        props["createdate"] = created_iso
        props["hs_object_id"] = rid
        props[spec.modified_prop] = "not-a-date" if rid in self.faults.bad_records else modified_iso
        props.update(self._poison().get(rid, {}))
        if wanted is not None:
            keep = wanted | {"hs_object_id", "createdate", spec.modified_prop}
            props = {k: v for k, v in props.items() if k in keep}
            if MERGED_IDS in wanted:  # not a default property: present only when asked for
                props[MERGED_IDS] = (o.attrs or {}).get(MERGED_IDS) if o is not None else None
        return rid, props, created_iso, modified_iso, archived_at

    # --- identity and vendor error bodies ------------------------------------------------------
    def connection(self, base_url: str, tenant: str) -> dict[str, Any]:
        cred = self.apps.issue(_credential(tenant))
        return {
            "credentials": cred.as_dict(),
            "config": {"base_url": base_url},
        }

    def is_auth_endpoint(self, req: SandboxRequest) -> bool:
        return req.subpath.startswith("/oauth/")

    def identify(self, req: SandboxRequest) -> Identity:
        if self.is_auth_endpoint(req):
            client_id = req.body.get("client_id") if isinstance(req.body, dict) else None
            return Identity(client_id if self.apps.knows_client(client_id) else None, False)
        return self.tokens.lookup(req.bearer())

    def unauthorized(self, req: SandboxRequest) -> Response:
        return _error(
            401,
            "Authentication credentials not found. This API supports OAuth 2.0 authentication "
            "and you can find more details at "
            "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "INVALID_AUTHENTICATION",
        )

    def revoked_auth(self, req: SandboxRequest) -> Response:
        return _oauth_error("BAD_REFRESH_TOKEN", "refresh token was revoked", "INVALID_TOKEN", error="invalid_grant")

    def rate_limited(self, retry_after_s: float | None) -> Response:
        resp = json_response(
            {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": "TEN_SECONDLY_ROLLING",
                "requestId": str(uuid.uuid4()),
            },
            429,
        )
        if retry_after_s is not None:
            resp.headers["Retry-After"] = f"{retry_after_s:g}"
        return resp

    def server_error(self, status: int) -> Response:
        message = {502: "Bad Gateway", 504: "Gateway Timeout"}.get(status, "Service Unavailable")
        return _error(status, f"{message}. Please try again later.", "INTERNAL_ERROR")

    def rate_limit_headers(self, remaining: int | None) -> dict[str, str]:
        limit = self.limiter.limit if self.enforce_limits and self.limiter.limit is not None else None
        return {
            "X-HubSpot-RateLimit-Max": str(limit if limit is not None else self.default_limit[0]),
            "X-HubSpot-RateLimit-Remaining": str(
                remaining if limit is not None and remaining is not None else limit or self.default_limit[0]
            ),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.limiter.window_s * 1000)),
        }

    # --- routes --------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/oauth/v1/token", self._token, methods=["POST"])
        for prefix in ("/crm/v3/objects", "/crm/objects/2026-03"):
            r.add_api_route(prefix + "/{object_type}", self._list, methods=["GET"])
            r.add_api_route(prefix + "/{object_type}/search", self._search, methods=["POST"])
            r.add_api_route(prefix + "/{object_type}/{record_id}", self._get, methods=["GET"])
        return r

    async def _token(self, request: Request) -> Response:
        form = parsed(request).body
        form = form if isinstance(form, dict) else {}
        if form.get("grant_type") != "refresh_token":
            return _oauth_error("BAD_GRANT_TYPE", "grant_type must be refresh_token", "INVALID_GRANT_TYPE")
        cred = self.apps.by_refresh_token(str(form.get("refresh_token", "")))
        if cred is None:
            return _oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token", "INVALID_TOKEN")
        if form.get("client_id") != cred.client_id or form.get("client_secret") != cred.client_secret:
            return _oauth_error("BAD_CLIENT_ID", "missing or unknown client id / secret", "INVALID_CLIENT")
        access = self.tokens.issue(cred.client_id, self.token_ttl_s, prefix="CN")
        return json_response(
            {
                "token_type": "bearer",
                "refresh_token": cred.refresh_token,
                "access_token": access,
                "expires_in": self.token_ttl_s,
                "hub_id": gen.account_number(cred.client_id, 8),  # the portal these credentials belong to
            }
        )

    def _spec_or_404(self, object_type: str) -> ObjectSpec | Response:
        spec = _BY_TYPE.get(object_type)
        if spec is None:
            return _error(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR")
        return spec

    async def _list(self, object_type: str, request: Request) -> Response:
        spec = self._spec_or_404(object_type)
        if isinstance(spec, Response):
            return spec
        q: dict[str, Any] = parsed(request).query
        try:
            limit = min(max(int(_one(q.get("limit", "10"))), 1), 100)
            start = _decode_cursor(_one(q["after"])) if "after" in q else 0
        except ValueError as exc:
            return _error(400, f"Invalid input: {exc}", "VALIDATION_ERROR")
        store = self.stores[spec.name]
        archived = str(_one(q.get("archived", "false"))).lower() == "true"
        # `after` is the next index (id order) to look at; deleted records are skipped, never re-counted.
        page, following = self._archived_page(store, start, limit) if archived else _live_page(store, start, limit)
        wanted = _wanted(q.get("properties"))
        paging = None
        if following is not None:
            cursor = _encode_cursor(following)
            paging = {"next": {"after": cursor, "link": f"?after={quote(cursor)}"}}
        results = [self.record_json(spec, i, wanted) for i in page]
        return _page_response({}, results, paging, self.rate_limit_headers(rate_remaining(request)))

    @staticmethod
    def _archived_page(store: EntityStore, start: int, limit: int) -> tuple[list[int], int | None]:
        archived = sorted(i for i in store.nonlive if store.state(i) == ARCHIVED)
        k = bisect_left(archived, start)
        page = archived[k : k + limit]
        return page, (page[-1] + 1 if k + limit < len(archived) else None)

    async def _get(self, object_type: str, record_id: str, request: Request) -> Response:
        spec = self._spec_or_404(object_type)
        if isinstance(spec, Response):
            return spec
        store, q = self.stores[spec.name], parsed(request).query
        i = self._index(spec, record_id)
        if i is not None and store.state(i) == MERGED:  # HubSpot answers a merged-away id with the survivor
            while i is not None and store.state(i) == MERGED:
                i = store.overrides[i].merged_into
        want = ARCHIVED if str(_one(q.get("archived", "false"))).lower() == "true" else LIVE
        if i is None or store.state(i) != want:
            return _error(
                404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND", context={"id": [record_id]}
            )
        wanted = _wanted(q.get("properties"))
        return json_response(self.record(spec, i, wanted), headers=self.rate_limit_headers(rate_remaining(request)))

    async def _search(self, object_type: str, request: Request) -> Response:
        spec = self._spec_or_404(object_type)
        if isinstance(spec, Response):
            return spec
        body = parsed(request).body
        index = self.searchable(spec)
        try:
            if not isinstance(body, dict):
                raise BadRequest("request body must be a JSON object")
            limit, offset = _int_field(body, "limit", 10), _int_field(body, "after", 0)
            if not 0 <= limit <= 200:
                raise BadRequest(f"limit must be between 0 and 200, got {limit}")
            if offset >= SEARCH_CAP:
                raise BadRequest(
                    f"after must be less than {SEARCH_CAP}: the search endpoint returns at most "
                    f"{SEARCH_CAP} results per query"
                )
            groups = self._groups(spec, body.get("filterGroups") or [], index)
            by, descending = _sort(spec, body.get("sorts") or [])
            wanted = body.get("properties")
            if wanted is not None and not isinstance(wanted, list):
                raise BadRequest("properties must be a list")
        except BadRequest as exc:
            return _error(400, str(exc), "VALIDATION_ERROR")
        selection = index.select(groups, keep=index.is_live)  # archived, merged and purged never match
        page = selection.page(by, descending, max(offset, 0), limit)
        wanted_set = None if wanted is None else frozenset(str(p) for p in wanted)
        paging = None
        if offset + len(page) < selection.total and page:
            nxt = str(offset + len(page))
            paging = {"next": {"after": nxt, "link": f"?after={nxt}"}}
        results = [self.record_json(spec, i, wanted_set, index) for i in page]
        # HubSpot sends no rate-limit headers on search responses.
        return _page_response({"total": selection.total}, results, paging, {})

    def _groups(self, spec: ObjectSpec, raw_groups: Any, index: EntityStore) -> list[Group]:
        if not isinstance(raw_groups, list) or len(raw_groups) > 5:
            raise BadRequest("filterGroups must be a list of at most 5 groups")
        groups = []
        for raw in raw_groups:
            filters = raw.get("filters") or [] if isinstance(raw, dict) else None
            if not isinstance(filters, list) or len(filters) > 6:
                raise BadRequest("each filterGroup may contain at most 6 filters")
            group, checks = Group(), []
            for f in filters:
                self._apply_filter(spec, group, checks, f)
            if checks:
                group.residual = self._residual(spec, checks, index)
            groups.append(group)
        return groups or [Group()]

    def _apply_filter(
        self, spec: ObjectSpec, group: Group, checks: list[tuple[str, str, dict[str, Any]]], f: Any
    ) -> None:
        if not isinstance(f, dict):
            raise BadRequest("filter must be an object")
        prop, op = f.get("propertyName"), f.get("operator")
        if op not in _OPERATORS:
            raise BadRequest(f"Invalid operator {op!r}")
        if prop not in spec.prop_names():
            raise BadRequest(f"Property {prop!r} does not exist on {spec.name}")
        if prop == spec.modified_prop or prop == "hs_object_id":
            parse = gen.parse_time_ms if prop == spec.modified_prop else gen.parse_number
            shift = 0 if prop == spec.modified_prop else spec.id_base
            ranges = (
                numeric_ranges(op, *_values(f, op, parse, shift))
                if op not in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN")
                else list(ALL)
            )
            if prop == spec.modified_prop:
                group.ms = ranges_and(group.ms, ranges)
            else:
                group.idx = ranges_and(group.idx, ranges)
        else:
            checks.append((prop, op, f))

    def _residual(
        self,
        spec: ObjectSpec,
        checks: list[tuple[str, str, dict[str, Any]]],
        index: EntityStore,
    ) -> Callable[[int], bool]:
        every = frozenset(spec.prop_names())

        # Filters on ordinary properties are evaluated per record: correct, but a scan of the range.
        def matches(i: int) -> bool:
            props = self.record(spec, i, every, index)["properties"]
            return all(_match(props.get(prop), op, f) for prop, op, f in checks)

        return matches


def _live_page(store: EntityStore, start: int, limit: int) -> tuple[list[int], int | None]:
    """Live records from index `start` on, in id order, and where the next page starts (None: no more)."""
    page, i, n, skip = [], start, store.n_total, store.nonlive
    while len(page) < limit and i < n:
        if i not in skip:
            page.append(i)
        i += 1
    j = i
    while j < n and j in skip:
        j += 1
    return page, (i if j < n else None)


def _page_response(
    head: dict[str, Any], results: list[str], paging: dict[str, Any] | None, headers: dict[str, str]
) -> Response:
    parts = [f'"{k}":{json.dumps(v)}' for k, v in head.items()]
    parts.append(f'"results":[{",".join(results)}]')
    if paging is not None:
        parts.append(f'"paging":{json.dumps(paging, separators=(",", ":"))}')
    return Response("{" + ",".join(parts) + "}", 200, headers, media_type="application/json")


def _one(v: Any) -> Any:
    return v[-1] if isinstance(v, list) else v


def _wanted(raw: Any) -> frozenset[str] | None:
    if raw is None:
        return None
    parts = raw if isinstance(raw, list) else [raw]
    return frozenset(p.strip() for part in parts for p in str(part).split(",") if p.strip())


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{offset}\n".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        offset = int(base64.urlsafe_b64decode(cursor.encode()).decode().strip())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(f"invalid after cursor {cursor!r}") from None
    if offset < 0:
        raise ValueError(f"invalid after cursor {cursor!r}")
    return offset


def _int_field(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key)
    if value is None or value == "":
        return default
    try:
        return int(str(value))
    except ValueError:
        raise BadRequest(f"{key} must be an integer, got {value!r}") from None


def _values(
    f: dict[str, Any], op: str, parse: Callable[[Any], float | None], shift: int
) -> tuple[float | None, float | None, list[float] | None]:
    def conv(v: Any) -> float:
        x = parse(v)
        if x is None:
            raise BadRequest(f"Invalid value {v!r} for {f.get('propertyName')}")
        return x - shift

    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return None, None, None
    if op in ("IN", "NOT_IN"):
        values = f.get("values")
        if not isinstance(values, list):
            raise BadRequest(f"{op} requires a values list")
        return None, None, [conv(v) for v in values]
    if "value" not in f:
        raise BadRequest(f"{op} requires a value")
    high = None
    if op == "BETWEEN":
        if "highValue" not in f:
            raise BadRequest("BETWEEN requires highValue")
        high = conv(f["highValue"])
    return conv(f["value"]), high, None


def _match(actual: str | None, op: str, f: dict[str, Any]) -> bool:
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return (actual not in (None, "")) == (op == "HAS_PROPERTY")
    if actual is None:
        return op in ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN")
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        found = str(f.get("value", "")).strip("*").lower() in actual.lower()
        return found == (op == "CONTAINS_TOKEN")
    if op in ("IN", "NOT_IN"):
        found = actual.lower() in {str(v).lower() for v in f.get("values") or []}
        return found == (op == "IN")

    def key(v: Any) -> tuple[int, Any]:
        n = gen.parse_time_ms(v)  # numbers and ISO datetimes compare numerically, the rest as text
        return (0, n) if n is not None else (1, str(v).lower())

    a, b = key(actual), key(f.get("value"))
    if a[0] != b[0]:
        return op == "NEQ"
    if op == "BETWEEN":
        return b <= a <= key(f.get("highValue"))
    return {"EQ": a == b, "NEQ": a != b, "LT": a < b, "LTE": a <= b, "GT": a > b, "GTE": a >= b}[op]


def _sort(spec: ObjectSpec, sorts: Any) -> tuple[str, bool]:
    """Only the first sort rule is honoured, as on HubSpot. Default order is by id."""
    if not isinstance(sorts, list) or not sorts:
        return "index", False
    rule = sorts[0]
    if isinstance(rule, str):  # the shorthand "-prop" / "prop" form
        prop, descending = rule.lstrip("-"), rule.startswith("-")
    elif isinstance(rule, dict):
        prop = rule.get("propertyName")
        descending = str(rule.get("direction", "ASCENDING")).upper() == "DESCENDING"
    else:
        raise BadRequest("invalid sort")
    if prop == spec.modified_prop:
        return "modified", descending
    if prop in ("hs_object_id", "id"):
        return "index", descending
    raise BadRequest(f"sandbox: sorting on {prop!r} is not supported (use {spec.modified_prop} or hs_object_id)")
