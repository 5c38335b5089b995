"""What every vendor simulator shares: the Vendor base class and its per-vendor state
(fault settings, request log, rate limiter, OAuth token store)."""

from __future__ import annotations

import json
import math
import random
import secrets
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, ClassVar

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .store import LIVE, EntityStore, Override

if TYPE_CHECKING:
    from collections.abc import Callable

    from .mutation import Mutation

LOG_CAP = 200_000  # oldest request-log entries are dropped beyond this (benchmarks send millions)
TRUTH_MAX = 50_000  # GET /_sandbox/{vendor}/truth refuses larger entities


class InvalidRequest(ValueError):
    """A control or vendor request the simulator rejects with 400."""


def now_ms() -> float:
    return time.time() * 1000


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # json.dumps straight to bytes: FastAPI's encoder is several times slower on large pages.
    return Response(json.dumps(body, separators=(",", ":")), status, headers, media_type="application/json")


@dataclass
class SandboxRequest:
    """A vendor request as the gate sees it, before routing."""

    method: str
    path: str  # full path as received, e.g. /hubspot/crm/v3/objects/deals
    subpath: str  # path below the vendor prefix, e.g. /crm/v3/objects/deals
    query: dict[str, str | list[str]]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, form dict, raw text, or None

    def bearer(self) -> str | None:
        auth = self.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None


def parsed(request: Request) -> SandboxRequest:
    """The gate's parsed view of this request (query as str | list, body as JSON/form), for handlers."""
    return request.state.sandbox_request


def rate_remaining(request: Request) -> int | None:
    """Requests left in the caller's window, when the simulator is enforcing a limit."""
    return getattr(request.state, "sandbox_rate_remaining", None)


@dataclass
class Identity:
    credential: str | None  # stable key for logs and rate limits; None if unidentifiable
    authenticated: bool


FAULT_KEYS = {
    "rate_429",
    "retry_after_s",
    "rate_5xx",
    "status_5xx",
    "latency_ms",
    "bad_records",
    "next_429",
    "next_5xx",
    "next_truncated",
    "next_html",
    "revoke",
    "clock_offset_s",
    "mutate_after_requests",
    "outage_after_requests",
}


@dataclass
class Faults:
    rate_429: float = 0.0
    retry_after_s: float | None = None
    rate_5xx: float = 0.0
    status_5xx: int = 503
    latency_ms: float = 0.0
    bad_records: set[str] = field(default_factory=set)
    next_429: int = 0
    next_5xx: int = 0
    # Passing faults of the network and of proxies in front of every vendor: the next N data requests have
    # their body cut off mid-transfer (the connection drops after half the promised bytes), or are answered
    # 200 with an HTML page where JSON belongs (a gateway's or maintenance page).
    next_truncated: int = 0
    next_html: int = 0
    revoke: bool = False
    clock_offset_s: float = 0.0  # the vendor's clock runs this far ahead of the machine's (negative: behind)
    # {"after", "mutation", "path_contains"} plus progress: "served", "fired", "result", "error"
    mutate_after_requests: list[dict[str, Any]] = field(default_factory=list)
    # A vendor outage part-way through a read: after this many successful data requests (counted from when
    # it is set), every data request answers 5xx (``status_5xx``) until the setting is cleared.
    outage_after_requests: int | None = None
    served: int = 0  # successful data requests since outage_after_requests was set
    # Vendor-specific settings (a Vendor's ``extra_fault_keys``), interpreted by that vendor's routes.
    extra: dict[str, Any] = field(default_factory=dict)

    def merge(self, patch: dict[str, Any]) -> None:
        for key, value in patch.items():
            if key not in FAULT_KEYS:
                if value is None:
                    self.extra.pop(key, None)
                else:
                    self.extra[key] = value
            elif key == "bad_records":
                self.bad_records = {str(v) for v in value or []}
            elif key == "retry_after_s":
                self.retry_after_s = None if value is None else float(value)
            elif key in ("next_429", "next_5xx", "next_truncated", "next_html", "status_5xx"):
                setattr(self, key, int(value or 0) if key != "status_5xx" else int(value or 503))
            elif key == "revoke":
                self.revoke = bool(value)
            elif key == "outage_after_requests":
                self.outage_after_requests, self.served = (None if value is None else int(value)), 0
            elif key == "mutate_after_requests":  # validated by the control API (sandbox.mutation)
                progress = {"served": 0, "fired": False, "result": None, "error": None}
                self.mutate_after_requests = [{**t, **progress} for t in value or []]
            else:
                setattr(self, key, float(value or 0))

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d["bad_records"] = sorted(self.bad_records)
        return {**d, **self.extra}


class RequestLog:
    def __init__(self) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=LOG_CAP)
        self._cleared_ms = 0.0

    def add(self, entry: dict[str, Any]) -> None:
        # A request still in flight at a clear (a slow one, say) belongs to the log before it.
        if entry["ts_ms"] >= self._cleared_ms:
            self._entries.append(entry)

    def since(self, since_ms: float | None) -> list[dict[str, Any]]:
        # Entries are appended on completion; ordering by arrival time is what callers reason about.
        out = [e for e in self._entries if since_ms is None or e["ts_ms"] >= since_ms]
        out.sort(key=lambda e: e["ts_ms"])
        return out

    def clear(self) -> None:
        self._entries.clear()
        self._cleared_ms = time.time() * 1000


class SlidingWindowLimiter:
    """At most `limit` accepted requests per credential in any rolling `window_s` seconds."""

    def __init__(self, limit: int | None, window_s: float):
        self.limit, self.window_s = limit, window_s
        self._hits: dict[str, deque[float]] = {}

    def configure(self, limit: int | None, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._hits.clear()

    def hit(self, credential: str, at: float) -> tuple[bool, int]:
        """Record a request at `at` (epoch s) if allowed; returns (allowed, remaining)."""
        if self.limit is None:
            return True, 0
        q = self._hits.setdefault(credential, deque())
        while q and q[0] <= at - self.window_s:
            q.popleft()
        if len(q) >= self.limit:
            return False, 0  # rejected requests do not count, so a client that backs off recovers
        q.append(at)
        return True, self.limit - len(q)

    def wait_s(self, credential: str, at: float) -> float:
        """Seconds until the credential's oldest counted request leaves the window (0 if none)."""
        q = self._hits.get(credential)
        return max(q[0] + self.window_s - at, 0.0) if q else 0.0

    def clear(self) -> None:
        self._hits.clear()


class RenderCache:
    """Rendered records by (namespace, index, version), bounded. Inner keys are ints, not tuples, so
    a few hundred thousand entries add no work for the garbage collector."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._maps: dict[Hashable, dict[int, str]] = {}
        self._size = 0

    def get(self, namespace: Hashable, index: int, version: int) -> str | None:
        m = self._maps.get(namespace)
        return m.get(index << 24 | version) if m is not None else None

    def put(self, namespace: Hashable, index: int, version: int, value: str) -> None:
        if self._size >= self.capacity:
            self.clear()  # crude eviction: a re-read just renders again
        self._maps.setdefault(namespace, {})[index << 24 | version] = value
        self._size += 1

    def clear(self) -> None:
        self._maps.clear()
        self._size = 0


@dataclass
class IssuedToken:
    credential: str
    expires_at: float  # epoch s
    valid: bool = True


class TokenStore:
    """Opaque access tokens mapped to the credential that obtained them."""

    def __init__(self) -> None:
        self._tokens: dict[str, IssuedToken] = {}

    def issue(self, credential: str, ttl_s: float, prefix: str = "") -> str:
        token = prefix + secrets.token_urlsafe(48)
        self._tokens[token] = IssuedToken(credential, time.time() + ttl_s)
        return token

    def lookup(self, token: str | None) -> Identity:
        issued = self._tokens.get(token or "")
        if issued is None:
            return Identity(None, False)
        return Identity(issued.credential, issued.valid and time.time() < issued.expires_at)

    def expire_all(self) -> None:
        for t in self._tokens.values():
            t.valid = False

    def clear(self) -> None:
        self._tokens.clear()


@dataclass(frozen=True)
class OAuthCredential:
    """An OAuth app's client id/secret and a refresh token, as a vendor hands them to one tenant."""

    client_id: str
    client_secret: str
    refresh_token: str

    def as_dict(self) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret, "refresh_token": self.refresh_token}


class OAuthApps:
    """The refresh-token credentials a vendor has issued, found by refresh token or client id."""

    def __init__(self, *issued: OAuthCredential) -> None:
        self._by_refresh_token: dict[str, OAuthCredential] = {}
        self._client_ids: set[str] = set()
        for credential in issued:
            self.issue(credential)

    def issue(self, credential: OAuthCredential) -> OAuthCredential:
        self._by_refresh_token[credential.refresh_token] = credential
        self._client_ids.add(credential.client_id)
        return credential

    def by_refresh_token(self, refresh_token: str) -> OAuthCredential | None:
        return self._by_refresh_token.get(refresh_token)

    def knows_client(self, client_id: object) -> bool:
        return client_id in self._client_ids


class Vendor(ABC):
    """One simulated vendor API, mounted at /{name}.

    A subclass supplies the dataset (reset/mutate), its routes, how requests are identified, and the
    vendor's own error bodies; the gate (sandbox.gate) applies faults, auth, limits and logging
    uniformly using those hooks.
    """

    name: ClassVar[str]
    default_sizes: ClassVar[dict[str, int]]
    default_limit: ClassVar[tuple[int | None, float]] = (None, 1.0)  # (requests, window seconds)
    # Fault settings only this vendor understands (kept in ``faults.extra``), e.g. GraphQL-level errors.
    extra_fault_keys: ClassVar[frozenset[str]] = frozenset()
    # Whether the vendor tells a client over its limit when to come back (Retry-After or equivalent).
    retry_after_when_limited: ClassVar[bool] = False

    def __init__(self) -> None:
        self.faults = Faults()
        self.log = RequestLog()
        self.tokens = TokenStore()
        self.limiter = SlidingWindowLimiter(*self.default_limit)
        self.enforce_limits = True
        self.seed = 0
        self.fault_rng = random.Random(0)

    def reset_state(self, seed: int, sizes: dict[str, int], enforce_limits: bool) -> None:
        """Clear everything mutable, then let the subclass rebuild its dataset."""
        self.seed, self.enforce_limits = seed, enforce_limits
        self.faults = Faults()
        self.log.clear()
        self.tokens.clear()
        self.limiter.configure(*self.default_limit)
        self.fault_rng = random.Random(f"{seed}:{self.name}:faults")
        self.reset(seed, {**self.default_sizes, **sizes})

    # --- dataset -------------------------------------------------------------------------------
    @abstractmethod
    def reset(self, seed: int, sizes: dict[str, int]) -> None:
        """Rebuild the deterministic dataset; `sizes` has every entity in default_sizes."""

    @abstractmethod
    def apply(self, m: Mutation) -> dict[str, Any]:
        """Apply a control-API mutation now (vendor clock); returns {"ids", "created_ids", "modified_at", ...}.
        Raise InvalidRequest for an unknown entity/id or an action the vendor does not have."""

    def mutate(self, entity: str, count: int, ids: list[str] | None, create: int) -> dict[str, Any]:
        """Edit `count` records (or `ids`) and create `create` new ones: `apply` with action "edit"."""
        from .mutation import Mutation

        return self.apply(Mutation(entity, count, ids, create))

    @abstractmethod
    def truth(self, entity: str) -> list[dict[str, Any]]:
        """Every record of `entity` as the vendor knows it, ignoring visibility knobs:
        [{"id", "modified", "state", "merged_into"}]; InvalidRequest if unknown or over TRUTH_MAX records."""

    # --- the vendor's clock --------------------------------------------------------------------
    def clock_ms(self) -> int:
        """Now on the vendor's clock: the machine's plus the ``clock_offset_s`` fault."""
        return int(time.time() * 1000 + self.faults.clock_offset_s * 1000)

    def http_date(self) -> str:
        """The RFC 7231 Date header value for now on the vendor's clock (whole seconds, floored)."""
        return formatdate(math.floor(self.clock_ms() / 1000), usegmt=True)

    def normalize_faults(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Check/convert vendor-only fault values before they are stored (InvalidRequest on bad ones)."""
        return patch

    def is_failure_body(self, head: bytes) -> bool:
        """Whether a 2xx response whose body starts with `head` is an error (GraphQL errors come as 200)."""
        return False

    # --- wire ----------------------------------------------------------------------------------
    @abstractmethod
    def router(self) -> APIRouter:
        """Routes relative to the vendor prefix (the app mounts them under /{name})."""

    @abstractmethod
    def connection(self, base_url: str, tenant: str) -> dict[str, Any]:
        """{"credentials": {...}, "config": {"base_url": base_url, ...}} for a stored connection."""

    @abstractmethod
    def identify(self, req: SandboxRequest) -> Identity:
        """Who is calling (credential key) and whether a data request is authenticated."""

    def is_auth_endpoint(self, req: SandboxRequest) -> bool:
        """Token endpoints: exempt from faults except `revoke`, and from rate limits."""
        return False

    @abstractmethod
    def unauthorized(self, req: SandboxRequest) -> Response:
        """The vendor's answer to a data request with a missing/invalid/expired/revoked credential."""

    def revoked_auth(self, req: SandboxRequest) -> Response:
        """The token endpoint's answer while the credential is revoked."""
        return self.unauthorized(req)

    @abstractmethod
    def rate_limited(self, retry_after_s: float | None) -> Response:
        """The vendor's 429 (headers per vendor; Retry-After only when given)."""

    @abstractmethod
    def server_error(self, status: int) -> Response:
        """A plausible 5xx of this vendor."""

    def rate_limit_headers(self, remaining: int | None) -> dict[str, str]:
        """Headers a successful response may carry; the vendor's routes decide where to use them."""
        return {}

    # --- control helpers -----------------------------------------------------------------------
    def set_limit(self, limit: int | None, window_s: float | None) -> None:
        self.limiter.configure(limit, window_s if window_s is not None else self.default_limit[1])


def truth_rows(
    store: EntityStore,
    rid: Callable[[int], str],
    iso: Callable[[int], str],
    state_of: Callable[[Override | None], str] | None = None,
) -> list[dict[str, Any]]:
    """Every record of a store as {"id", "modified", "state", "merged_into"} (the control API's truth)."""
    if store.n_total > TRUTH_MAX:
        raise InvalidRequest(f"truth is refused for more than {TRUTH_MAX} records ({store.n_total})")
    out = []
    for i in range(store.n_total):
        o = store.overrides.get(i)
        if o is None and i >= store.n_base:
            continue
        merged = o.merged_into if o is not None else None
        state = state_of(o) if state_of is not None else (o.state if o is not None else LIVE)
        out.append(
            {
                "id": rid(i),
                "modified": iso(store.modified_ms(i)),
                "state": state,
                "merged_into": None if merged is None else rid(merged),
            }
        )
    return out
