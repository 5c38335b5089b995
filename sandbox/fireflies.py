"""Fireflies.ai GraphQL simulator (wire facts: docs/vendors.md, Fireflies): ``POST /graphql`` with a Bearer API
key, the ``transcripts`` query (``limit`` ≤ 50, ``skip``, ``fromDate``/``toDate``, newest first), the
response carrying exactly the selected fields, and Fireflies' error objects. Throttling (the Business
plan's 60 requests per minute) is a GraphQL ``too_many_requests`` error in an HTTP 200 response, with
the moment to retry (epoch ms) in ``extensions.metadata.retryAfter``.

Transcripts have no modified time: meeting i starts 2 hours after meeting i-1 (plus up to 30 minutes
of jitter); ``mutate`` edits transcripts in place and creates meetings that start now, or now +
``time_offset_s``: Fireflies lists a transcript only once processing has finished, which can be hours
after the meeting (https://docs.fireflies.ai/graphql-api/query/transcripts), so a new transcript can carry
a meeting date far older than transcripts already listed. ``delete`` / ``purge``: the transcript is gone from
every read (Fireflies has no deletion feed).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import gen
from .core import Identity, InvalidRequest, SandboxRequest, Vendor, json_response, parsed, truth_rows
from .graphql import GraphQLSyntaxError, parse, project
from .mutation import Mutation
from .store import EntityStore, Group

MAX_LIMIT = 50
MEETING_SPACING_MS = 2 * 3600 * 1000
MAX_SIZE = 1_000_000
_NS = uuid.UUID("4c3a1b9e-6a0f-4f5e-9d0c-2e8b7f1a6c33")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ACTIONS = frozenset({"edit", "delete", "purge"})
_MEETINGS = ("Weekly sync", "Discovery call", "Product demo", "Pricing review", "Kickoff", "QBR")


def _error(
    code: str, message: str, status: int, http_status: int = 200, metadata: dict[str, Any] | None = None
) -> Response:
    extensions: dict[str, Any] = {
        "code": code,
        "status": status,
        "helpUrls": [f"https://docs.fireflies.ai/miscellaneous/error-codes#{code}"],
    }
    if metadata:
        extensions["metadata"] = metadata
    body = {"data": None, "errors": [{"message": message, "code": code, "friendly": True, "extensions": extensions}]}
    return json_response(body, http_status)


def _graphql_error(message: str, code: str) -> Response:
    return json_response({"errors": [{"message": message, "extensions": {"code": code}}]}, 400)


def _parse_date(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} must be a Date instance") from None
    return int(moment.timestamp() * 1000)


class Fireflies(Vendor):
    name = "fireflies"
    default_sizes = {"transcripts": 80}
    default_limit = (60, 60.0)
    retry_after_when_limited = True

    def __init__(self) -> None:
        super().__init__()
        self._keys: set[str] = set()
        self.transcripts = EntityStore(0, lambda i: 0)
        self._edits: dict[int, int] = {}
        self._prefix = 0

    # --- dataset -------------------------------------------------------------------------------
    def reset(self, seed: int, sizes: dict[str, int]) -> None:
        size = int(sizes["transcripts"])
        if not 0 <= size <= MAX_SIZE:
            raise InvalidRequest(f"fireflies: transcripts size outside 0..{MAX_SIZE}")
        self._prefix = gen.mix(seed, gen.name_code("fireflies:transcripts"))
        self.transcripts = EntityStore(size, self._base_date_ms())
        self._edits = {}

    def _base_date_ms(self) -> Callable[[int], int]:
        prefix, mix1, origin = self._prefix, gen.mix1, gen.ORIGIN_MS
        return lambda i: origin + i * MEETING_SPACING_MS + mix1(prefix, i) % 1_800_000

    def apply(self, m: Mutation) -> dict[str, Any]:
        """Edit ``ids`` (or the ``count`` latest transcripts) in place, create meetings, delete or purge."""
        if m.entity != "transcripts":
            raise InvalidRequest(f"fireflies: unknown entity {m.entity!r}")
        m.check("fireflies", "transcripts", ACTIONS, frozenset({"time_offset_s"}))
        store, now = self.transcripts, self.clock_ms()
        if m.ids is not None:
            indices = [self._index(x) for x in m.ids]
            if any(i is None or not store.is_live(i) for i in indices):
                raise InvalidRequest(f"fireflies: unknown transcript id in {m.ids}")
        else:
            indices = store.select([Group()], keep=store.is_live).page("modified", True, 0, m.count)
        live = [i for i in dict.fromkeys(indices) if i is not None]
        if m.action != "edit":
            for i in live:
                store.set_state(i, "deleted" if m.action == "delete" else "purged", now)
            return {"ids": [self.transcript_id(i) for i in live], "created_ids": [], "modified_at": None}
        for i in live:
            self._edits[i] = self._edits.get(i, 0) + 1
        created: list[int] = []
        date = None
        if m.create:
            offset_ms = int((m.time_offset_s or 0) * 1000)
            date = store.next_ms(now) if not offset_ms else now + offset_ms
            created = store.create(m.create, date)
        return {
            "ids": [self.transcript_id(i) for i in [*live, *created]],
            "created_ids": [self.transcript_id(i) for i in created],
            "date": date,
            "modified_at": None,
        }

    def truth(self, entity: str) -> list[dict[str, Any]]:
        if entity != "transcripts":
            raise InvalidRequest(f"fireflies: unknown entity {entity!r}")
        return truth_rows(self.transcripts, self.transcript_id, gen.iso_ms)

    def transcript_id(self, i: int) -> str:
        h = gen.mix(self._prefix, i, 1)
        return "".join(_ALPHABET[(h >> (6 * k)) % len(_ALPHABET)] for k in range(10)) + f"{i:06d}"

    def _index(self, transcript_id: str) -> int | None:
        tail = transcript_id[-6:]
        if not tail.isdigit() or int(tail) >= self.transcripts.n_total:
            return None
        return int(tail) if self.transcript_id(int(tail)) == transcript_id else None

    def transcript(self, i: int) -> dict[str, Any]:
        h = gen.mix1(self._prefix, i)
        tid = self.transcript_id(i)
        date = self.transcripts.modified_ms(i)
        company = gen.pick(h, gen.COMPANY_WORDS, 8)
        people = []
        for k in range(2 + h % 3):
            hk = gen.mix1(h, k)
            first, last = gen.pick(hk, gen.FIRST_NAMES), gen.pick(hk, gen.LAST_NAMES, 8)
            domain = "ourco.example" if k == 0 else f"{company.lower()}.example.com"
            people.append((f"{first} {last}", f"{first}.{last}@{domain}".lower()))
        edits = self._edits.get(i, 0)
        bad = tid in self.faults.bad_records
        return {
            "id": tid,
            "title": f"{company} {gen.pick(h, _MEETINGS, 16)}" + (f" (rev {edits})" if edits else ""),
            "date": None if bad else date,
            "dateString": gen.iso_ms(date),
            "duration": ((h >> 20) % 110) * 0.5 + 5,
            "participants": [email for _, email in people],
            "organizer_email": people[0][1],
            "host_email": people[0][1],
            "transcript_url": f"https://app.fireflies.ai/view/{tid}",
            "audio_url": None,
            "video_url": None,
            "meeting_link": f"https://meet.google.com/{tid[:3].lower()}-{tid[3:7].lower()}-{tid[7:10].lower()}",
            "calendar_id": f"{h % 10**12:012d}",
            "privacy": "link",
            "speakers": [{"id": k, "name": name} for k, (name, _) in enumerate(people)],
            "meeting_attendees": [
                {"displayName": name, "email": email, "phoneNumber": None, "name": name, "location": None}
                for name, email in people
            ],
            "summary": {
                "keywords": [gen.pick(h, gen.PRODUCTS, 4), company],
                "action_items": f"{people[0][0]} to send a follow-up to {company}",
                "outline": None,
                "overview": f"{company} discussed {gen.pick(h, gen.PRODUCTS, 4).lower()} plans.",
                "shorthand_bullet": None,
                "bullet_gist": None,
                "gist": f"{company} {gen.pick(h, _MEETINGS, 16).lower()}",
                "short_summary": f"Call with {company}.",
                "topics_discussed": None,
            },
            "user": {"user_id": f"u{h % 10**6:06d}", "email": people[0][1], "name": people[0][0]},
        }

    # --- identity and vendor error bodies ------------------------------------------------------
    def connection(self, base_url: str, tenant: str) -> dict[str, Any]:
        key = uuid.uuid5(_NS, f"fireflies:{tenant}").hex + uuid.uuid5(_NS, f"fireflies:{tenant}:2").hex[:8]
        self._keys.add(key)
        return {"credentials": {"api_key": key}, "config": {"base_url": base_url}}

    def identify(self, req: SandboxRequest) -> Identity:
        key = req.bearer()
        return Identity(key, True) if key in self._keys else Identity(None, False)

    def is_failure_body(self, head: bytes) -> bool:
        return head.startswith((b'{"data":null', b'{"errors"'))

    def unauthorized(self, req: SandboxRequest) -> Response:
        return _error("auth_failed", "Invalid API key", 401, http_status=401)

    def rate_limited(self, retry_after_s: float | None) -> Response:
        # retryAfter is a moment on the vendor's clock (clock_offset_s moves it), not a duration.
        metadata = {"retryAfter": int(self.clock_ms() + retry_after_s * 1000)} if retry_after_s is not None else None
        return _error("too_many_requests", "Too many requests. Please retry after some time.", 429, metadata=metadata)

    def server_error(self, status: int) -> Response:
        return _error(
            "internal_server_error", "Something went wrong. Please try again later.", status, http_status=status
        )

    # --- routes --------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/graphql", self._graphql, methods=["POST"])
        return r

    async def _graphql(self, request: Request) -> Response:
        body = parsed(request).body
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _graphql_error("POST body must be JSON with a query string", "BAD_REQUEST")
        variables = body.get("variables") or {}
        try:
            roots = parse(body["query"], variables if isinstance(variables, dict) else {})
        except GraphQLSyntaxError as exc:
            return _graphql_error(str(exc), "GRAPHQL_PARSE_FAILED")
        data: dict[str, Any] = {}
        for name, node in roots.items():
            if name == "user":  # the user the API key belongs to
                key = parsed(request).bearer() or ""
                data[name] = project(
                    {"user_id": f"u{gen.account_number(key, 10)}", "email": "owner@example.com"}, node.fields, "User"
                )
                continue
            if name not in ("transcripts", "transcript"):
                return _graphql_error(f'Cannot query field "{name}" on type "Query".', "GRAPHQL_VALIDATION_FAILED")
            try:
                records = self._transcripts(node.args) if name == "transcripts" else self._transcript(node.args)
            except InvalidRequest as exc:
                return _error(
                    "invalid_arguments", "Invalid argument(s) were provided", 400, metadata={"message": str(exc)}
                )
            if records is None:  # transcript(id) of a deleted or unknown transcript
                return _error("object_not_found", "Object not found", 404, metadata={"objectType": "Transcript"})
            try:
                data[name] = project(records, node.fields, "Transcript")
            except KeyError as exc:
                return _graphql_error(exc.args[0], "GRAPHQL_VALIDATION_FAILED")
        return json_response({"data": data})

    def _transcript(self, args: dict[str, Any]) -> dict[str, Any] | None:
        """``transcript(id: String!)``: one transcript, or None when it was deleted or never existed."""
        transcript_id = args.get("id")
        if not isinstance(transcript_id, str):
            raise InvalidRequest("id must be a string")
        i = self._index(transcript_id)
        return None if i is None or not self.transcripts.is_live(i) else self.transcript(i)

    def _transcripts(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        limit, skip = args.get("limit"), args.get("skip") or 0
        limit = MAX_LIMIT if limit is None else limit
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}")
        if not isinstance(skip, int) or skip < 0:
            raise InvalidRequest("skip must be a non-negative integer")
        lo = _parse_date(args.get("fromDate"), "fromDate")
        hi = _parse_date(args.get("toDate"), "toDate")
        if lo is not None and hi is not None and lo > hi:
            return []
        # Both bounds inclusive (Fireflies does not document it).
        group = Group(ms=[(lo if lo is not None else -(1 << 62), hi + 1 if hi is not None else 1 << 62)])
        store = self.transcripts
        page = store.select([group], keep=store.is_live).page("modified", True, skip, limit)
        return [self.transcript(i) for i in page]
