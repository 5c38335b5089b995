"""ASGI middleware in front of every vendor route: logs the request, then applies latency, revocation,
auth, rate-limit enforcement and injected 429/5xx before the vendor's handler runs.

On the way out it stamps the one ``Date`` header (the vendor's clock; the server's own is turned off in
sandbox.server) and counts successful data requests for ``mutate_after_requests`` triggers: a trigger fires
as the N-th response's body is handed to the server, after that body was computed and before any later
request can be answered."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from fastapi.responses import Response

from .core import Identity, SandboxRequest, Vendor
from .mutation import count_served

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _multi(pairs: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    out: dict[str, str | list[str]] = {}
    for k, v in pairs:
        if k in out:
            prev = out[k]
            out[k] = [*prev, v] if isinstance(prev, list) else [prev, v]
        else:
            out[k] = v
    return out


def _with_date(message: Message, date: str) -> Message:
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
    return {**message, "headers": [*headers, (b"date", date.encode("latin-1"))]}


async def _dated(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    async def send_dated(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = _with_date(message, formatdate(math.floor(time.time()), usegmt=True))
        await send(message)

    await app(scope, receive, send_dated)


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    if "application/x-www-form-urlencoded" in content_type:
        return _multi(parse_qsl(text, keep_blank_values=True))
    try:
        return json.loads(text)
    except ValueError:
        return text


class CutConnection(Exception):
    """Raised part-way through a response body: the server drops the connection (``next_truncated``)."""


class _QuietCuts(logging.Filter):
    """Keeps the server's error log for real faults: a deliberate cut is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], CutConnection))


logging.getLogger("uvicorn.error").addFilter(_QuietCuts())

GATEWAY_PAGE = b"<html><head><title>Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


class VendorGate:
    def __init__(self, app: ASGIApp, vendors: dict[str, Vendor]):
        self.app, self.vendors = app, vendors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        vendor = self.vendors.get(path.split("/", 2)[1]) if scope["type"] == "http" else None
        if vendor is None:
            if scope["type"] == "http":
                await _dated(self.app, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        arrived_ms = time.time() * 1000

        chunks = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        req = SandboxRequest(
            method=scope["method"],
            path=path,
            subpath=path[len(vendor.name) + 1 :] or "/",
            query=_multi(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)),
            headers=headers,
            body=_parse_body(raw, headers.get("content-type", "")),
        )
        ident = vendor.identify(req)
        state = scope.setdefault("state", {})
        state["sandbox_request"] = req
        state["sandbox_identity"] = ident
        status = 500
        counts = not vendor.is_auth_endpoint(req)

        async def send_logged(message: Message) -> None:
            nonlocal status, counts
            if message["type"] == "http.response.start":
                status = message["status"]
                message = _with_date(message, vendor.http_date())
            elif message["type"] == "http.response.body" and state.get("sandbox_truncate"):
                body = message.get("body", b"")
                await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
                raise CutConnection(path)
            elif message["type"] == "http.response.body" and counts:
                counts = False  # first body chunk: the response is final, the next request not yet answered
                if 200 <= status < 300 and not vendor.is_failure_body(message.get("body", b"")[:64]):
                    count_served(vendor, path)
            await send(message)

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        try:
            early = await self._screen(vendor, req, ident, state)
            if early is not None:
                await early(scope, replay, send_logged)
            else:
                await self.app(scope, replay, send_logged)
        finally:
            vendor.log.add(
                {
                    "method": req.method,
                    "path": path,
                    "query": req.query,
                    "body": req.body,
                    "status": status,
                    "ts_ms": arrived_ms,
                    "credential": ident.credential,
                    "fault": state.get("sandbox_fault"),
                }
            )

    @staticmethod
    async def _screen(vendor: Vendor, req: SandboxRequest, ident: Identity, state: dict[str, Any]) -> Response | None:
        """The response that pre-empts the handler, or None to let the handler answer."""
        f = vendor.faults
        if vendor.is_auth_endpoint(req):
            return vendor.revoked_auth(req) if f.revoke else None
        if f.latency_ms > 0:
            await asyncio.sleep(f.latency_ms / 1000)
        if f.revoke or not ident.authenticated:
            return vendor.unauthorized(req)
        if vendor.enforce_limits and ident.credential is not None:
            now = time.time()
            allowed, remaining = vendor.limiter.hit(ident.credential, now)
            if not allowed:
                # Whole seconds, as HTTP's delta-seconds; rounded up so the retry lands inside the budget.
                wait = math.ceil(vendor.limiter.wait_s(ident.credential, now))
                return vendor.rate_limited(float(wait) if vendor.retry_after_when_limited else None)
            state["sandbox_rate_remaining"] = remaining
        if f.outage_after_requests is not None and f.served >= f.outage_after_requests:
            return vendor.server_error(f.status_5xx)
        # Countdown faults first so "the next N requests" is exact regardless of the random rates.
        if f.next_429 > 0:
            f.next_429 -= 1
            return vendor.rate_limited(f.retry_after_s)
        if f.next_5xx > 0:
            f.next_5xx -= 1
            return vendor.server_error(f.status_5xx)
        if f.next_html > 0:
            f.next_html -= 1
            return Response(GATEWAY_PAGE, status_code=200, media_type="text/html")
        if f.next_truncated > 0:
            f.next_truncated -= 1
            state["sandbox_truncate"] = True
        if f.rate_429 > 0 and vendor.fault_rng.random() < f.rate_429:
            state["sandbox_fault"] = "rate_429"
            return vendor.rate_limited(f.retry_after_s)
        if f.rate_5xx > 0 and vendor.fault_rng.random() < f.rate_5xx:
            state["sandbox_fault"] = "rate_5xx"
            return vendor.server_error(f.status_5xx)
        return None
