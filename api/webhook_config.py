"""A workspace's webhook settings and delivery log, as the API reads and changes them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, select, update

from resources import schema
from resources.secrets import encrypt_text


class InvalidWebhookUrl(ValueError):
    pass


def validate_webhook_url(url: str) -> str:
    """EDGE-2: only absolute http(s) URLs with a host; addresses are vetted when a delivery is sent."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhookUrl("the webhook URL must be an absolute http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InvalidWebhookUrl("the webhook URL has an invalid port") from None
    return url.strip()


def set_webhook(engine: Engine, workspace_id: str, url: str, secret: str) -> None:
    ws = schema.workspaces
    with engine.begin() as conn:
        conn.execute(
            update(ws)
            .where(ws.c.id == workspace_id)
            .values(webhook_url=url, webhook_secret=encrypt_text(secret), updated_at=func.now())
        )


def clear_webhook(engine: Engine, workspace_id: str) -> None:
    ws = schema.workspaces
    with engine.begin() as conn:
        conn.execute(
            update(ws)
            .where(ws.c.id == workspace_id)
            .values(webhook_url=None, webhook_secret=None, updated_at=func.now())
        )


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
