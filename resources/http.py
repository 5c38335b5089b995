"""The HTTP machinery every vendor client shares: session, timeouts, rate limit, retries, auth refresh,
and how an error response is understood.

A vendor client subclasses ``VendorClient`` and declares what is truly its own: ``authorize`` (headers),
``refresh_auth`` (a new token after a 401 or expiry), ``extract_error`` (its error body's code, message
and retry hint) and ``error_rules`` (which status and code mean throttling, a passing fault, an expired
session, an empty result or an expired cursor: vendors signal these differently). Everything else,
including retrying bodies that arrive truncated or as an HTML page, lives here once.
"""

from __future__ import annotations

import email.utils
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import orjson
import requests
from pydantic import BaseModel, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from resources import egress
from resources.endpoints import vendor_egress_policy
from resources.rate_limit import Limiter

MAX_RETRY_AFTER_S = 300.0
ModelT = TypeVar("ModelT", bound=BaseModel)


class VendorError(RuntimeError):
    """A vendor call failed for good. The message names the vendor, the call and the vendor's cause,
    never credentials."""

    def __init__(self, vendor: str, message: str, status: int | None = None, code: str | None = None):
        self.vendor, self.status, self.code = vendor, status, code
        super().__init__(f"[{vendor}] {message}")


class RetryableError(Exception):
    """Raised inside the retry loop for throttling (429 and vendor equivalents) and transient faults."""

    def __init__(
        self, kind: str, status: int | None, detail: str, retry_after_s: float | None = None, code: str | None = None
    ):
        self.kind, self.status, self.detail, self.retry_after_s, self.code = kind, status, detail, retry_after_s, code
        super().__init__(detail)

    def describe(self) -> str:
        if self.kind == "throttled":
            # A GraphQL vendor throttles inside a 200: its code says more than the status.
            reason = self.code if self.code and (self.status or 0) < 300 else self.status
            return f"Rate limited ({reason})" if reason else "Rate limited"
        if self.status is None:
            return "Connection error"
        return f"Server error ({self.status})" if self.status >= 500 else f"Unreadable response ({self.status})"


class AuthExpired(Exception):
    """The access token was refused; refresh it and repeat the call once."""


class NoResults(Exception):
    """The vendor answered "nothing matched" with an error status (Gong's 404): an empty result."""


class CursorExpired(Exception):
    """The vendor no longer knows a paging cursor (monday's expire after 60 minutes)."""


class Outcome(StrEnum):
    THROTTLED = "throttled"  # slow down: retried after the vendor's hint, else the backoff
    TRANSIENT = "transient"  # a passing fault: retried with backoff
    AUTH = "auth"  # the access token was refused: refreshed, and the call repeated once
    EMPTY = "empty"  # "nothing matched", sent as an error
    CURSOR_EXPIRED = "cursor_expired"
    FINAL = "final"  # the call fails


@dataclass(frozen=True)
class ErrorRule:
    """Which responses mean ``outcome``: any of ``statuses`` (all when empty) whose vendor code is ``code``
    (compared case- and separator-blind; any when None) and whose message contains ``message``."""

    outcome: Outcome
    statuses: range | tuple[int, ...] = ()
    code: str | None = None
    message: str | None = None

    def matches(self, status: int, fault: VendorFault | None) -> bool:
        if self.statuses and status not in self.statuses:
            return False
        if self.code is not None and (fault is None or normalised(fault.code) != normalised(self.code)):
            return False
        return self.message is None or (fault is not None and self.message in (fault.message or ""))


@dataclass(frozen=True)
class VendorFault:
    """What a vendor's error body says: its code, message and, when it gives one, when to retry."""

    code: str | None = None
    message: str | None = None
    retry_after_s: float | None = None


def normalised(code: str | None) -> str:
    """COMPLEXITY_BUDGET_EXHAUSTED and complexityBudgetExhausted are the same code."""
    return "".join(ch for ch in (code or "").lower() if ch.isalnum())


# What every vendor means by these statuses, unless its own rules (checked first) say otherwise.
DEFAULT_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(Outcome.THROTTLED, (429,)),
    ErrorRule(Outcome.AUTH, (401,)),
    ErrorRule(Outcome.TRANSIENT, range(500, 600)),
)


@dataclass(frozen=True)
class RetrySettings:
    max_retries: int = 3
    backoff_base_s: float = 2.0
    max_backoff_s: float = 60.0
    timeout_s: float = 30.0


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` is either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class VendorClock:
    """The vendor's own time, read from the ``Date`` header of its responses: how a sync knows when, by
    the vendor's clock, a read began (the worker's clock may be off by any amount).

    ``mark()`` starts a read; ``read_start()`` is then the ``Date`` of the first response after it, and
    ``now()`` that of the latest. The header has whole seconds, floored, so it is never later than the
    moment the vendor served the request. Without one, the worker's clock stands in."""

    def __init__(self) -> None:
        self._marked_at = datetime.now(UTC)
        self._first: datetime | None = None
        self._latest: datetime | None = None

    def mark(self) -> None:
        self._marked_at = datetime.now(UTC)
        self._first = None

    def observe(self, date_header: str | None) -> None:
        if not date_header:
            return
        try:
            parsed = email.utils.parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            return
        self._latest = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if self._first is None:
            self._first = self._latest

    def read_start(self) -> datetime:
        return self._first or self._marked_at

    def now(self) -> datetime:
        return self._latest or datetime.now(UTC)

    def now_at_latest(self) -> datetime:
        """A moment not before the vendor's time at its latest response: ``now()`` plus the second the
        header's flooring may have dropped. The end of a window that must include what happened up to then."""
        return self.now() + timedelta(seconds=1) if self._latest else self.now()


def body_summary(response: requests.Response) -> str:
    """What an error message may say of a body that is not the vendor's structured error: its type and size."""
    kind = response.headers.get("Content-Type", "").split(";")[0] or "unknown type"
    return f"unrecognised error body ({kind}, {len(response.content)} bytes)"


class VendorClient:
    vendor = "Vendor"
    # How this vendor's error responses map to outcomes, checked before DEFAULT_RULES.
    error_rules: ClassVar[tuple[ErrorRule, ...]] = ()
    # GraphQL vendors report errors inside 2xx bodies: every body is checked, not only error statuses.
    errors_in_success_bodies: ClassVar[bool] = False

    def __init__(
        self,
        base_url: str,
        limiter: Limiter,
        retry: RetrySettings,
        log: logging.Logger | Any | None = None,
        *,
        credentials: Mapping[str, Any] | None = None,
        destinations: egress.Destinations | None = None,
        egress_policy: egress.EgressPolicy | None = None,
        max_response_bytes: int = egress.DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.credentials: Mapping[str, Any] = credentials or {}
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.retry = retry
        self.log = log or logging.getLogger(f"sync.{self.vendor.lower()}")
        # Every call goes through the egress guard, and only to the vendor's hosts (base_url's, by default).
        self.destinations = destinations or egress.Destinations.origin_of(self.base_url, self.vendor)
        self.session = egress.guarded_session(
            egress_policy or vendor_egress_policy(), self.destinations, max_response_bytes
        )
        # requests reads the proxy and CA variables (and ~/.netrc) again on every call, about 0.6 ms of
        # CPU each; read them once instead: the CA bundle here, the proxies per host (_proxies_for).
        self.session.trust_env = False
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._proxies_by_host: dict[str, dict[str, str]] = {}
        self.clock = VendorClock()
        # Running totals a sync reads before and after each entity (sync_assets/entity_read.py).
        self.api_calls = 0
        self.throttled_calls = 0  # responses the vendor answered with throttling, each then retried
        self.retries = 0  # every retried attempt: throttling, passing faults and undecodable bodies
        self.rate_limit_wait_s = 0.0  # time spent waiting for our own limiter's slots

    # --- hooks ----------------------------------------------------------------------------------

    def authorize(self, headers: dict[str, str]) -> None:
        """Add auth headers to a request."""

    def refresh_auth(self) -> None:
        """Obtain a fresh access token. Raise VendorError if the credential is revoked."""
        raise AuthExpired()

    def account_identity(self) -> str | None:
        """The vendor account these credentials read (portal, org, user), when the vendor says; sync state
        is kept per account, so re-pointing a connection at another account starts with a full sync."""
        return None

    def extract_error(self, response: requests.Response) -> VendorFault | None:
        """The vendor's code, message and retry hint from an error body; None when the body is not the
        vendor's structured error (only its type and size are then reported, never the body)."""
        return None

    def describe(self, response: requests.Response, fault: VendorFault | None) -> str:
        """The error as sync_log and webhooks show it: status, the vendor's code, the call, its message."""
        where = f"{response.request.method} {self._path(response.url)}"
        if fault is None:
            return f"HTTP {response.status_code} on {where}: {body_summary(response)}"
        code = f" {fault.code}" if fault.code else ""
        return f"HTTP {response.status_code}{code} on {where}: {fault.message or ''}".rstrip(": ")

    # --- the call -------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        authorized: bool = True,
    ) -> requests.Response:
        """One logical call: rate-limited, retried on throttling and passing faults, re-authorised once."""
        return self._call(_Call(method, path, params, json, data, headers, authorized), decode=None)

    def request_json(self, method: str, path: str, *, model: type[ModelT] | None = None, **options: Any) -> Any:
        """``request`` (same options), decoding the JSON body (into ``model`` when given) inside the retries:
        a body cut short, or an HTML page where JSON belongs (a proxy's error page), is a passing fault."""
        decode = (lambda body: model.model_validate_json(body)) if model is not None else orjson.loads
        call = _Call(method, path, **{"authorized": True, **dict.fromkeys(_OPTIONS), **options})
        return self._call(call, decode=decode)

    def _call(self, call: _Call, decode: Callable[[bytes], Any] | None) -> Any:
        refreshed = False
        while True:
            try:
                return self._with_retries(call, decode)
            except AuthExpired:
                if refreshed or not call.authorized:
                    raise VendorError(self.vendor, f"authentication failed on {call.method} {call.path}", 401) from None
                refreshed = True
                self.log.info(f"[{self.vendor} Client] Access token expired, refreshing")
                self.refresh_auth()

    def _with_retries(self, call: _Call, decode: Callable[[bytes], Any] | None) -> Any:
        retrying = Retrying(
            stop=stop_after_attempt(self.retry.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(RetryableError),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    response = self._send(call)
                    return response if decode is None else self._decoded(response, decode)
        except RetryableError as exc:
            raise VendorError(
                self.vendor,
                f"{exc.describe()} on {call.method} {call.path}; gave up after {self.retry.max_retries} retries: "
                f"{exc.detail}",
                status=exc.status,
            ) from None
        raise AssertionError("unreachable")

    def _decoded(self, response: requests.Response, decode: Callable[[bytes], Any]) -> Any:
        try:
            return decode(response.content)
        except ValidationError:
            if json_body(response) is not None:
                raise  # well-formed JSON of another shape: the vendor's answer, not a passing fault
        except ValueError:
            pass
        kind = response.headers.get("Content-Type", "").split(";")[0] or "unknown type"
        detail = f"undecodable body ({kind}, {len(response.content)} bytes)"
        raise RetryableError("transient", response.status_code, detail)

    def _send(self, call: _Call) -> requests.Response:
        headers = dict(call.headers or {})
        if call.authorized:
            self.authorize(headers)
        self.wait_for_slot(self.limiter)
        self.api_calls += 1
        url = self.url(call.path)
        try:
            response = self.session.request(
                call.method,
                url,
                proxies=self._proxies_for(url),
                params=call.params,
                json=call.json,
                data=call.data,
                headers=headers,
                timeout=self.retry.timeout_s,
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            # Refused, reset, timed out, or cut off mid-body: a passing fault.
            raise RetryableError("transient", None, type(exc).__name__) from None
        self.clock.observe(response.headers.get("Date"))
        self.classify(response)
        return response

    def wait_for_slot(self, limiter: Limiter) -> None:
        """Pass ``limiter`` (a vendor's extra scope limiter too), adding the time it held the call back to
        ``rate_limit_wait_s``: measured around the whole acquire, the slot reservation's round trip included."""
        waiting_since = time.monotonic()
        limiter.acquire()
        self.rate_limit_wait_s += time.monotonic() - waiting_since

    def classify(self, response: requests.Response) -> None:
        """Raise what the response means when it is not a success: RetryableError, AuthExpired, NoResults,
        CursorExpired or VendorError, by the vendor's rules, then the defaults."""
        if response.status_code < 400 and not self.errors_in_success_bodies:
            return
        fault = self.extract_error(response)
        if response.status_code < 400 and fault is None:
            return
        outcome = next(
            (r.outcome for r in (*self.error_rules, *DEFAULT_RULES) if r.matches(response.status_code, fault)),
            Outcome.FINAL,
        )
        retry_after = fault.retry_after_s if fault is not None and fault.retry_after_s is not None else None
        if outcome in (Outcome.THROTTLED, Outcome.TRANSIENT):
            hint = retry_after if retry_after is not None else parse_retry_after(response.headers.get("Retry-After"))
            # The give-up message names the call itself; the vendor's reason is enough here.
            reason = f"{fault.code}: {fault.message}" if fault and fault.code else fault.message if fault else None
            detail = reason or body_summary(response)
            raise RetryableError(outcome.value, response.status_code, detail, hint, fault.code if fault else None)
        detail = self.describe(response, fault)
        if outcome is Outcome.AUTH:
            raise AuthExpired()
        if outcome is Outcome.EMPTY:
            raise NoResults(detail)
        if outcome is Outcome.CURSOR_EXPIRED:
            raise CursorExpired(fault.message if fault else detail)
        raise VendorError(self.vendor, detail, status=response.status_code, code=fault.code if fault else None)

    def _proxies_for(self, url: str) -> dict[str, str]:
        """HTTP(S)_PROXY / NO_PROXY from the environment, as requests would apply them to ``url``."""
        host = urlsplit(url).netloc
        if host not in self._proxies_by_host:
            self._proxies_by_host[host] = requests.utils.get_environ_proxies(url)
        return self._proxies_by_host[host]

    # --- retry timing and logging ----------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after_s is not None:
            return exc.retry_after_s
        return min(self.retry.backoff_base_s * 2 ** (state.attempt_number - 1), self.retry.max_backoff_s)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay_ms = round((state.next_action.sleep if state.next_action else 0) * 1000)
        label = exc.describe() if isinstance(exc, RetryableError) else "Error"
        self.retries += 1
        if isinstance(exc, RetryableError) and exc.kind == "throttled":
            self.throttled_calls += 1
        self.log.warning(f"[{self.vendor} Client] {label}, retrying in {delay_ms}ms")

    def _path(self, url: str) -> str:
        """The call's path for messages: below the base URL, and never its query (it can carry a query's text)."""
        bare = url.split("?")[0]
        return bare[len(self.base_url) :] if bare.startswith(self.base_url) else bare


_OPTIONS = ("params", "json", "data", "headers")


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: Mapping[str, Any] | None
    json: Any
    data: Any
    headers: Mapping[str, str] | None
    authorized: bool


def json_body(response: requests.Response) -> Any:
    """The decoded JSON of an error response, or None when it is not JSON."""
    try:
        return orjson.loads(response.content)
    except ValueError:
        return None
