"""Bearer tokens: the admin token (SYNC_ADMIN_TOKEN) can do everything; a workspace token reaches only
its own workspace, and any other workspace looks unknown (404). Workspace tokens can be listed (never
shown again), revoked, and given an expiry; a revoked or expired token is refused like an unknown one."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, delete, insert, select, update

from api import config
from api.errors import ApiError, not_found
from resources import schema
from sync_assets.partitions import WORKSPACE_KEY_PATTERN

TOKEN_PREFIX = "ssw_"
# last_used_at is written at most this often per token: a write per request would double the API's work.
LAST_USED_RESOLUTION = timedelta(minutes=1)
TOKEN_COLUMNS = (
    schema.api_tokens.c.id,
    schema.api_tokens.c.workspace_id,
    schema.api_tokens.c.name,
    schema.api_tokens.c.created_at,
    schema.api_tokens.c.expires_at,
    schema.api_tokens.c.last_used_at,
)
bearer = HTTPBearer(auto_error=False, description="The admin token or a workspace token")


@dataclass(frozen=True)
class Principal:
    workspace_id: str | None  # None: the admin

    @property
    def is_admin(self) -> bool:
        return self.workspace_id is None

    def can_reach(self, workspace_id: str) -> bool:
        return self.is_admin or self.workspace_id == workspace_id


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    engine: Engine, workspace_id: str, name: str | None, expires_at: datetime | None = None
) -> tuple[str, Any]:
    """A new workspace token and its row: the plaintext is returned once, only its hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    t = schema.api_tokens
    with engine.begin() as conn:
        row = conn.execute(
            insert(t)
            .values(workspace_id=workspace_id, token_hash=hash_token(token), name=name, expires_at=expires_at)
            .returning(*TOKEN_COLUMNS)
        ).one()
    return token, row


def list_tokens(engine: Engine, workspace_id: str) -> list[Any]:
    t = schema.api_tokens
    with engine.connect() as conn:
        return list(conn.execute(select(*TOKEN_COLUMNS).where(t.c.workspace_id == workspace_id).order_by(t.c.id)))


def revoke_token(engine: Engine, workspace_id: str, token_id: int) -> bool:
    t = schema.api_tokens
    with engine.begin() as conn:
        return conn.execute(delete(t).where(t.c.id == token_id, t.c.workspace_id == workspace_id)).rowcount > 0


def resolve(engine: Engine, token: str) -> Principal | None:
    admin = config.admin_token()
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return Principal(None)
    if not token.startswith(TOKEN_PREFIX):
        return None
    t = schema.api_tokens
    now = datetime.now(UTC)
    with engine.connect() as conn:
        row = conn.execute(
            select(t.c.id, t.c.workspace_id, t.c.expires_at, t.c.last_used_at).where(
                t.c.token_hash == hash_token(token)
            )
        ).first()
    if row is None or (row.expires_at is not None and aware(row.expires_at) <= now):
        return None
    if row.last_used_at is None or now - aware(row.last_used_at) >= LAST_USED_RESOLUTION:
        with engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == row.id).values(last_used_at=now))
    return Principal(row.workspace_id)


def aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive (they are UTC); Postgres aware."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def principal(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise ApiError(401, "unauthorized", "missing bearer token")
    found = resolve(config.engine(), credentials.credentials)
    if found is None:
        raise ApiError(401, "unauthorized", "invalid bearer token")
    return found


def admin(who: Principal = Depends(principal)) -> Principal:
    if not who.is_admin:
        raise ApiError(403, "forbidden", "this endpoint needs the admin token")
    return who


def workspace_access(workspace_id: str, who: Principal = Depends(principal)) -> str:
    """The path's workspace, if the caller may see it and it exists; otherwise 404 either way."""
    # An id that is no valid partition key cannot exist (and is never sent to the database).
    if not who.can_reach(workspace_id) or not WORKSPACE_KEY_PATTERN.fullmatch(workspace_id):
        raise not_found(f"workspace {workspace_id!r}")
    ws = schema.workspaces
    with config.engine().connect() as conn:
        exists = conn.execute(select(ws.c.id).where(ws.c.id == workspace_id)).scalar()
    if not exists:
        raise not_found(f"workspace {workspace_id!r}")
    return workspace_id


def admin_workspace_access(workspace_id: str, who: Principal = Depends(principal)) -> str:
    """Admin-only on a workspace: another workspace's token still sees a 404, its own a 403."""
    found = workspace_access(workspace_id, who)
    admin(who)
    return found
