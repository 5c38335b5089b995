"""Management: workspaces, their tokens and connections, so no one has to write SQL."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Response
from sqlalchemy import Engine, select

from api import auth, config
from api.dagster import gateway
from api.errors import ERROR_RESPONSES, ApiError, ErrorBody, bad_request, not_found
from api.launches import pending_launch
from api.locks import workspace_lock
from api.models import (
    Connection,
    ConnectionList,
    ConnectionPut,
    TokenCreate,
    TokenIssued,
    TokenList,
    Workspace,
    WorkspaceCreate,
)
from api.syncs import iso
from resources import schema
from resources.control_plane import delete_connection, purge_workspace, upsert_connection
from sync_assets import CONNECTORS_BY_NAME

router = APIRouter(prefix="/api/workspaces", tags=["management"], responses=ERROR_RESPONSES)
CONFLICT = {409: {"model": ErrorBody, "description": "Conflict"}}
FORBIDDEN = {403: {"model": ErrorBody, "description": "Needs the admin token"}}


def workspace_view(engine: Engine, workspace_id: str) -> dict[str, Any]:
    ws, c = schema.workspaces, schema.connections
    with engine.connect() as conn:
        row = conn.execute(select(ws).where(ws.c.id == workspace_id)).one()
        names = conn.execute(
            select(c.c.connector_name).where(c.c.workspace_id == workspace_id).order_by(c.c.connector_name)
        ).scalars()
        connections = list(names)
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "webhookConfigured": bool(row.webhook_url),
        "connections": connections,
    }


@router.post("", status_code=201, response_model=Workspace, responses={**CONFLICT, **FORBIDDEN})
def create_workspace(body: WorkspaceCreate, _admin: auth.Principal = Depends(auth.admin)) -> dict[str, Any]:
    """Create a workspace and register its Dagster partition at once, so a sync can start right away.
    An id used before starts clean: whatever a deleted workspace of that id left is purged first."""
    engine, dagster = config.engine(), gateway()
    with engine.begin() as conn, workspace_lock(conn, body.id):
        exists = conn.execute(select(schema.workspaces.c.id).where(schema.workspaces.c.id == body.id)).scalar()
        if exists:
            raise ApiError(409, "workspace_exists", f"workspace {body.id!r} already exists")
        dagster.purge_partition(body.id)
        purge_workspace(conn, body.id)
        conn.execute(schema.workspaces.insert().values(id=body.id, name=body.name, status="active"))
    dagster.ensure_partition(body.id)
    return workspace_view(engine, body.id)


@router.get("/{workspace_id}", response_model=Workspace)
def get_workspace(workspace_id: str = Depends(auth.workspace_access)) -> dict[str, Any]:
    return workspace_view(config.engine(), workspace_id)


@router.delete("/{workspace_id}", status_code=204, response_class=Response, responses={**CONFLICT, **FORBIDDEN})
def delete_workspace(workspace_id: str = Depends(auth.admin_workspace_access)) -> Response:
    """Delete the workspace and everything of it: connections, tokens, webhook deliveries, sync history,
    dead letters, synced rows, its runs and watermarks in Dagster, and its partition."""
    engine, dagster = config.engine(), gateway()
    with engine.begin() as conn, workspace_lock(conn, workspace_id):
        if dagster.in_flight(workspace_id) or pending_launch(conn, workspace_id):
            raise ApiError(409, "sync_in_progress", f"workspace {workspace_id!r} has a sync queued or running")
        # Dagster first: if it fails, the workspace still exists and the delete can be repeated.
        dagster.purge_partition(workspace_id)
        purge_workspace(conn, workspace_id)
    return Response(status_code=204)


def token_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "workspaceId": row.workspace_id,
        "name": row.name,
        "createdAt": iso(row.created_at),
        "expiresAt": iso(row.expires_at),
        "lastUsedAt": iso(row.last_used_at),
    }


@router.post("/{workspace_id}/tokens", status_code=201, response_model=TokenIssued, responses=FORBIDDEN)
def create_token(
    workspace_id: str = Depends(auth.admin_workspace_access), body: TokenCreate | None = Body(default=None)
) -> dict[str, Any]:
    body = body or TokenCreate()
    token, row = auth.issue_token(config.engine(), workspace_id, body.name, body.expiresAt)
    return {**token_view(row), "token": token}


@router.get("/{workspace_id}/tokens", response_model=TokenList, responses=FORBIDDEN)
def list_tokens(workspace_id: str = Depends(auth.admin_workspace_access)) -> dict[str, Any]:
    """The workspace's tokens: id, name, created, expiry, last used; never the token."""
    return {
        "workspaceId": workspace_id,
        "tokens": [token_view(r) for r in auth.list_tokens(config.engine(), workspace_id)],
    }


@router.delete("/{workspace_id}/tokens/{token_id}", status_code=204, response_class=Response, responses=FORBIDDEN)
def revoke_token(token_id: int, workspace_id: str = Depends(auth.admin_workspace_access)) -> Response:
    """Revoke a token: its next request is a 401."""
    if not auth.revoke_token(config.engine(), workspace_id, token_id):
        raise not_found(f"token {token_id} of workspace {workspace_id!r}")
    return Response(status_code=204)


def connection_view(row: Any) -> dict[str, Any]:
    return {
        "connector": row.connector_name,
        "status": row.status,
        "config": row.config or {},
        "hasCredentials": bool(row.credentials),
        "lastSyncAt": iso(row.last_sync_at),
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    }


def _connections(engine: Engine, workspace_id: str, connector: str | None = None) -> list[Any]:
    c = schema.connections
    query = select(c).where(c.c.workspace_id == workspace_id)
    if connector is not None:
        query = query.where(c.c.connector_name == connector)
    with engine.connect() as conn:
        return conn.execute(query.order_by(c.c.connector_name)).all()


@router.get("/{workspace_id}/connections", response_model=ConnectionList)
def list_connections(workspace_id: str = Depends(auth.workspace_access)) -> dict[str, Any]:
    return {
        "workspaceId": workspace_id,
        "connections": [connection_view(r) for r in _connections(config.engine(), workspace_id)],
    }


@router.put(
    "/{workspace_id}/connections/{connector}", response_model=Connection, responses={201: {"model": Connection}}
)
def put_connection(
    connector: str, body: ConnectionPut, response: Response, workspace_id: str = Depends(auth.workspace_access)
) -> dict[str, Any]:
    """Create (201) or replace (200) the workspace's connection; credentials are encrypted, never returned."""
    if connector not in CONNECTORS_BY_NAME:
        raise bad_request(f"unknown connector {connector!r}; one of: {', '.join(sorted(CONNECTORS_BY_NAME))}")
    engine = config.engine()
    existed = bool(_connections(engine, workspace_id, connector))
    upsert_connection(engine, workspace_id, connector, body.credentials, body.config)
    response.status_code = 200 if existed else 201
    return connection_view(_connections(engine, workspace_id, connector)[0])


@router.delete("/{workspace_id}/connections/{connector}", status_code=204, response_class=Response)
def remove_connection(connector: str, workspace_id: str = Depends(auth.workspace_access)) -> Response:
    if connector not in CONNECTORS_BY_NAME or not delete_connection(config.engine(), workspace_id, connector):
        raise not_found(f"{connector} connection of workspace {workspace_id!r}")
    return Response(status_code=204)
