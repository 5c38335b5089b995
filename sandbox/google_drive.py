"""Google Drive v3 simulator (reference: vendor-apis.md §6): the OAuth token endpoint and ``files.list``
with ``q`` on ``modifiedTime`` (``> >= < <= = !=``) and ``trashed``, ``orderBy`` modifiedTime, opaque page
tokens, the ``fields`` partial-response mask, and Google's error bodies.

Throttling answers 403 ``userRateLimitExceeded`` (the quota error Drive documents); the Drive-only fault
``throttle_status: 429`` switches it to 429 ``rateLimitExceeded``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import gen
from .core import (
    Identity,
    InvalidRequest,
    OAuthApps,
    OAuthCredential,
    SandboxRequest,
    Vendor,
    json_response,
    now_ms,
    parsed,
)
from .store import EntityStore, Group, numeric_ranges, ranges_and

TOKEN_TTL_S = 3599
MAX_PAGE_SIZE = 1000
DEFAULT_FIELDS = "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)"
_NS = uuid.UUID("9a3c71e4-0c55-4d2e-b7f1-6e2d4b8a1c37")
_MIME = (
    ("application/vnd.google-apps.document", "document", None),
    ("application/vnd.google-apps.spreadsheet", "spreadsheets", None),
    ("application/vnd.google-apps.presentation", "presentation", None),
    ("application/pdf", "file", "pdf"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "file", "docx"),
)
_TITLES = (
    "Account plan",
    "Q3 forecast",
    "Mutual action plan",
    "Pricing proposal",
    "Call notes",
    "Security questionnaire",
    "Renewal memo",
    "Onboarding checklist",
)
_TERM = re.compile(r"^\s*(\w+)\s*(>=|<=|!=|=|>|<)\s*(.+?)\s*$")
_OPS = {">": "GT", ">=": "GTE", "<": "LT", "<=": "LTE", "=": "EQ", "!=": "NEQ"}


def _credential(tenant: str) -> OAuthCredential:
    def u(kind: str) -> str:
        return uuid.uuid5(_NS, f"drive:{tenant}:{kind}").hex

    return OAuthCredential(
        f"{u('client')[:12]}-sandbox.apps.googleusercontent.com", "GOCSPX-" + u("secret")[:28], "1//0" + u("refresh")
    )


def _error(status: int, message: str, reason: str, domain: str = "global", **where: str) -> Response:
    detail = {"message": message, "domain": domain, "reason": reason, **where}
    return json_response({"error": {"code": status, "message": message, "errors": [detail]}}, status)


def _invalid(location: str, message: str = "Invalid Value") -> Response:
    return _error(400, message, "invalid", locationType="parameter", location=location)


class GoogleDrive(Vendor):
    name = "google_drive"
    default_sizes = {"files": 150}
    default_limit = (12_000, 60.0)  # queries per minute per user
    extra_fault_keys = frozenset({"throttle_status"})

    def __init__(self) -> None:
        super().__init__()
        self.apps = OAuthApps(_credential("default"))
        self.store = EntityStore(0, lambda i: 0)
        self._prefix = 0
        self._id_code = ""

    # --- dataset -------------------------------------------------------------------------------
    def reset(self, seed: int, sizes: dict[str, int]) -> None:
        size = int(sizes["files"])
        if not 0 <= size < 10_000_000:
            raise InvalidRequest("google_drive: files must be 0..9,999,999")
        self._prefix = gen.mix(seed, gen.name_code("google_drive:files"))
        self._id_code = hashlib.sha256(str(seed).encode()).hexdigest()[:10]
        origin, prefix = gen.ORIGIN_MS, self._prefix
        self.store = EntityStore(size, lambda i: origin + i * 60_000 + gen.mix1(prefix, i) % 60_000)

    def file_id(self, i: int) -> str:
        return f"1Dr{self._id_code}{i:07d}"

    def _index(self, file_id: str) -> int | None:
        tail = file_id[-7:]
        if file_id != self.file_id(int(tail) if tail.isdigit() else -1):
            return None
        i = int(tail)
        return i if i < self.store.n_total else None

    @staticmethod
    def trashed(i: int) -> bool:
        return i % 10 == 9

    def mutate(self, entity: str, count: int, ids: list[str] | None, create: int) -> dict[str, Any]:
        if entity != "files":
            raise InvalidRequest(f"google_drive: unknown entity {entity!r}")
        if ids is not None:
            indices = [self._index(x) for x in ids]
            if any(i is None for i in indices):
                raise InvalidRequest(f"google_drive: unknown file id in {ids}")
        else:
            indices = self.store.select([Group()]).page("modified", False, 0, count)
        if not indices and not create:
            return {"ids": [], "modified_at": None}
        t, created = self.store.bump([i for i in indices if i is not None], create, int(now_ms()))
        return {
            "ids": [self.file_id(i) for i in [*dict.fromkeys(indices), *created] if i is not None],
            "modified_at": gen.iso_ms(t),
        }

    def file(self, i: int) -> dict[str, Any]:
        h = gen.mix1(self._prefix, i)
        o = self.store.overrides.get(i)
        modified = self.store.modified_ms(i)
        created = (
            o.created_ms
            if o and o.created_ms is not None
            else gen.ORIGIN_MS + i * 60_000 - (h >> 8) % (200 * gen.DAY_MS)
        )
        mime, kind, extension = _MIME[h % len(_MIME)]
        file_id = self.file_id(i)
        first, last = gen.pick(h, gen.FIRST_NAMES, 12), gen.pick(h, gen.LAST_NAMES, 20)
        title = f"{gen.pick(h, gen.COMPANY_WORDS, 28)} {gen.pick(h, _TITLES, 36)} {i}"
        out: dict[str, Any] = {
            "kind": "drive#file",
            "id": file_id,
            "name": f"{title}.{extension}" if extension else title,
            "mimeType": mime,
            "createdTime": gen.iso_ms(created),
            "modifiedTime": "not-a-date" if file_id in self.faults.bad_records else gen.iso_ms(modified),
            "trashed": self.trashed(i),
            "parents": [f"0A{self._id_code}Fold{h % 7}"],
            "webViewLink": (
                f"https://docs.google.com/{kind}/d/{file_id}/edit"
                if not extension
                else f"https://drive.google.com/file/d/{file_id}/view"
            ),
            "owners": [
                {
                    "kind": "drive#user",
                    "displayName": f"{first} {last}",
                    "emailAddress": f"{first}.{last}@example.com".lower(),
                    "me": False,
                }
            ],
        }
        if extension:  # Google-native files have no size
            out["size"] = str((h >> 20) % 5_000_000 + 1024)
        return out

    # --- identity and vendor error bodies ------------------------------------------------------
    def connection(self, base_url: str, tenant: str) -> dict[str, Any]:
        cred = self.apps.issue(_credential(tenant))
        return {
            "credentials": cred.as_dict(),
            "config": {"base_url": base_url, "token_url": f"{base_url}/token"},
        }

    def is_auth_endpoint(self, req: SandboxRequest) -> bool:
        return req.subpath == "/token"

    def identify(self, req: SandboxRequest) -> Identity:
        if self.is_auth_endpoint(req):
            client_id = req.body.get("client_id") if isinstance(req.body, dict) else None
            return Identity(client_id if self.apps.knows_client(client_id) else None, False)
        return self.tokens.lookup(req.bearer())

    def unauthorized(self, req: SandboxRequest) -> Response:
        return _error(401, "Invalid Credentials", "authError", locationType="header", location="Authorization")

    def revoked_auth(self, req: SandboxRequest) -> Response:
        return json_response({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400)

    def rate_limited(self, retry_after_s: float | None) -> Response:
        if int(self.faults.extra.get("throttle_status") or 403) == 429:
            resp = _error(429, "Rate Limit Exceeded", "rateLimitExceeded", "usageLimits")
        else:
            message = (
                "User Rate Limit Exceeded. Rate of requests for user exceed configured project quota. "
                "You may consider re-evaluating expected per-user traffic to the API and adjust project "
                "quota limits accordingly."
            )
            resp = _error(
                403,
                message,
                "userRateLimitExceeded",
                "usageLimits",
                extendedHelp="https://console.developers.google.com/apis/api/drive.googleapis.com/quotas",
            )
        if retry_after_s is not None:
            resp.headers["Retry-After"] = f"{retry_after_s:g}"
        return resp

    def server_error(self, status: int) -> Response:
        return _error(status, "The service is currently unavailable.", "backendError")

    # --- routes --------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/token", self._token, methods=["POST"])
        r.add_api_route("/drive/v3/files", self._list, methods=["GET"])
        return r

    async def _token(self, request: Request) -> Response:
        form = parsed(request).body
        form = form if isinstance(form, dict) else {}
        if form.get("grant_type") != "refresh_token":
            return json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Invalid grant_type: {form.get('grant_type', '')}",
                },
                400,
            )
        cred = self.apps.by_refresh_token(str(form.get("refresh_token", "")))
        if cred is None or form.get("client_id") != cred.client_id:
            return json_response({"error": "invalid_grant", "error_description": "Bad Request"}, 400)
        if form.get("client_secret") != cred.client_secret:
            return json_response({"error": "invalid_client", "error_description": "Unauthorized"}, 401)
        access = self.tokens.issue(cred.client_id, TOKEN_TTL_S, prefix="ya29.")
        return json_response(
            {
                "access_token": access,
                "expires_in": TOKEN_TTL_S,
                "scope": "https://www.googleapis.com/auth/drive.readonly",
                "token_type": "Bearer",
            }
        )

    async def _list(self, request: Request) -> Response:
        query = {k: (v[-1] if isinstance(v, list) else v) for k, v in parsed(request).query.items()}
        q = query.get("q", "")
        try:
            page_size = int(query.get("pageSize", 100))
        except ValueError:
            return _invalid("pageSize")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            return _invalid("pageSize", f"Invalid value '{page_size}'. Values must be within the range: [1, 1000]")
        group = _parse_q(q, self.trashed)
        if group is None:
            return _invalid("q")
        order = query.get("orderBy", "").strip()
        if order not in ("", "modifiedTime", "modifiedTime asc", "modifiedTime desc"):
            return _error(
                400,
                "Sorting is not supported for this field.",
                "badRequest",
                locationType="parameter",
                location="orderBy",
            )
        mask = _parse_fields(query.get("fields") or DEFAULT_FIELDS)
        if mask is None:
            return _invalid("fields")
        offset = 0
        if "pageToken" in query:
            offset = _decode_token(query["pageToken"], q, order)
            if offset is None:
                return _invalid("pageToken")
        selection = self.store.select([group])
        by = "modified" if order else "index"
        indices = selection.page(by, order.endswith("desc"), offset, page_size)
        body: dict[str, Any] = {
            "kind": "drive#fileList",
            "incompleteSearch": False,
            "files": [self.file(i) for i in indices],
        }
        if offset + len(indices) < selection.total:
            body["nextPageToken"] = _encode_token(offset + len(indices), q, order)
        return json_response(_apply_mask(body, mask))


def _parse_q(q: str, trashed: Any) -> Group | None:
    """``modifiedTime <op> '<RFC 3339>'`` and ``trashed = true|false`` terms joined by ``and``; None if
    the query uses anything else (the sandbox serves only what the connector asks)."""
    group = Group()
    wanted_trash: bool | None = None
    terms = [t for t in re.split(r"\s+and\s+", q.strip(), flags=re.IGNORECASE) if t] if q.strip() else []
    for term in terms:
        match = _TERM.match(term)
        if match is None:
            return None
        field, op, raw = match.groups()
        if field == "modifiedTime" and raw.startswith("'") and raw.endswith("'"):
            moment = gen.parse_time_ms(raw[1:-1])
            if moment is None or gen.parse_number(raw[1:-1]) is not None:
                return None
            group.ms = ranges_and(group.ms, numeric_ranges(_OPS[op], moment))
        elif field == "trashed" and op in ("=", "!=") and raw in ("true", "false"):
            wanted_trash = (raw == "true") == (op == "=")
        else:
            return None
    if wanted_trash is not None:
        group.residual = lambda i: trashed(i) == wanted_trash
    return group


def _parse_fields(text: str) -> dict[str, Any] | None:
    """``a,b,files(id,owners(emailAddress))`` -> {"a": None, "b": None, "files": {...}}; None if malformed."""
    out: dict[str, Any] = {}
    stack = [out]
    name = ""
    for ch in text.replace(" ", "") + ",":
        if ch.isalnum() or ch in "_*":
            name += ch
        elif ch == "(" and name:
            stack[-1][name] = child = {}
            stack.append(child)
            name = ""
        elif ch in ",)":
            if name:
                stack[-1][name] = None
                name = ""
            if ch == ")":
                if len(stack) == 1:
                    return None
                stack.pop()
        else:
            return None
    return out if len(stack) == 1 else None


def _apply_mask(value: Any, mask: dict[str, Any] | None) -> Any:
    if mask is None or "*" in mask:
        return value
    if isinstance(value, list):
        return [_apply_mask(v, mask) for v in value]
    if isinstance(value, dict):
        return {k: _apply_mask(v, mask[k]) for k, v in value.items() if k in mask}
    return value


def _fingerprint(q: str, order: str) -> str:
    return hashlib.sha256(f"{q}\n{order}".encode()).hexdigest()[:12]


def _encode_token(offset: int, q: str, order: str) -> str:
    return "~!!~" + base64.urlsafe_b64encode(f"{offset}:{_fingerprint(q, order)}".encode()).decode()


def _decode_token(token: str, q: str, order: str) -> int | None:
    """The offset a page token stands for; None if it is malformed or belongs to another query."""
    try:
        offset, fingerprint = base64.urlsafe_b64decode(token.removeprefix("~!!~")).decode().split(":")
        return int(offset) if fingerprint == _fingerprint(q, order) and int(offset) >= 0 else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
