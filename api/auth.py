"""Bearer tokens: the admin token (SYNC_ADMIN_TOKEN) can do everything; a workspace token reaches only
its own workspace, and any other workspace looks unknown (404)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, insert, select

from api import config
from api.errors import ApiError, not_found
from resources import schema

TOKEN_PREFIX = "ssw_"
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


def issue_token(engine: Engine, workspace_id: str, name: str | None) -> tuple[str, int, datetime]:
    """A new workspace token: the plaintext is returned once, only its hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    t = schema.api_tokens
    with engine.begin() as conn:
        row = conn.execute(
            insert(t)
            .values(workspace_id=workspace_id, token_hash=hash_token(token), name=name)
            .returning(t.c.id, t.c.created_at)
        ).one()
    return token, row.id, row.created_at


def resolve(engine: Engine, token: str) -> Principal | None:
    admin = config.admin_token()
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return Principal(None)
    if not token.startswith(TOKEN_PREFIX):
        return None
    t = schema.api_tokens
    with engine.connect() as conn:
        workspace_id = conn.execute(select(t.c.workspace_id).where(t.c.token_hash == hash_token(token))).scalar()
    return Principal(workspace_id) if workspace_id else None


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
    if not who.can_reach(workspace_id):
        raise not_found(f"workspace {workspace_id!r}")
    ws = schema.workspaces
    with config.engine().connect() as conn:
        exists = conn.execute(select(ws.c.id).where(ws.c.id == workspace_id)).scalar()
    if not exists:
        raise not_found(f"workspace {workspace_id!r}")
    return workspace_id


def admin_workspace_access(workspace_id: str, who: Principal = Depends(admin)) -> str:
    return workspace_access(workspace_id, who)
