"""The HTTP machinery every vendor client shares: session, timeouts, rate limit, retries, auth refresh.

Vendor clients subclass ``VendorClient`` and override three hooks: ``authorize`` (headers),
``refresh_auth`` (a new token after a 401/expiry) and ``classify`` (which responses mean throttling,
a transient fault or an expired session, since vendors signal these differently).
"""

from __future__ import annotations

import email.utils
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from resources.rate_limit import CredentialLimiter

MAX_RETRY_AFTER_S = 300.0


class VendorError(RuntimeError):
    """A vendor call failed for good. The message names the vendor, the call and the vendor's cause,
    never credentials."""

    def __init__(self, vendor: str, message: str, status: int | None = None, code: str | None = None):
        self.vendor, self.status, self.code = vendor, status, code
        super().__init__(f"[{vendor}] {message}")


class RetryableError(Exception):
    """Raised inside the retry loop for throttling (429 and vendor equivalents) and transient faults."""

    def __init__(self, kind: str, status: int | None, detail: str, retry_after_s: float | None = None):
        self.kind, self.status, self.detail, self.retry_after_s = kind, status, detail, retry_after_s
        super().__init__(detail)

    def describe(self) -> str:
        if self.kind == "throttled":
            return f"Rate limited ({self.status})" if self.status else "Rate limited"
        return f"Server error ({self.status})" if self.status else "Connection error"


class AuthExpired(Exception):
    """The access token was refused; refresh it and repeat the call once."""


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


class VendorClient:
    vendor = "Vendor"

    def __init__(
        self,
        base_url: str,
        limiter: CredentialLimiter,
        retry: RetrySettings,
        log: logging.Logger | Any | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.retry = retry
        self.log = log or logging.getLogger(f"sync.{self.vendor.lower()}")
        self.session = requests.Session()
        # requests reads the proxy and CA variables (and ~/.netrc) again on every call, about 0.6 ms of
        # CPU each; read them once instead: the CA bundle here, the proxies per host (_proxies_for).
        self.session.trust_env = False
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._proxies_by_host: dict[str, dict[str, str]] = {}
        self.api_calls = 0
        self.throttled_calls = 0

    # --- hooks ----------------------------------------------------------------------------------

    def authorize(self, headers: dict[str, str]) -> None:
        """Add auth headers to a request."""

    def refresh_auth(self) -> None:
        """Obtain a fresh access token. Raise VendorError if the credential is revoked."""
        raise AuthExpired()

    def classify(self, response: requests.Response) -> None:
        """Raise RetryableError, AuthExpired or VendorError for a response that is not a success."""
        status = response.status_code
        if status == 429:
            raise RetryableError("throttled", 429, self.error_detail(response), self._retry_after(response))
        if status >= 500:
            raise RetryableError("transient", status, self.error_detail(response), self._retry_after(response))
        if status == 401:
            raise AuthExpired()
        if status >= 400:
            raise VendorError(self.vendor, self.error_detail(response), status=status)

    def error_detail(self, response: requests.Response) -> str:
        body = response.text[:500]
        return f"HTTP {response.status_code} on {response.request.method} {self._path(response.url)}: {body}"

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
        """One logical call: rate-limited, retried on throttling/5xx, re-authorised once on 401."""
        refreshed = False
        while True:
            try:
                return self._with_retries(method, path, params, json, data, headers, authorized)
            except AuthExpired:
                if refreshed or not authorized:
                    raise VendorError(self.vendor, f"authentication failed on {method} {path}", 401) from None
                refreshed = True
                self.log.info(f"[{self.vendor} Client] Access token expired, refreshing")
                self.refresh_auth()

    def _with_retries(self, method, path, params, json, data, headers, authorized) -> requests.Response:
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
                    return self._send(method, path, params, json, data, headers, authorized)
        except RetryableError as exc:
            raise VendorError(
                self.vendor,
                f"{exc.describe()} on {method} {path}; gave up after {self.retry.max_retries} retries: {exc.detail}",
                status=exc.status,
            ) from None
        raise AssertionError("unreachable")

    def _send(self, method, path, params, json, data, headers, authorized) -> requests.Response:
        all_headers = dict(headers or {})
        if authorized:
            self.authorize(all_headers)
        self.limiter.acquire()
        self.api_calls += 1
        url = self.url(path)
        try:
            response = self.session.request(
                method,
                url,
                proxies=self._proxies_for(url),
                params=params,
                json=json,
                data=data,
                headers=all_headers,
                timeout=self.retry.timeout_s,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RetryableError("transient", None, f"{type(exc).__name__} on {method} {path}") from None
        if response.status_code < 400:
            self.classify_success(response)
            return response
        self.classify(response)
        raise VendorError(self.vendor, self.error_detail(response), status=response.status_code)

    def _proxies_for(self, url: str) -> dict[str, str]:
        """HTTP(S)_PROXY / NO_PROXY from the environment, as requests would apply them to ``url``."""
        host = urlsplit(url).netloc
        if host not in self._proxies_by_host:
            self._proxies_by_host[host] = requests.utils.get_environ_proxies(url)
        return self._proxies_by_host[host]

    def classify_success(self, response: requests.Response) -> None:
        """Some vendors report errors inside 2xx bodies (GraphQL); they override this."""

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
        if isinstance(exc, RetryableError) and exc.kind == "throttled":
            self.throttled_calls += 1
        self.log.warning(f"[{self.vendor} Client] {label}, retrying in {delay_ms}ms")

    @staticmethod
    def _retry_after(response: requests.Response) -> float | None:
        return parse_retry_after(response.headers.get("Retry-After"))

    def _path(self, url: str) -> str:
        return url[len(self.base_url) :] if url.startswith(self.base_url) else url.split("?")[0]
