"""Google Drive v3 simulator (wire facts: docs/vendors.md, Google Drive): the OAuth token endpoint and ``files.list``
with ``q`` on ``modifiedTime`` (``> >= < <= = !=``) and ``trashed``, ``orderBy`` modifiedTime, opaque page
tokens, the ``fields`` partial-response mask, ``corpora``/``driveId``, shared drives (``drives.list``), the
Changes API (sandbox.google_drive_changes) and Google's error bodies.

Throttling answers 403 ``userRateLimitExceeded`` (the quota error Drive documents); the Drive-only fault
``throttle_status: 429`` switches it to 429 ``rateLimitExceeded``.

Files: about 30% live in shared drives (``driveId`` set, no ``owners``, as Drive renders shared-drive items),
placed in runs of consecutive files (16, or more on datasets over 65,536 files); the first run is always in
My Drive, and files created by ``mutate`` land in My Drive. ``version`` is Drive's int64-as-string
"monotonically increasing version number for the file"
(https://developers.google.com/drive/api/reference/rest/v3/files); it grows on every change of the file.

``files.list`` corpora (https://developers.google.com/drive/api/guides/search-shareddrives): without
``corpora`` every visible file is listed (the sandbox's historical default); ``user`` lists My Drive files
only; ``drive`` with ``driveId`` lists that shared drive completely; ``allDrives`` lists everything.
``drive`` and ``allDrives`` need ``includeItemsFromAllDrives=true`` (else 403), ``driveId`` goes with
``corpora=drive`` only (else 400), and an unknown ``driveId`` is 404. Fault ``incomplete_search: true``:
``allDrives`` answers ``"incompleteSearch": true`` and leaves out every shared-drive file, as Drive may do
for broad corpora; a client must then walk ``user`` plus each ``drive``.

Mutations (``POST /_sandbox/google_drive/mutate``), each appending one entry to the change log:
- ``edit``: content change, ``modifiedTime`` = now, or ``modified_time`` (``modifiedTime`` is client-settable:
  apps may set any value, past or future; the file then sorts and filters by that value);
- ``create`` (``hidden: true``: created where the user cannot see it yet, ``modified_time`` allowed);
- ``trash`` / ``restore``: ``trashed`` true/false, ``modifiedTime`` unchanged;
- ``reveal``: a file enters the user's view (moved into a folder or shared drive the user can see, or newly
  shared) keeping its old ``modifiedTime``, so a ``modifiedTime`` watermark never finds it;
- ``hide``: the user loses access; the file leaves ``files.list`` and the change log reports
  ``removed: true`` without ``file``;
- ``purge`` / ``delete``: permanently deleted (Drive's files.delete skips the trash): gone everywhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import gen
from .core import (
    TRUTH_MAX,
    Identity,
    InvalidRequest,
    OAuthApps,
    OAuthCredential,
    SandboxRequest,
    Vendor,
    json_response,
    parsed,
)
from .google_drive_changes import ChangeFeed, apply_mask, error, invalid, parse_fields
from .mutation import Mutation
from .store import INF, EntityStore, Group, Ranges, numeric_ranges, ranges_and, ranges_or

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
ACTIONS = frozenset({"edit", "trash", "restore", "reveal", "hide", "purge", "delete"})
DRIVE_BLOCK = 16  # files are placed in drives in runs of at least this many (a drive is a short list of ranges)
DRIVE_RUNS = 4096  # at most about this many runs: big datasets use longer runs
SHARED_DRIVE_SHARE = 3  # out of 10 blocks
_DRIVE_NAMES = ("Sales Team", "Deal Desk", "Customer Success", "Partnerships", "Marketing", "Legal")
_TERM = re.compile(r"^\s*(\w+)\s*(>=|<=|!=|=|>|<)\s*(.+?)\s*$")
_OPS = {">": "GT", ">=": "GTE", "<": "LT", "<=": "LTE", "=": "EQ", "!=": "NEQ"}


def _credential(tenant: str) -> OAuthCredential:
    def u(kind: str) -> str:
        return uuid.uuid5(_NS, f"drive:{tenant}:{kind}").hex

    return OAuthCredential(
        f"{u('client')[:12]}-sandbox.apps.googleusercontent.com", "GOCSPX-" + u("secret")[:28], "1//0" + u("refresh")
    )


class GoogleDrive(ChangeFeed, Vendor):
    name = "google_drive"
    default_sizes = {"files": 150, "drives": 3}
    default_limit = (12_000, 60.0)  # queries per minute per user
    extra_fault_keys = frozenset({"throttle_status", "incomplete_search"})

    def __init__(self) -> None:
        super().__init__()
        self.apps = OAuthApps(_credential("default"))
        self.store = EntityStore(0, lambda i: 0)
        self.n_drives = 0
        self._prefix = 0
        self._id_code = ""
        self._drive_ranges: dict[int | None, Ranges] = {}
        self._block = DRIVE_BLOCK

    # --- dataset -------------------------------------------------------------------------------
    def reset(self, seed: int, sizes: dict[str, int]) -> None:
        size, drives = int(sizes["files"]), int(sizes["drives"])
        if not 0 <= size < 10_000_000 or not 0 <= drives <= 1000:
            raise InvalidRequest("google_drive: files must be 0..9,999,999 and drives 0..1000")
        self._prefix = gen.mix(seed, gen.name_code("google_drive:files"))
        self._id_code = hashlib.sha256(str(seed).encode()).hexdigest()[:10]
        origin, prefix = gen.ORIGIN_MS, self._prefix
        self.store = EntityStore(size, lambda i: origin + i * 60_000 + gen.mix1(prefix, i) % 60_000)
        self.n_drives = drives
        self._block = max(DRIVE_BLOCK, size // DRIVE_RUNS)
        self._drive_ranges = {}
        self.reset_changes()

    def file_id(self, i: int) -> str:
        return f"1Dr{self._id_code}{i:07d}"

    def drive_id(self, d: int) -> str:
        return f"0A{self._id_code[:6].upper()}{d:04d}Uk9PVA"

    def drive_name(self, d: int) -> str:
        base = _DRIVE_NAMES[d % len(_DRIVE_NAMES)]
        return base if d < len(_DRIVE_NAMES) else f"{base} {d // len(_DRIVE_NAMES) + 1}"

    def _drive_index(self, drive_id: str) -> int | None:
        return next((d for d in range(self.n_drives) if self.drive_id(d) == drive_id), None)

    def _index(self, file_id: str) -> int | None:
        tail = file_id[-7:]
        if file_id != self.file_id(int(tail) if tail.isdigit() else -1):
            return None
        i = int(tail)
        return i if i < self.store.n_total else None

    def drive_of(self, i: int) -> int | None:
        """The shared drive file i lives in, or None for My Drive (created files land in My Drive)."""
        block = i // self._block
        if i >= self.store.n_base or block == 0 or not self.n_drives:
            return None
        h = gen.mix1(gen.mix(self._prefix, 7), block)
        return (h >> 8) % self.n_drives if h % 10 < SHARED_DRIVE_SHARE else None

    def _ranges_of(self, drive: int | None) -> Ranges:
        """Base indices of a drive (None: My Drive) as ranges; computed once per reset, O(DRIVE_RUNS)."""
        if drive not in self._drive_ranges:
            n, size = self.store.n_base, self._block
            runs = [
                (b * size, min((b + 1) * size, n))
                for b in range((n + size - 1) // size)
                if self.drive_of(b * size) == drive
            ]
            self._drive_ranges[drive] = ranges_or([runs])
        return self._drive_ranges[drive]

    def _attr(self, i: int, key: str) -> Any:
        o = self.store.overrides.get(i)
        return (o.attrs or {}).get(key) if o is not None else None

    def trashed(self, i: int) -> bool:
        flag = self._attr(i, "trashed")
        return (i < self.store.n_base and i % 10 == 9) if flag is None else bool(flag)

    def hidden(self, i: int) -> bool:
        return bool(self._attr(i, "hidden"))

    def visible(self, i: int) -> bool:
        """In the user's view: not permanently deleted and not out of reach (hide)."""
        return self.store.is_live(i) and not self.hidden(i)

    def apply(self, m: Mutation) -> dict[str, Any]:
        if m.entity != "files":
            raise InvalidRequest(f"google_drive: unknown entity {m.entity!r}")
        edit_options = frozenset({"modified_time", "hidden"}) if m.action == "edit" else frozenset()
        m.check("google_drive", "files", ACTIONS, edit_options)
        store, now = self.store, self.clock_ms()
        if m.ids is not None:
            indices = [self._index(x) for x in m.ids]
            if any(i is None or not store.is_live(i) for i in indices):
                raise InvalidRequest(f"google_drive: unknown file id in {m.ids}")
        else:
            indices = store.select([Group()], keep=self.visible).page("modified", False, 0, m.count)
        picks = [i for i in dict.fromkeys(indices) if i is not None]
        self._check_action(m.action, picks)
        created: list[int] = []
        modified: int | None = None
        if m.action == "edit":
            if not picks and not m.create:
                return {"ids": [], "created_ids": [], "modified_at": None}
            if m.modified_time_ms is None:
                modified, created = store.bump(picks, m.create, now)
            else:
                modified = m.modified_time_ms
                for i in picks:
                    store.set_time(i, modified).version += 1
                created = store.create(m.create, modified)
            for i in created if m.hidden else []:
                store.overrides[i].attrs = {"hidden": True}
        elif m.action in ("purge", "delete"):
            for i in picks:
                store.set_state(i, "purged", now)
        else:
            key, value = {"trash": ("trashed", True), "restore": ("trashed", False)}.get(
                m.action, ("hidden", m.action == "hide")
            )
            for i in picks:
                o = store.touch(i)
                o.attrs = {**(o.attrs or {}), key: value}
                o.rev += 1
        changed = [*picks, *created]
        self.record_changes(changed, now)
        return {
            "ids": [self.file_id(i) for i in changed],
            "created_ids": [self.file_id(i) for i in created],
            "modified_at": None if modified is None else gen.iso_ms(modified),
            "changed_at": gen.iso_ms(now),
        }

    def _check_action(self, action: str, picks: list[int]) -> None:
        needs: dict[str, tuple[str, Callable[[int], bool]]] = {
            "trash": ("not trashed", lambda i: not self.trashed(i)),
            "restore": ("trashed", self.trashed),
            "reveal": ("hidden", self.hidden),
            "hide": ("visible", lambda i: not self.hidden(i)),
        }
        if action in needs:
            what, ok = needs[action]
            bad = [self.file_id(i) for i in picks if not ok(i)]
            if bad:
                raise InvalidRequest(f"google_drive: {action} needs {what} files, not {bad}")

    def truth(self, entity: str) -> list[dict[str, Any]]:
        if entity != "files":
            raise InvalidRequest(f"google_drive: unknown entity {entity!r}")
        store = self.store
        if store.n_total > TRUTH_MAX:
            raise InvalidRequest(f"truth is refused for more than {TRUTH_MAX} records ({store.n_total})")
        return [
            {
                "id": self.file_id(i),
                "modified": gen.iso_ms(store.modified_ms(i)),
                "state": store.state(i) if not store.is_live(i) else ("trashed" if self.trashed(i) else "live"),
                "merged_into": None,
                "hidden": self.hidden(i),
                "driveId": None if (d := self.drive_of(i)) is None else self.drive_id(d),
            }
            for i in range(store.n_total)
        ]

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
        drive = self.drive_of(i)
        out: dict[str, Any] = {
            "kind": "drive#file",
            "id": file_id,
            "name": f"{title}.{extension}" if extension else title,
            "mimeType": mime,
            "createdTime": gen.iso_ms(created),
            "modifiedTime": "not-a-date" if file_id in self.faults.bad_records else gen.iso_ms(modified),
            "trashed": self.trashed(i),
            "version": str(1000 + (h >> 44) % 9000 + (o.rev if o else 0)),
            "parents": [f"0A{self._id_code}Fold{h % 7}" if drive is None else self.drive_id(drive)],
            "webViewLink": (
                f"https://docs.google.com/{kind}/d/{file_id}/edit"
                if not extension
                else f"https://drive.google.com/file/d/{file_id}/view"
            ),
        }
        if drive is None:  # shared-drive items have no owners
            out["owners"] = [
                {
                    "kind": "drive#user",
                    "displayName": f"{first} {last}",
                    "emailAddress": f"{first}.{last}@example.com".lower(),
                    "me": False,
                }
            ]
        else:
            out["driveId"] = self.drive_id(drive)
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
        return error(401, "Invalid Credentials", "authError", locationType="header", location="Authorization")

    def revoked_auth(self, req: SandboxRequest) -> Response:
        return json_response({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400)

    def rate_limited(self, retry_after_s: float | None) -> Response:
        if int(self.faults.extra.get("throttle_status") or 403) == 429:
            resp = error(429, "Rate Limit Exceeded", "rateLimitExceeded", "usageLimits")
        else:
            message = (
                "User Rate Limit Exceeded. Rate of requests for user exceed configured project quota. "
                "You may consider re-evaluating expected per-user traffic to the API and adjust project "
                "quota limits accordingly."
            )
            resp = error(
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
        return error(status, "The service is currently unavailable.", "backendError")

    # --- routes --------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/token", self._token, methods=["POST"])
        r.add_api_route("/drive/v3/files", self._list, methods=["GET"])
        r.add_api_route("/drive/v3/files/{file_id}", self._get, methods=["GET"])
        r.add_api_route("/drive/v3/drives", self._drives, methods=["GET"])
        r.add_api_route("/drive/v3/about", self._about, methods=["GET"])
        self.change_routes(r)
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

    def _corpus(self, query: dict[str, str], group: Group) -> tuple[Callable[[int], bool], bool] | Response:
        """Narrow `group` to the files ``corpora``/``driveId`` cover; returns (overlay filter, incompleteSearch)."""
        corpora, drive_id = query.get("corpora"), query.get("driveId")
        if corpora not in (None, "user", "domain", "drive", "allDrives"):
            return invalid("corpora")
        if (corpora == "drive") != (drive_id is not None):
            return error(
                400,
                "The driveId parameter must be specified if and only if corpora is set to drive.",
                "invalid",
                locationType="parameter",
                location="driveId",
            )
        if corpora in ("drive", "allDrives") and not _all_drives(query):
            return error(
                403,
                "The includeItemsFromAllDrives parameter must be set to true when driveId is specified or "
                "corpora contains drive or allDrives.",
                "teamDrivesParameterNotSupported",
                locationType="parameter",
                location="includeItemsFromAllDrives",
            )
        incomplete = corpora == "allDrives" and bool(self.faults.extra.get("incomplete_search"))
        if corpora in (None, "allDrives") and not incomplete:
            return self.visible, False
        drive = None
        if corpora == "drive":
            drive = self._drive_index(str(drive_id))
            if drive is None:
                return error(
                    404, f"Shared drive not found: {drive_id}", "notFound", locationType="parameter", location="driveId"
                )
        tail: Ranges = [(self.store.n_base, INF)] if drive is None else []  # created files live in My Drive
        group.idx = ranges_and(group.idx, ranges_or([self._ranges_of(drive), tail]))
        return (lambda i: self.visible(i) and self.drive_of(i) == drive), incomplete

    async def _about(self, request: Request) -> Response:
        """about.get: the user the token belongs to (``fields`` must name what to return, as on Drive)."""
        query = {k: (v[-1] if isinstance(v, list) else v) for k, v in parsed(request).query.items()}
        mask = parse_fields(query.get("fields") or "")
        if not query.get("fields") or mask is None:
            return invalid("fields", "The 'fields' parameter is required for this method.")
        credential = request.state.sandbox_identity.credential or ""
        user = {
            "kind": "drive#user",
            "permissionId": str(gen.account_number(credential, 20)),
            "emailAddress": "owner@example.com",
        }
        return json_response(apply_mask({"kind": "drive#about", "user": user}, mask))

    async def _drives(self, request: Request) -> Response:
        query = {k: (v[-1] if isinstance(v, list) else v) for k, v in parsed(request).query.items()}
        try:
            page_size = int(query.get("pageSize", 10))
        except ValueError:
            return invalid("pageSize")
        if not 1 <= page_size <= 100:
            return invalid("pageSize", f"Invalid value '{page_size}'. Values must be within the range: [1, 100]")
        offset = 0
        if "pageToken" in query:
            offset = _decode_token(query["pageToken"], "drives", "")
            if offset is None:
                return invalid("pageToken")
        chosen = range(offset, min(offset + page_size, self.n_drives))
        body: dict[str, Any] = {
            "kind": "drive#driveList",
            "drives": [{"kind": "drive#drive", "id": self.drive_id(d), "name": self.drive_name(d)} for d in chosen],
        }
        if chosen.stop < self.n_drives:
            body["nextPageToken"] = _encode_token(chosen.stop, "drives", "")
        mask = parse_fields(query.get("fields") or "*")
        if mask is None:
            return invalid("fields")
        return json_response(apply_mask(body, mask))

    async def _list(self, request: Request) -> Response:
        query = {k: (v[-1] if isinstance(v, list) else v) for k, v in parsed(request).query.items()}
        q = query.get("q", "")
        try:
            page_size = int(query.get("pageSize", 100))
        except ValueError:
            return invalid("pageSize")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            return invalid("pageSize", f"Invalid value '{page_size}'. Values must be within the range: [1, 1000]")
        group = _parse_q(q, self.trashed)
        if group is None:
            return invalid("q")
        order = query.get("orderBy", "").strip()
        if order not in ("", "modifiedTime", "modifiedTime asc", "modifiedTime desc"):
            return error(
                400,
                "Sorting is not supported for this field.",
                "badRequest",
                locationType="parameter",
                location="orderBy",
            )
        mask = parse_fields(query.get("fields") or DEFAULT_FIELDS)
        if mask is None:
            return invalid("fields")
        scope = self._corpus(query, group)
        if isinstance(scope, Response):
            return scope
        keep, incomplete = scope
        offset = 0
        if "pageToken" in query:
            offset = _decode_token(query["pageToken"], q + _scope(query), order)
            if offset is None:
                return invalid("pageToken")
        selection = self.store.select([group], keep=keep)
        by = "modified" if order else "index"
        indices = selection.page(by, order.endswith("desc"), offset, page_size)
        body: dict[str, Any] = {
            "kind": "drive#fileList",
            "incompleteSearch": incomplete,
            "files": [self.file(i) for i in indices],
        }
        if offset + len(indices) < selection.total:
            body["nextPageToken"] = _encode_token(offset + len(indices), q + _scope(query), order)
        return json_response(apply_mask(body, mask))

    async def _get(self, file_id: str, request: Request) -> Response:
        """files.get: a file in the user's view (trashed ones too); 404 ``notFound`` for one permanently
        deleted or out of reach, as Drive answers."""
        query = {k: (v[-1] if isinstance(v, list) else v) for k, v in parsed(request).query.items()}
        mask = parse_fields(query.get("fields") or "kind,id,name,mimeType")
        if mask is None:
            return invalid("fields")
        i = self._index(file_id)
        if i is None or not self.visible(i):
            return error(404, f"File not found: {file_id}.", "notFound", locationType="parameter", location="fileId")
        return json_response(apply_mask(self.file(i), mask))


def _scope(query: dict[str, str]) -> str:
    """What besides q and orderBy a page token is bound to (empty without corpora/driveId: tokens unchanged)."""
    if "corpora" not in query and "driveId" not in query:
        return ""
    return f"\n{query.get('corpora', '')}\n{query.get('driveId', '')}"


def _all_drives(query: dict[str, str]) -> bool:
    return query.get("includeItemsFromAllDrives", "false").lower() == "true"


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
