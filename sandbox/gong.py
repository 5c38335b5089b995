"""Gong API v2 simulator (wire facts: docs/vendors.md, Gong; Gong's API reference: https://help.gong.io/apidocs):
Basic auth with an access key and secret,
``GET /v2/calls`` and ``POST /v2/calls/extensive`` filtered by start time and paged by an opaque
cursor (100 per page), the 404 "No calls found" answer, Gong's ``{"requestId", "errors": [...]}``
bodies, and a per-credential budget of 100 requests per rolling minute answered by 429 + Retry-After.

Calls have no modified time. Gong documents that ``fromDateTime``/``toDateTime`` denote the SCHEDULED time of
web-conference calls recorded by Gong and the actual START of every other call, so the sandbox filters and
sorts on that "call time". The rule a client can compute from ``metaData``: the call time is ``scheduled``
when ``system`` is in ``WEB_CONFERENCE_SYSTEMS`` (Zoom, Google Meet, Microsoft Teams, WebEx, GoToMeeting,
BlueJeans), else ``started``. Conference calls start up to 4 minutes before or after their schedule (on a
5-minute mark); other calls (dialers such as Outreach, Salesloft, Aircall, Gong Connect) are audio calls
whose ``scheduled`` is ``started`` rounded down to 5 minutes. Call i's call time is 30 minutes after call
i-1's, within a 10-minute jitter, so each call's ``started`` stays inside [call time - 4 min, call time + 14 min).

Mutations (``POST /_sandbox/gong/mutate``): ``edit`` changes calls in place (their times stay); ``create``
adds calls whose call time is now, or now + ``time_offset_s`` (Gong processes a call after it ends, and
calls uploaded through ``POST /v2/calls`` carry their own, past, start times, so a call can appear hours
after it started); ``system`` picks the created calls' recording system.
``delete`` / ``purge``: the call is gone from every read (Gong has no deletion feed).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import gen
from .core import Identity, InvalidRequest, SandboxRequest, Vendor, json_response, parsed, truth_rows
from .mutation import Mutation
from .store import EntityStore, Group, Selection

PAGE_SIZE = 100
CALL_SPACING_MS = 30 * 60 * 1000
ID_BASE = 5_000_000_000_000_000_000  # 19-digit numeric string ids, as Gong's
MAX_SIZE = 1_000_000
NO_CALLS = "No calls found corresponding to the provided filters"
_NS = uuid.UUID("0b6f1f0e-3a55-4d8e-8a57-62b2c7e2e5a1")
_TZ = timezone(timedelta(hours=-8))  # Gong reports times in the workspace's zone, with an offset
_PURPOSES = ("Discovery Call", "Demo Call", "Negotiation", "Onboarding", "Quarterly Review", "Renewal")
# Systems whose calls are web conferences: Gong filters them by their scheduled time (see the docstring).
WEB_CONFERENCE_SYSTEMS = frozenset({"Zoom", "Google Meet", "Microsoft Teams", "WebEx", "GoToMeeting", "BlueJeans"})
_SYSTEMS = ("Zoom", "Google Meet", "Outreach", "Microsoft Teams", "WebEx", "Salesloft", "Aircall", "Gong Connect")
_PHONE_DIRECTIONS = ("Inbound", "Outbound")
ACTIONS = frozenset({"edit", "delete", "purge"})
SCHEDULE_GRID_MS = 300_000
MAX_START_SKEW_S = 240  # a conference starts up to 4 minutes before or after its schedule
_TOPICS = ("Pricing", "Security", "Integrations", "Timeline", "Competition", "Next Steps")


def _request_id() -> str:
    return uuid.uuid4().hex[:19]


def _errors(status: int, *messages: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"requestId": _request_id(), "errors": list(messages)}, status, headers)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(_TZ).isoformat(timespec="seconds")


def _parse_instant(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} has an invalid format: {value!r}") from None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{name} must carry a time zone: {value!r}")
    return int(moment.timestamp() * 1000)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return int(json.loads(base64.urlsafe_b64decode(padded))["offset"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidRequest("cursor is invalid") from None


class Gong(Vendor):
    name = "gong"
    default_sizes = {"calls": 120}
    default_limit = (100, 60.0)  # the platform's Gong budget (100/min); Gong's own is 3/s and 10,000/day
    retry_after_when_limited = True

    def __init__(self) -> None:
        super().__init__()
        self._secrets: dict[str, str] = {}
        self.calls = EntityStore(0, lambda i: 0)
        self._edits: dict[int, int] = {}  # call index -> times edited
        self._prefix = 0

    # --- dataset -------------------------------------------------------------------------------
    def reset(self, seed: int, sizes: dict[str, int]) -> None:
        size = int(sizes["calls"])
        if not 0 <= size <= MAX_SIZE:
            raise InvalidRequest(f"gong: calls size outside 0..{MAX_SIZE}")
        self._prefix = gen.mix(seed, gen.name_code("gong:calls"))
        self.calls = EntityStore(size, self._base_start_ms())
        self._edits = {}

    def _base_start_ms(self) -> Callable[[int], int]:
        prefix, mix1, origin = self._prefix, gen.mix1, gen.ORIGIN_MS

        def call_time(i: int) -> int:
            # Strictly increasing: every offset below is at most 10 minutes, less than the spacing.
            h = mix1(prefix, i)
            if gen.pick(h, _SYSTEMS, 32) in WEB_CONFERENCE_SYSTEMS:
                return origin + i * CALL_SPACING_MS + SCHEDULE_GRID_MS * (1 + (h >> 44) % 2)
            return origin + i * CALL_SPACING_MS + h % 600_000

        return call_time

    def apply(self, m: Mutation) -> dict[str, Any]:
        """Edit ``ids`` (or the ``count`` latest calls) in place, create calls, delete or purge calls."""
        if m.entity != "calls":
            raise InvalidRequest(f"gong: unknown entity {m.entity!r}")
        m.check("gong", "calls", ACTIONS, frozenset({"time_offset_s", "system"}))
        store, now = self.calls, self.clock_ms()
        if m.ids is not None:
            indices = [self._index(x) for x in m.ids]
            if any(i is None or not store.is_live(i) for i in indices):
                raise InvalidRequest(f"gong: unknown call id in {m.ids}")
        else:
            indices = store.select([Group()], keep=store.is_live).page("modified", True, 0, m.count)
        live = [i for i in dict.fromkeys(indices) if i is not None]
        if m.action != "edit":
            for i in live:
                store.set_state(i, "deleted" if m.action == "delete" else "purged", now)
            return {"ids": [self.call_id(i) for i in live], "created_ids": [], "modified_at": None}
        for i in live:
            self._edits[i] = self._edits.get(i, 0) + 1
        created: list[int] = []
        started = None
        if m.create:
            offset_ms = int((m.time_offset_s or 0) * 1000)
            started = store.next_ms(now) if not offset_ms else now + offset_ms
            created = store.create(m.create, started)
            if m.system is not None:
                for i in created:
                    store.overrides[i].attrs = {"system": m.system}
        return {
            "ids": [self.call_id(i) for i in [*live, *created]],
            "created_ids": [self.call_id(i) for i in created],
            "started_at": _iso(started) if started is not None else None,
            "modified_at": None,
        }

    def truth(self, entity: str) -> list[dict[str, Any]]:
        if entity != "calls":
            raise InvalidRequest(f"gong: unknown entity {entity!r}")
        # The call time as the API shows it: whole seconds (scheduled or started, per WEB_CONFERENCE_SYSTEMS).
        return truth_rows(self.calls, self.call_id, lambda ms: gen.iso_ms(ms - ms % 1000))

    def call_id(self, i: int) -> str:
        return str(ID_BASE + i)

    def _index(self, call_id: str) -> int | None:
        if not call_id.isdigit():
            return None
        i = int(call_id) - ID_BASE
        return i if 0 <= i < self.calls.n_total else None

    def system(self, i: int) -> str:
        o = self.calls.overrides.get(i)
        chosen = (o.attrs or {}).get("system") if o is not None else None
        return chosen or gen.pick(gen.mix1(self._prefix, i), _SYSTEMS, 32)

    def meta_data(self, i: int) -> dict[str, Any]:
        h = gen.mix1(self._prefix, i)
        cid = self.call_id(i)
        call_ms = self.calls.modified_ms(i)
        system = self.system(i)
        conference = system in WEB_CONFERENCE_SYSTEMS
        if conference:
            scheduled_ms, started_ms = (
                call_ms,
                call_ms + ((h >> 50) % (2 * MAX_START_SKEW_S + 1) - MAX_START_SKEW_S) * 1000,
            )
        else:
            scheduled_ms, started_ms = call_ms - call_ms % SCHEDULE_GRID_MS, call_ms
        edits = self._edits.get(i, 0)
        company = gen.pick(h, gen.COMPANY_WORDS, 8)
        return {
            "id": cid,
            "url": f"https://app.gong.io/call?id={cid}",
            "title": f"{company} | {gen.pick(h, _PURPOSES, 16)}" + (f" (rev {edits})" if edits else ""),
            "scheduled": _iso(scheduled_ms),
            "started": "not-a-date" if cid in self.faults.bad_records else _iso(started_ms),
            "duration": (h >> 20) % 3300 + 300,
            "primaryUserId": str(900_000_000_000_000 + (h >> 28) % 20),
            "direction": "Conference" if conference else gen.pick(h, _PHONE_DIRECTIONS, 24),
            "system": system,
            "scope": "External",
            "media": "Video" if conference else "Audio",
            "language": "eng",
            "workspaceId": "623457276584334",
            "sdrDisposition": None,
            "clientUniqueId": None,
            "customData": None,
            "purpose": gen.pick(h, _PURPOSES, 16),
            "meetingUrl": f"https://zoom.us/j/{(h >> 8) % 10**10:010d}" if conference else None,
            "isPrivate": False,
            "calendarEventId": f"{h % 10**12:012d}@google.com" if conference else None,
        }

    def parties(self, i: int) -> list[dict[str, Any]]:
        h = gen.mix1(self._prefix, i)
        company = gen.pick(h, gen.COMPANY_WORDS, 8).lower()
        out = []
        for k in range(2 + h % 3):
            hk = gen.mix1(h, k)
            first, last = gen.pick(hk, gen.FIRST_NAMES), gen.pick(hk, gen.LAST_NAMES, 8)
            internal = k == 0
            domain = "ourco.example" if internal else f"{company}.example.com"
            out.append(
                {
                    "id": str(hk % 10**15),
                    "emailAddress": f"{first}.{last}@{domain}".lower(),
                    "name": f"{first} {last}",
                    "title": "Account Executive" if internal else gen.pick(hk, ("CTO", "VP Sales", "Buyer"), 16),
                    "userId": str(900_000_000_000_000 + (h >> 28) % 20) if internal else None,
                    "speakerId": str(hk % 10**12),
                    "context": [],
                    "affiliation": "Internal" if internal else "External",
                    "methods": ["Invitee"],
                }
            )
        return out

    def extensive(self, i: int, fields: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {"metaData": self.meta_data(i)}
        h = gen.mix1(self._prefix, i)
        if fields.get("parties"):
            record["parties"] = self.parties(i)
        content = fields.get("content") or {}
        if isinstance(content, dict) and content.get("topics"):
            record["content"] = {
                "topics": [{"name": _TOPICS[(h + k) % len(_TOPICS)], "duration": 60 + k * 45} for k in range(2)]
            }
        interaction = fields.get("interaction") or {}
        if isinstance(interaction, dict) and interaction.get("speakers"):
            record["interaction"] = {
                "speakers": [
                    {"id": p["speakerId"], "userId": p["userId"], "talkTime": 120 + n * 30}
                    for n, p in enumerate(self.parties(i))
                ]
            }
        if fields.get("media"):
            record["media"] = {"audioUrl": None, "videoUrl": None}
        return record

    # --- identity and vendor error bodies ------------------------------------------------------
    def connection(self, base_url: str, tenant: str) -> dict[str, Any]:
        key = uuid.uuid5(_NS, f"gong:{tenant}:key").hex[:24].upper()
        secret = base64.urlsafe_b64encode(uuid.uuid5(_NS, f"gong:{tenant}:secret").bytes * 2).decode()
        self._secrets[key] = secret
        return {"credentials": {"access_key": key, "access_key_secret": secret}, "config": {"base_url": base_url}}

    def identify(self, req: SandboxRequest) -> Identity:
        scheme, _, encoded = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return Identity(None, False)
        try:
            key, _, secret = base64.b64decode(encoded.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return Identity(None, False)
        known = self._secrets.get(key)
        return Identity(key if known else None, known is not None and known == secret)

    def unauthorized(self, req: SandboxRequest) -> Response:
        return _errors(401, "The access key or access key secret is invalid")

    def rate_limited(self, retry_after_s: float | None) -> Response:
        headers = {"Retry-After": f"{retry_after_s:g}"} if retry_after_s is not None else None
        return _errors(429, "API request limit exceeded", headers=headers)

    def server_error(self, status: int) -> Response:
        return _errors(status, "An unexpected error occurred; please try again later")

    # --- routes --------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/v2/calls", self._list, methods=["GET"])
        r.add_api_route("/v2/calls/extensive", self._extensive, methods=["POST"])
        return r

    def _select(self, from_ms: int | None, to_ms: int | None, call_ids: list[Any] | None) -> Selection:
        if from_ms is not None and to_ms is not None and from_ms >= to_ms:
            raise InvalidRequest("fromDateTime must be before toDateTime")
        group = Group(ms=[(from_ms if from_ms is not None else -(1 << 62), to_ms if to_ms is not None else 1 << 62)])
        if call_ids is not None:
            indices = sorted({i for i in (self._index(str(c)) for c in call_ids) if i is not None})
            group.idx = [(i, i + 1) for i in indices]
        return self.calls.select([group], keep=self.calls.is_live)  # deleted calls are gone

    def _page(self, selection: Selection, cursor: str | None) -> tuple[list[int], dict[str, Any]]:
        offset = _decode_cursor(cursor) if cursor else 0
        page = selection.page("modified", False, offset, PAGE_SIZE)
        records: dict[str, Any] = {
            "totalRecords": selection.total,
            "currentPageSize": len(page),
            "currentPageNumber": offset // PAGE_SIZE,
        }
        if offset + len(page) < selection.total:
            records["cursor"] = _encode_cursor(offset + len(page))
        return page, records

    async def _list(self, request: Request) -> Response:
        q = parsed(request).query
        try:
            selection = self._select(
                _parse_instant(_one(q.get("fromDateTime")), "fromDateTime"),
                _parse_instant(_one(q.get("toDateTime")), "toDateTime"),
                None,
            )
            page, records = self._page(selection, _one(q.get("cursor")))
        except InvalidRequest as exc:
            return _errors(400, str(exc))
        if not page:
            return _errors(404, NO_CALLS)
        return json_response(
            {"requestId": _request_id(), "records": records, "calls": [self.meta_data(i) for i in page]}
        )

    async def _extensive(self, request: Request) -> Response:
        body = parsed(request).body
        try:
            if not isinstance(body, dict):
                raise InvalidRequest("request body must be a JSON object")
            f = body.get("filter") or {}
            if not isinstance(f, dict):
                raise InvalidRequest("filter must be an object")
            call_ids = f.get("callIds")
            if call_ids is not None and not isinstance(call_ids, list):
                raise InvalidRequest("filter.callIds must be a list")
            selection = self._select(
                _parse_instant(f.get("fromDateTime"), "filter.fromDateTime"),
                _parse_instant(f.get("toDateTime"), "filter.toDateTime"),
                call_ids,
            )
            page, records = self._page(selection, body.get("cursor"))
            selector = body.get("contentSelector") or {}
            fields = (selector.get("exposedFields") or {}) if isinstance(selector, dict) else {}
        except InvalidRequest as exc:
            return _errors(400, str(exc))
        if not page:
            return _errors(404, NO_CALLS)
        return json_response(
            {"requestId": _request_id(), "records": records, "calls": [self.extensive(i, fields) for i in page]}
        )


def _one(v: Any) -> Any:
    return v[-1] if isinstance(v, list) else v
