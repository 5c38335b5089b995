"""The ``webhook_deliveries`` outbox: durable rows, claimed with a lease, retried with backoff.

A row is claimed by moving its ``next_attempt_at`` past the attempt's timeout in one conditional
UPDATE, so two deliverers (the delivery sensor and an immediate attempt) never send it at once, and a
deliverer that dies mid-send only delays the row until the lease runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from resources import schema
from resources.webhooks.config import has_webhook
from resources.webhooks.envelope import new_event_id, render_body

deliveries = schema.webhook_deliveries
LEASE_MARGIN_S = 30.0
MAX_ERROR_CHARS = 500


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff (base, 2×base, 4×base … capped) until ``horizon_s`` after the event was queued."""

    timeout_s: float = 5.0
    base_s: float = 10.0
    cap_s: float = 4 * 3600.0
    horizon_s: float = 24 * 3600.0

    def delay_after(self, attempts: int) -> float:
        return min(self.base_s * 2 ** max(attempts - 1, 0), self.cap_s)

    def next_attempt(self, created_at: datetime, attempts: int, now: datetime) -> datetime | None:
        """When to try again after ``attempts`` failures, or None when the horizon is spent."""
        at = now + timedelta(seconds=self.delay_after(attempts))
        return at if at <= created_at + timedelta(seconds=self.horizon_s) else None


@dataclass(frozen=True)
class Claimed:
    id: str
    workspace_id: str
    event: str
    payload: str
    attempts: int
    created_at: datetime


def enqueue(
    engine: Engine,
    workspace_id: str,
    event: str,
    data: dict[str, Any],
    dedupe_key: str | None = None,
    *,
    held_until: datetime | None = None,
) -> str | None:
    """Queue an event for the workspace's webhook; returns its id, or None when no webhook is configured
    or an event with this dedupe key was already queued. A row ``held_until`` a time is not due before
    then, except to a caller claiming it with that time."""
    if not has_webhook(engine, workspace_id):
        return None
    event_id, now = new_event_id(), utcnow()
    values = {
        "id": event_id,
        "workspace_id": workspace_id,
        "event": event,
        "payload": render_body(event_id, event, workspace_id, data, now),
        "dedupe_key": dedupe_key,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": held_until or now,
        "created_at": now,
    }
    with engine.begin() as conn:
        if dedupe_key is None:
            conn.execute(insert(deliveries).values(**values))
            return event_id
        dialect_insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        stmt = (
            dialect_insert(deliveries)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(deliveries.c.id)
        )
        return conn.execute(stmt).scalar()


def due_ids(engine: Engine, limit: int, now: datetime | None = None) -> list[tuple[str, str]]:
    """(id, workspace id) of pending rows whose next attempt is due, oldest first."""
    d = deliveries
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.c.id, d.c.workspace_id)
            .where(d.c.status == "pending", d.c.next_attempt_at <= (now or utcnow()))
            .order_by(d.c.next_attempt_at, d.c.created_at)
            .limit(limit)
        ).all()
    return [(r.id, r.workspace_id) for r in rows]


def claim(engine: Engine, event_id: str, policy: RetryPolicy, held_until: datetime | None = None) -> Claimed | None:
    """Take the row for one attempt if it is pending and due (or held until ``held_until``); None if
    someone else has it or it is done."""
    d, now = deliveries, utcnow()
    lease_until = now + timedelta(seconds=policy.timeout_s + LEASE_MARGIN_S)
    with engine.begin() as conn:
        taken = conn.execute(
            update(d)
            .where(d.c.id == event_id, d.c.status == "pending", d.c.next_attempt_at <= max(now, held_until or now))
            .values(next_attempt_at=lease_until)
        ).rowcount
        if taken != 1:
            return None
        row = conn.execute(
            select(d.c.id, d.c.workspace_id, d.c.event, d.c.payload, d.c.attempts, d.c.created_at).where(
                d.c.id == event_id
            )
        ).one()
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return Claimed(row.id, row.workspace_id, row.event, row.payload, row.attempts, created)


def record_delivered(engine: Engine, row: Claimed, payload: str, status_code: int) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == row.id)
            .values(
                status="delivered",
                payload=payload,
                attempts=row.attempts + 1,
                last_status_code=status_code,
                last_error=None,
                delivered_at=now,
                next_attempt_at=None,
            )
        )


def record_failed_attempt(
    engine: Engine,
    row: Claimed,
    payload: str,
    status_code: int | None,
    error: str,
    policy: RetryPolicy,
    *,
    permanent: bool = False,
) -> datetime | None:
    """Record a failed attempt; returns when it will be retried (None: given up, status ``failed``)."""
    now = utcnow()
    attempts = row.attempts + 1
    retry_at = None if permanent else policy.next_attempt(row.created_at, attempts, now)
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == row.id)
            .values(
                status="pending" if retry_at else "failed",
                payload=payload,
                attempts=attempts,
                last_status_code=status_code,
                last_error=error[:MAX_ERROR_CHARS],
                next_attempt_at=retry_at,
            )
        )
    return retry_at
