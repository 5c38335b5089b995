"""monday.com GraphQL simulator (wire facts: docs/vendors.md, monday.com): one POST /v2 endpoint answering
``boards``, ``boards(ids) { items_page }``, ``next_items_page`` and ``items(ids:)``; the
``__last_updated__`` rule at day granularity; opaque cursors valid for 60 minutes; application errors as
HTTP 200 + ``errors``.

The query is parsed by sandbox.graphql (root fields, arguments as literals or ``$variables``; no aliases or
fragments); item and board fields are answered whatever the selection set asks for.

Item lifecycle (https://developer.monday.com/api-reference/reference/items): every item has ``state``
``active``, ``archived`` or ``deleted``. Mutate actions ``archive`` / ``delete`` set it and bump
``updated_at``; ``restore`` makes it active again (bump); ``purge`` removes it for good (monday empties its
trash after 30 days). ``items_page`` / ``next_items_page`` return active items only. The root query
``items(ids: [ID!], exclude_nonactive: Boolean)`` (at most 100 ids) returns items in any state with their
``state`` (``exclude_nonactive: true`` keeps active ones only); unknown or purged ids are simply absent.
``items_page`` orders by ``order_by`` on ``__last_updated__`` or ``__creation_log__``; without ``order_by``
items come in creation (= id) order.

Boards (https://developer.monday.com/api-reference/reference/boards): ``boards(state: all|active|archived|
deleted)``, default ``active``, carry a ``state``; mutate entity ``boards`` with ``archive``/``delete``/
``restore`` changes a board's state. An archived or deleted board is therefore absent from ``boards`` (also
``boards(ids: ...)``, so its ``items_page`` is unreachable) unless ``state`` asks for it; its items keep
their own state, and ``items(ids:)`` still returns them.

Monday-only faults (``/_sandbox/monday/faults``):
- ``complexity_exhausted: N``: the next N queries get HTTP 200 + COMPLEXITY_BUDGET_EXHAUSTED, with
  ``retry_in_seconds`` = ``complexity_retry_s`` (default 60) and the code spelled ``complexity_code``;
- ``expire_cursors: N``: the next N ``next_items_page`` calls find their cursor expired;
- ``query_error: N``: the next N queries get a GraphQL validation error.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import gen
from .core import TRUTH_MAX, Identity, InvalidRequest, SandboxRequest, Vendor, json_response, now_ms, parsed
from .graphql import GraphQLSyntaxError, Selection, parse
from .mutation import Mutation
from .store import INF, LIVE, EntityStore, Group

CURSOR_TTL_MS = 60 * 60 * 1000
MAX_LIMIT = 500
ITEM_ID_BASE = 5_000_000_000
BOARD_ID_BASE = 4_000_000_000
PER_BOARD = 100_000_000  # item id = ITEM_ID_BASE + board * PER_BOARD + index
ITEM_SPACING_MS = 30 * 60 * 1000  # one item per board every 30 minutes: ~48 items share each day
ACCOUNT_ID = 9_876_543
_NS = uuid.UUID("0b7d2e6a-41a8-4b1f-9d56-3c2f8e1a7b90")
_BOARD_NAMES = ("Sales Pipeline", "Customer Onboarding", "Renewals", "Partner Deals", "Marketing Requests")
_GROUPS = (("topics", "Backlog"), ("group_title", "In progress"), ("new_group", "Done"))
_STATUS = ((0, "Working on it"), (1, "Done"), (2, "Stuck"), (5, ""))
_PRIORITY = ((7, "Low"), (10, "Medium"), (11, "High"), (110, "Critical"))
_TASK_VERBS = ("Prepare", "Review", "Send", "Schedule", "Follow up on", "Draft")
_TASK_OBJECTS = ("proposal", "kickoff call", "contract", "renewal quote", "QBR deck", "security review")
_RULE_OPS = {"greater_than_or_equals", "lower_than_or_equal", "any_of", "greater_than", "lower_than"}
ITEM_ACTIONS = frozenset({"edit", "archive", "delete", "restore", "purge"})
BOARD_ACTIONS = frozenset({"archive", "delete", "restore"})
BOARD_STATES = ("active", "archived", "deleted")
MAX_ITEM_IDS = 100
_STATE_AFTER = {"archive": "archived", "delete": "deleted", "restore": LIVE}
EXTRA_FAULTS = frozenset(
    {"complexity_exhausted", "complexity_retry_s", "complexity_code", "expire_cursors", "query_error"}
)


class GraphQLError(Exception):
    """An application-level error: HTTP 200 with an ``errors`` array."""

    def __init__(self, message: str, code: str, **extensions: Any):
        super().__init__(message)
        self.code, self.extensions = code, extensions


def _errors(
    message: str, code: str, headers: dict[str, str] | None = None, status: int = 200, **extensions: Any
) -> Response:
    body = {"errors": [{"message": message, "extensions": {"code": code, **extensions}}], "account_id": ACCOUNT_ID}
    return json_response(body, status, headers)


def _token(tenant: str) -> str:
    return "mon_" + uuid.uuid5(_NS, f"monday:{tenant}").hex


def _day_start_ms(value: Any) -> int:
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        raise GraphQLError(f"Invalid date {value!r}: expected YYYY-MM-DD", "InvalidArgumentException") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _iso_s(ms: int) -> str:
    """monday's ``updated_at`` has second precision: 2026-06-20T11:00:00Z."""
    return gen.iso_ms(ms - ms % 1000)[:-5] + "Z"


class Monday(Vendor):
    name = "monday"
    default_sizes = {"boards": 2, "items": 120}
    # The seed's client-side limit; enforcing it here proves the client never exceeds it.
    default_limit = (60, 60.0)
    extra_fault_keys = EXTRA_FAULTS

    def __init__(self) -> None:
        super().__init__()
        self._tokens = {_token("default"): "default"}
        self.boards: list[EntityStore] = []
        self.board_states: list[str] = []
        self.board_changed: dict[int, int] = {}  # board -> ms of its last state change
        self._prefix = 0

    # --- dataset -------------------------------------------------------------------------------
    def reset(self, seed: int, sizes: dict[str, int]) -> None:
        n_boards, n_items = int(sizes["boards"]), int(sizes["items"])
        if not 1 <= n_boards <= 1000 or not 0 <= n_items <= n_boards * (PER_BOARD - 1):
            raise InvalidRequest("monday: boards must be 1..1000 and items fit the boards")
        self._prefix = gen.mix(seed, gen.name_code("monday:items"))
        self.boards = [
            EntityStore(n_items // n_boards + (1 if b < n_items % n_boards else 0), self._base_ms_fn(b))
            for b in range(n_boards)
        ]
        self.board_states = ["active"] * n_boards
        self.board_changed: dict[int, int] = {}

    def _base_ms_fn(self, board: int) -> Callable[[int], int]:
        prefix, origin = gen.mix(self._prefix, board), gen.ORIGIN_MS
        return lambda i: origin + i * ITEM_SPACING_MS + board * 1000 + gen.mix1(prefix, i) % 1000

    def _locate(self, item_id: str) -> tuple[int, int] | None:
        if not item_id.isdigit() or int(item_id) < ITEM_ID_BASE:
            return None
        board, index = divmod(int(item_id) - ITEM_ID_BASE, PER_BOARD)
        if board >= len(self.boards) or index >= self.boards[board].n_total:
            return None
        return board, index

    def apply(self, m: Mutation) -> dict[str, Any]:
        if m.entity == "boards":
            return self._board_state(m)
        if m.entity != "items":
            raise InvalidRequest(f"monday: unknown entity {m.entity!r} (items or boards)")
        m.check("monday", "items", ITEM_ACTIONS)
        needs = ("archived", "deleted") if m.action == "restore" else (LIVE,)
        if m.ids is not None:
            located = [self._locate(x) for x in m.ids]
            for raw, p in zip(m.ids, located, strict=True):
                if p is None or self.boards[p[0]].state(p[1]) not in needs:
                    raise InvalidRequest(f"monday: no {' or '.join(needs)} item {raw!r}")
            picks = list(dict.fromkeys(p for p in located if p is not None))
        else:  # the oldest `count` active items across all boards
            candidates = [
                (store.modified_ms(i), b, i)
                for b, store in enumerate(self.boards)
                for i in store.select([Group()], keep=store.is_live).page("modified", False, 0, m.count)
            ]
            picks = [(b, i) for _, b, i in sorted(candidates)[: m.count]]
        changed: list[str] = []
        created_ids: list[str] = []
        moment = None
        now = self.clock_ms()
        for b, store in enumerate(self.boards):
            mine = [i for pb, i in picks if pb == b]
            extra = m.create if b == 0 else 0
            if not mine and not extra:
                continue
            created: list[int] = []
            if m.action == "edit":
                moment, created = store.bump(mine, extra, now)
            elif m.action == "purge":
                for i in mine:
                    store.set_state(i, "purged", now)
            else:  # archive, delete, restore: the state changes and updated_at moves
                moment = store.next_ms(now)
                for i in mine:
                    store.set_time(i, moment)
                    store.set_state(i, _STATE_AFTER[m.action], moment)
            changed += [self._item_id(b, i) for i in [*mine, *created]]
            created_ids += [self._item_id(b, i) for i in created]
        return {"ids": changed, "created_ids": created_ids, "modified_at": _iso_s(moment) if moment else None}

    def _board_state(self, m: Mutation) -> dict[str, Any]:
        m.check("monday", "boards", BOARD_ACTIONS)
        target = _STATE_AFTER[m.action] if m.action != "restore" else "active"
        if m.ids is not None:
            boards = [int(x) - BOARD_ID_BASE if str(x).isdigit() else -1 for x in m.ids]
            if any(not 0 <= b < len(self.boards) for b in boards):
                raise InvalidRequest(f"monday: unknown board id in {m.ids}")
        else:
            boards = [b for b, state in enumerate(self.board_states) if state == "active"][: m.count]
        now = self.clock_ms()
        for b in dict.fromkeys(boards):
            self.board_states[b] = target
            self.board_changed[b] = now
        return {
            "ids": [str(BOARD_ID_BASE + b) for b in dict.fromkeys(boards)],
            "created_ids": [],
            "modified_at": _iso_s(now) if boards else None,
        }

    def truth(self, entity: str) -> list[dict[str, Any]]:
        if entity == "boards":
            return [
                {
                    "id": str(BOARD_ID_BASE + b),
                    "modified": _iso_s(self.board_changed.get(b, gen.ORIGIN_MS)),
                    "state": "live" if state == "active" else state,
                    "merged_into": None,
                }
                for b, state in enumerate(self.board_states)
            ]
        if entity != "items":
            raise InvalidRequest(f"monday: unknown entity {entity!r} (items or boards)")
        total = sum(store.n_total for store in self.boards)
        if total > TRUTH_MAX:
            raise InvalidRequest(f"truth is refused for more than {TRUTH_MAX} records ({total})")
        return [
            {
                "id": self._item_id(b, i),
                "modified": _iso_s(store.modified_ms(i)),
                "state": store.state(i),
                "merged_into": None,
            }
            for b, store in enumerate(self.boards)
            for i in range(store.n_total)
        ]

    def _item_id(self, board: int, index: int) -> str:
        return str(ITEM_ID_BASE + board * PER_BOARD + index)

    def item(self, board: int, i: int) -> dict[str, Any]:
        store = self.boards[board]
        h = gen.mix1(gen.mix(self._prefix, board, 1), i)
        o = store.overrides.get(i)
        modified = store.modified_ms(i)
        version = o.version if o else 0
        created = (  # increasing with the index: ids are handed out in creation order
            o.created_ms
            if o and o.created_ms is not None
            else gen.ORIGIN_MS - 90 * gen.DAY_MS + i * ITEM_SPACING_MS + (h >> 8) % ITEM_SPACING_MS
        )
        item_id = self._item_id(board, i)
        group_id, group_title = gen.pick(h, [f"{a}|{b}" for a, b in _GROUPS], 4).split("|")
        status_index, status_label = _STATUS[(h >> 12) % len(_STATUS)]
        prio_index, prio_label = _PRIORITY[(h >> 16) % len(_PRIORITY)]
        changed_at = gen.iso_ms(modified)
        columns = [
            {
                "id": "status",
                "type": "status",
                "text": status_label or None,
                "value": json.dumps({"index": status_index, "post_id": None, "changed_at": changed_at}),
            },
            self._due_column(h, created),
            {
                "id": "priority",
                "type": "status",
                "text": prio_label,
                "value": json.dumps({"index": prio_index, "post_id": None, "changed_at": changed_at}),
            },
            {
                "id": "person",
                "type": "people",
                "text": f"{gen.pick(h, gen.FIRST_NAMES, 20)} {gen.pick(h, gen.LAST_NAMES, 28)}",
                "value": json.dumps({"personsAndTeams": [{"id": (h >> 36) % 90_000 + 10_000, "kind": "person"}]}),
            },
        ]
        return {
            "id": item_id,
            "name": f"{gen.pick(h, _TASK_VERBS, 40)} {gen.pick(h, _TASK_OBJECTS, 44)} {i}"
            + (f" (rev {version})" if version else ""),
            "created_at": _iso_s(created),
            "updated_at": "not-a-date" if item_id in self.faults.bad_records else _iso_s(modified),
            "state": "active" if store.is_live(i) else store.state(i),
            "group": {"id": group_id, "title": group_title},
            "board": {"id": str(BOARD_ID_BASE + board), "name": self._board_name(board)},
            "column_values": columns,
        }

    @staticmethod
    def _due_column(h: int, created: int) -> dict[str, Any]:
        kind = (h >> 24) % 4  # no due date, a date, or a date with a time
        due = gen.iso_ms(created + ((h >> 28) % 60 + 1) * gen.DAY_MS)
        if kind == 0:
            return {"id": "date4", "type": "date", "text": "", "value": None}
        if kind == 1:
            return {
                "id": "date4",
                "type": "date",
                "text": due[:10],
                "value": json.dumps({"date": due[:10], "icon": None, "changed_at": due}),
            }
        return {
            "id": "date4",
            "type": "date",
            "text": f"{due[:10]} {due[11:16]}",
            "value": json.dumps({"date": due[:10], "time": due[11:19], "icon": None, "changed_at": due}),
        }

    @staticmethod
    def _board_name(board: int) -> str:
        base = _BOARD_NAMES[board % len(_BOARD_NAMES)]
        return base if board < len(_BOARD_NAMES) else f"{base} {board // len(_BOARD_NAMES) + 1}"

    # --- identity and vendor error bodies ------------------------------------------------------
    def connection(self, base_url: str, tenant: str) -> dict[str, Any]:
        token = _token(tenant)
        self._tokens[token] = tenant
        return {"credentials": {"api_token": token}, "config": {"base_url": base_url}}

    def account_of(self, request: Request) -> int:
        """The monday account of the calling token (each tenant's token belongs to its own account)."""
        tenant = (request.state.sandbox_identity.credential or "").removeprefix("monday:")
        return gen.account_number(tenant, 7) if tenant else ACCOUNT_ID

    def identify(self, req: SandboxRequest) -> Identity:
        raw = req.headers.get("authorization", "").strip()
        token = raw[7:].strip() if raw.lower().startswith("bearer ") else raw  # both forms are accepted
        tenant = self._tokens.get(token)
        return Identity(f"monday:{tenant}" if tenant else None, tenant is not None)

    def unauthorized(self, req: SandboxRequest) -> Response:
        return _errors("Not Authenticated", "UNAUTHENTICATED", status=401, status_code=401)

    def rate_limited(self, retry_after_s: float | None) -> Response:
        hint = {} if retry_after_s is None else {"retry_in_seconds": retry_after_s}
        headers = {} if retry_after_s is None else {"Retry-After": f"{retry_after_s:g}"}
        return _errors("Rate Limit Exceeded", "RATE_LIMIT_EXCEEDED", headers, 429, status_code=429, **hint)

    def server_error(self, status: int) -> Response:
        return json_response({"error_message": "Internal server error", "status_code": status}, status)

    # --- the endpoint --------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/v2", self._graphql, methods=["POST"])
        return r

    async def _graphql(self, request: Request) -> Response:
        body = parsed(request).body
        extra = self.faults.extra
        if _countdown(extra, "complexity_exhausted"):
            retry = float(extra.get("complexity_retry_s", 60))
            code = str(extra.get("complexity_code", "COMPLEXITY_BUDGET_EXHAUSTED"))
            return _errors("Complexity budget exhausted", code, {"Retry-After": f"{retry:g}"}, retry_in_seconds=retry)
        try:
            if _countdown(extra, "query_error"):
                raise GraphQLError("Field 'itemz' doesn't exist on type 'Board'", "GraphQLValidationError")
            if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                raise GraphQLError("No query string was present", "GraphQLValidationError")
            variables = body.get("variables") or {}
            try:
                roots = parse(body["query"], variables if isinstance(variables, dict) else {})
            except GraphQLSyntaxError as exc:
                raise GraphQLError(str(exc), "GraphQLParseError") from None
            data: dict[str, Any] = {}
            for name, node in roots.items():
                if name == "next_items_page":
                    data.update(self._next_items_page(node.args))
                elif name == "boards":
                    data.update(self._boards(node))
                elif name == "items":
                    data.update(self._items(node.args))
                else:
                    raise GraphQLError(
                        "sandbox: only boards, items, items_page and next_items_page are served",
                        "GraphQLValidationError",
                    )
        except GraphQLError as exc:
            return _errors(str(exc), exc.code, **exc.extensions)
        account = self.account_of(request)
        return json_response({"data": data, "account_id": account, "extensions": {"request_id": str(uuid.uuid4())}})

    def is_failure_body(self, head: bytes) -> bool:
        return head.startswith(b'{"errors"')

    def _boards(self, node: Selection) -> dict[str, Any]:
        args = node.args
        limit, page = int(args.get("limit", 25)), int(args.get("page", 1))
        if page < 1 or limit < 1:
            raise GraphQLError("page and limit must be positive", "InvalidArgumentException")
        state = str(args.get("state") or "active")
        if state not in (*BOARD_STATES, "all"):
            raise GraphQLError(f"Argument 'state' has an invalid value ({state})", "InvalidArgumentException")
        ids = [b for b in self._board_ids(args) if state in ("all", self.board_states[b])]
        items_page = (node.fields or {}).get("items_page")
        out = []
        for b in ids[(page - 1) * limit : page * limit]:
            board: dict[str, Any] = {
                "id": str(BOARD_ID_BASE + b),
                "name": self._board_name(b),
                "state": self.board_states[b],
            }
            if items_page is not None:
                board["items_page"] = self._items_page(b, items_page.args)
            out.append(board)
        return {"boards": out}

    def _board_ids(self, args: dict[str, Any]) -> list[int]:
        if "ids" not in args or args["ids"] is None:
            return list(range(len(self.boards)))
        raw = args["ids"] if isinstance(args["ids"], list) else [args["ids"]]
        wanted = {int(x) - BOARD_ID_BASE for x in raw if str(x).isdigit()}
        return [b for b in range(len(self.boards)) if b in wanted]

    def _items_page(self, board: int, args: dict[str, Any]) -> dict[str, Any]:
        limit = _limit(args)
        group, by, descending = _query_params(args.get("query_params"))
        cursor = {"b": board, "ms": group.ms, "by": by, "desc": descending, "off": 0, "t": int(now_ms())}
        return self._page(cursor, limit)

    def _items(self, args: dict[str, Any]) -> dict[str, Any]:
        raw = args.get("ids")
        if raw is None:
            raise GraphQLError("sandbox: items needs ids", "InvalidArgumentException")
        raw = raw if isinstance(raw, list) else [raw]
        if len(raw) > MAX_ITEM_IDS:
            raise GraphQLError(f"The ids argument accepts at most {MAX_ITEM_IDS} ids", "InvalidArgumentException")
        active_only = bool(args.get("exclude_nonactive") or False)
        out = []
        for item_id in dict.fromkeys(str(x) for x in raw):
            found = self._locate(item_id)
            if found is None:
                continue
            state = self.boards[found[0]].state(found[1])
            if state == "purged" or (active_only and state != LIVE):
                continue
            out.append(self.item(*found))
        return {"items": out}

    def _next_items_page(self, args: dict[str, Any]) -> dict[str, Any]:
        limit = _limit(args)
        cursor = _decode_cursor(args.get("cursor"))
        if _countdown(self.faults.extra, "expire_cursors") or now_ms() - cursor["t"] > CURSOR_TTL_MS:
            raise GraphQLError(
                "CursorExpiredError: The cursor provided for pagination has expired. Cursors are "
                "valid for 60 minutes after the initial request.",
                "CursorExpiredError",
                status_code=400,
            )
        if not 0 <= cursor["b"] < len(self.boards):
            raise GraphQLError("Invalid cursor", "InvalidCursorException", status_code=400)
        return {"next_items_page": self._page(cursor, limit)}

    def _page(self, cursor: dict[str, Any], limit: int) -> dict[str, Any]:
        board = cursor["b"]
        store = self.boards[board]
        selection = store.select([Group(ms=[tuple(r) for r in cursor["ms"]])], keep=store.is_live)  # active only
        indices = selection.page(cursor["by"], cursor["desc"], cursor["off"], limit)
        following = cursor["off"] + len(indices)
        nxt = _encode_cursor({**cursor, "off": following}) if following < selection.total else None
        return {"cursor": nxt, "items": [self.item(board, i) for i in indices]}


def _countdown(extra: dict[str, Any], key: str) -> bool:
    left = int(extra.get(key) or 0)
    if left > 0:
        extra[key] = left - 1
    return left > 0


def _limit(args: dict[str, Any]) -> int:
    limit = int(args.get("limit") or 25)
    if not 1 <= limit <= MAX_LIMIT:
        raise GraphQLError(f"limit must be between 1 and {MAX_LIMIT}", "InvalidArgumentException")
    return limit


def _query_params(params: Any) -> tuple[Group, str, bool]:
    """``rules`` on ``__last_updated__`` (day granularity); ``order_by`` on it or on ``__creation_log__``
    (creation order, which is id order); without ``order_by``, creation order."""
    group, by, descending = Group(), "index", False
    if not params:
        return group, by, descending
    if not isinstance(params, dict) or params.get("operator", "and") != "and":
        raise GraphQLError("sandbox: query_params with operator 'and' only", "InvalidArgumentException")
    for rule in params.get("rules") or []:
        if rule.get("column_id") != "__last_updated__" or rule.get("operator") not in _RULE_OPS:
            raise GraphQLError(f"sandbox: unsupported rule {rule}", "InvalidArgumentException")
        value = rule.get("compare_value") or []
        if not (isinstance(value, list) and len(value) == 2 and value[0] == "EXACT"):
            raise GraphQLError('compare_value must be ["EXACT", "YYYY-MM-DD"]', "InvalidArgumentException")
        start = _day_start_ms(value[1])
        bounds = {
            "greater_than_or_equals": (start, INF),
            "greater_than": (start + gen.DAY_MS, INF),
            "lower_than_or_equal": (-INF, start + gen.DAY_MS),
            "lower_than": (-INF, start),
            "any_of": (start, start + gen.DAY_MS),
        }[rule["operator"]]
        lo, hi = max(group.ms[0][0], bounds[0]), min(group.ms[0][1], bounds[1])
        group.ms = [(lo, hi)] if lo < hi else []
    for order in params.get("order_by") or []:
        column = order.get("column_id")
        if column not in ("__last_updated__", "__creation_log__"):
            raise GraphQLError(
                "sandbox: order_by supports __last_updated__ and __creation_log__", "InvalidArgumentException"
            )
        by, descending = ("modified" if column == "__last_updated__" else "index"), order.get("direction") == "desc"
    return group, by, descending


def _encode_cursor(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(raw: Any) -> dict[str, Any]:
    try:
        text = str(raw)
        state = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return {
            "b": int(state["b"]),
            "ms": state["ms"],
            "by": state["by"],
            "desc": bool(state["desc"]),
            "off": int(state["off"]),
            "t": int(state["t"]),
        }
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise GraphQLError("Invalid cursor", "InvalidCursorException", status_code=400) from None
