"""A workspace's webhook: URL in clear, secret encrypted at rest (Fernet, resources/secrets.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select, update

from resources import schema
from resources.secrets import decrypt_text, encrypt_text
from resources.webhooks.destination import validate_webhook_url


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str = field(repr=False)


def set_webhook(engine: Engine, workspace_id: str, url: str, secret: str) -> bool:
    """Store the webhook of an existing workspace; False when there is no such workspace."""
    ws = schema.workspaces
    with engine.begin() as conn:
        result = conn.execute(
            update(ws)
            .where(ws.c.id == workspace_id)
            .values(webhook_url=validate_webhook_url(url), webhook_secret=encrypt_text(secret), updated_at=func.now())
        )
    return result.rowcount > 0


def clear_webhook(engine: Engine, workspace_id: str) -> bool:
    ws = schema.workspaces
    with engine.begin() as conn:
        result = conn.execute(
            update(ws)
            .where(ws.c.id == workspace_id)
            .values(webhook_url=None, webhook_secret=None, updated_at=func.now())
        )
    return result.rowcount > 0


def has_webhook(engine: Engine, workspace_id: str) -> bool:
    ws = schema.workspaces
    with engine.connect() as conn:
        return bool(conn.execute(select(ws.c.webhook_url).where(ws.c.id == workspace_id)).scalar())


def get_webhook(engine: Engine, workspace_id: str) -> WebhookConfig | None:
    ws = schema.workspaces
    with engine.connect() as conn:
        row = conn.execute(select(ws.c.webhook_url, ws.c.webhook_secret).where(ws.c.id == workspace_id)).first()
    if row is None or not row.webhook_url:
        return None
    return WebhookConfig(row.webhook_url, decrypt_text(row.webhook_secret) if row.webhook_secret else "")
