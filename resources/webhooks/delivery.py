"""One HTTP attempt per claimed outbox row: re-stamped, signed, POSTed to the vetted address.

Nothing here raises into its caller: every outcome is recorded on the row and logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import certifi
import urllib3
from sqlalchemy import Engine

from resources.webhooks import outbox
from resources.webhooks.config import get_webhook
from resources.webhooks.destination import Destination, InvalidWebhookUrl, RefusedDestination, resolve
from resources.webhooks.envelope import restamp, signed_headers

logger = logging.getLogger("sales_sync.webhooks")
TEST_EVENT_DATA = {"jobType": "test", "progress": {"current": 50, "total": 100, "message": "Test webhook notification"}}


@dataclass(frozen=True)
class Attempt:
    event_id: str
    delivered: bool
    status_code: int | None = None
    error: str | None = None
    will_retry: bool = False


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    deferred: int = 0  # due rows of a workspace whose receiver already failed in this pass
    attempts: list[Attempt] = field(default_factory=list)

    def __str__(self) -> str:
        return f"delivered {self.delivered}, retrying {self.retrying}, failed {self.failed}, deferred {self.deferred}"


def _host_header(dest: Destination) -> str:
    host = f"[{dest.host}]" if ":" in dest.host else dest.host
    default_port = 443 if dest.scheme == "https" else 80
    return host if dest.port == default_port else f"{host}:{dest.port}"


def post(dest: Destination, body: str, headers: dict[str, str], timeout_s: float) -> int:
    """POST to the vetted address (never re-resolving the name); redirects are not followed and the
    answer's body is not read."""
    timeout = urllib3.Timeout(total=timeout_s)
    pool: Any
    if dest.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            dest.address,
            dest.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=dest.host,
            assert_hostname=dest.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    else:
        pool = urllib3.HTTPConnectionPool(dest.address, dest.port, timeout=timeout, retries=False, maxsize=1)
    try:
        response = pool.urlopen(
            "POST",
            dest.target,
            body=body.encode(),
            headers={**headers, "Host": _host_header(dest)},
            redirect=False,
            preload_content=False,  # only the status matters: the receiver's body is never read
        )
        return response.status
    finally:
        pool.close()


def describe_http_error(exc: Exception, timeout_s: float) -> str:
    # Checked first: urllib3 makes NewConnectionError a subclass of its timeout errors.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return f"connection failed: {exc.__cause__}" if exc.__cause__ else "connection failed"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"TLS error: {exc}"
    return f"{type(exc).__name__}: {exc}"


def deliver_one(
    engine: Engine,
    event_id: str,
    policy: outbox.RetryPolicy,
    log: Any = logger,
    held_until: datetime | None = None,
) -> Attempt | None:
    """Attempt one outbox row if it is pending, due and unclaimed; None when there was nothing to do."""
    try:
        row = outbox.claim(engine, event_id, policy, held_until)
    except Exception as exc:  # the outbox stays durable; the next pass retries
        log.warning(f"[Webhooks] could not claim {event_id}: {type(exc).__name__}")
        return None
    if row is None:
        return None
    try:
        return _attempt(engine, row, policy, log)
    except Exception as exc:  # e.g. the warehouse dropped mid-attempt: the lease expires and it is retried
        log.warning(f"[Webhooks] {row.event} {row.id}: attempt could not be recorded ({type(exc).__name__})")
        return Attempt(row.id, False, error=type(exc).__name__, will_retry=True)


def _attempt(engine: Engine, row: outbox.Claimed, policy: outbox.RetryPolicy, log: Any) -> Attempt:
    config = get_webhook(engine, row.workspace_id)
    if config is None:
        outbox.record_failed_attempt(engine, row, row.payload, None, "no webhook configured", policy, permanent=True)
        log.info(f"[Webhooks] {row.event} {row.id} dropped: workspace {row.workspace_id} has no webhook any more")
        return Attempt(row.id, False, error="no webhook configured")
    try:
        dest = resolve(config.url)
    except (InvalidWebhookUrl, RefusedDestination) as exc:
        error = f"refused: {exc}"
        outbox.record_failed_attempt(engine, row, row.payload, None, error, policy, permanent=True)
        log.warning(f"[Webhooks] refused to deliver {row.event} {row.id} for workspace {row.workspace_id}: {exc}")
        return Attempt(row.id, False, error=error)
    now = outbox.utcnow()
    body = restamp(row.payload, now)
    status_code: int | None = None
    try:
        status_code = post(dest, body, signed_headers(body, config.secret, row.id, now), policy.timeout_s)
        error = None if 200 <= status_code < 300 else f"receiver answered HTTP {status_code}"
    except urllib3.exceptions.HTTPError as exc:
        error = describe_http_error(exc, policy.timeout_s)
    if error is None:
        outbox.record_delivered(engine, row, body, status_code or 0)
        log.info(
            f"[Webhooks] delivered {row.event} {row.id} to {dest.origin} ({status_code}, attempt {row.attempts + 1})"
        )
        return Attempt(row.id, True, status_code)
    retry_at = outbox.record_failed_attempt(engine, row, body, status_code, error, policy)
    outcome = f"retrying at {retry_at.isoformat(timespec='seconds')}" if retry_at else "giving up"
    log.warning(
        f"[Webhooks] {row.event} {row.id} to {dest.origin} failed on attempt {row.attempts + 1}: {error}; {outcome}"
    )
    return Attempt(row.id, False, status_code, error, will_retry=retry_at is not None)


def deliver_due(
    engine: Engine, policy: outbox.RetryPolicy, log: Any = logger, *, limit: int = 200, budget_s: float = 40.0
) -> DeliveryReport:
    """Attempt due rows, oldest first, within a time budget. After a receiver fails, its workspace's
    other rows wait for the next pass, so one dead receiver costs at most one timeout per pass."""
    report = DeliveryReport()
    deadline = time.monotonic() + budget_s
    failing: set[str] = set()
    try:
        due = outbox.due_ids(engine, limit)
    except Exception as exc:
        log.warning(f"[Webhooks] could not read the outbox: {type(exc).__name__}")
        return report
    for event_id, workspace_id in due:
        if workspace_id in failing or time.monotonic() >= deadline:
            report.deferred += 1
            continue
        attempt = deliver_one(engine, event_id, policy, log)
        if attempt is None:
            continue
        report.attempts.append(attempt)
        if attempt.delivered:
            report.delivered += 1
        else:
            failing.add(workspace_id)
            report.retrying += attempt.will_retry
            report.failed += not attempt.will_retry
    return report


def send_test_event(engine: Engine, workspace_id: str, policy: outbox.RetryPolicy | None = None) -> dict[str, Any]:
    """Send the seed's test payload once, now, and report the receiver's answer (not retried)."""
    policy = policy or outbox.RetryPolicy()
    # Held for this caller, so the delivery sensor cannot take (and later retry) the test event.
    held_until = outbox.utcnow() + timedelta(seconds=policy.timeout_s + outbox.LEASE_MARGIN_S)
    event_id = outbox.enqueue(engine, workspace_id, "sync.progress", TEST_EVENT_DATA, held_until=held_until)
    if event_id is None:
        return {"delivered": False, "statusCode": None, "error": "no webhook configured"}
    once = outbox.RetryPolicy(policy.timeout_s, horizon_s=0)
    attempt = deliver_one(engine, event_id, once, logger, held_until=held_until)
    if attempt is None:
        return {"delivered": False, "statusCode": None, "error": "the test event could not be attempted"}
    return {"delivered": attempt.delivered, "statusCode": attempt.status_code, "error": attempt.error}
