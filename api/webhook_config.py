"""What the API reads of a workspace's webhook and its delivery log (``webhook_deliveries``); setting,
clearing and sending live in resources/webhooks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select, update

from resources import schema


def webhook_view(engine: Engine, workspace_id: str) -> dict[str, Any]:
    ws = schema.workspaces
    with engine.connect() as conn:
        row = conn.execute(select(ws.c.webhook_url, ws.c.webhook_secret).where(ws.c.id == workspace_id)).one()
    return {
        "workspaceId": workspace_id,
        "configured": bool(row.webhook_url),
        "webhookUrl": row.webhook_url,
        "secretSet": bool(row.webhook_secret),
    }


def deliveries(engine: Engine, workspace_id: str, limit: int, status: str | None) -> list[Any]:
    d = schema.webhook_deliveries
    query = select(d).where(d.c.workspace_id == workspace_id)
    if status:
        query = query.where(d.c.status == status)
    with engine.connect() as conn:
        return conn.execute(query.order_by(d.c.created_at.desc(), d.c.id).limit(limit)).all()


def redeliver(engine: Engine, workspace_id: str, delivery_id: str) -> Any | None:
    """Queue a delivery again now: the outbox's deliverer sends it on its next pass."""
    d = schema.webhook_deliveries
    with engine.begin() as conn:
        return conn.execute(
            update(d)
            .where(d.c.id == delivery_id, d.c.workspace_id == workspace_id)
            .values(status="pending", next_attempt_at=func.now(), last_error=None)
            .returning(*d.c)
        ).first()
