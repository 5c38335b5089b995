"""Dead letters (sync_errors): list a workspace's, and replay them through the current transforms."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from sqlalchemy import select

from api import auth, config
from api.errors import ERROR_RESPONSES, bad_request
from api.models import MAX_ROW_ID, DeadLetterList, ReplayRequest, ReplayResult
from api.syncs import iso
from resources import schema
from sync_assets import CONNECTORS_BY_NAME
from sync_assets.replay import replay_dead_letters

router = APIRouter(prefix="/api/workspaces/{workspace_id}/errors", tags=["dead letters"], responses=ERROR_RESPONSES)


def dead_letter_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "connector": row.connector,
        "entity": row.entity,
        "sourceId": row.source_id,
        "runId": row.run_id,
        "error": row.error,
        "payload": row.payload,
        "createdAt": iso(row.created_at),
        "resolvedAt": iso(row.resolved_at),
    }


def _known_connector(connector: str | None) -> None:
    if connector is not None and connector not in CONNECTORS_BY_NAME:
        raise bad_request(f"unknown connector {connector!r}; one of: {', '.join(sorted(CONNECTORS_BY_NAME))}")


@router.get("", response_model=DeadLetterList)
def list_dead_letters(
    workspace_id: str = Depends(auth.workspace_access),
    connector: str | None = Query(None, max_length=32),
    entity: str | None = Query(None, pattern=r"^[a-z_]{1,32}$"),
    resolved: bool | None = Query(None, description="true: only resolved; false: only unresolved; absent: both"),
    limit: int = Query(50, ge=1, le=100),
    cursor: int | None = Query(None, ge=1, le=MAX_ROW_ID, description="The previous page's nextCursor"),
) -> dict[str, Any]:
    """The workspace's dead letters, newest first, with the record each failed on."""
    _known_connector(connector)
    e = schema.sync_errors
    query = select(e).where(e.c.workspace_id == workspace_id)
    if connector is not None:
        query = query.where(e.c.connector == connector)
    if entity is not None:
        query = query.where(e.c.entity == entity)
    if resolved is not None:
        query = query.where(e.c.resolved_at.is_not(None) if resolved else e.c.resolved_at.is_(None))
    if cursor is not None:
        query = query.where(e.c.id < cursor)
    with config.engine().connect() as conn:
        found = conn.execute(query.order_by(e.c.id.desc()).limit(limit + 1)).all()
    page = found[:limit]
    return {
        "workspaceId": workspace_id,
        "errors": [dead_letter_view(r) for r in page],
        "nextCursor": page[-1].id if len(found) > limit else None,
    }


@router.post("/replay", response_model=ReplayResult)
def replay(
    workspace_id: str = Depends(auth.workspace_access), body: ReplayRequest | None = Body(default=None)
) -> dict[str, Any]:
    """Replay the workspace's unresolved dead letters (optionally of one connector, one entity, or the ids
    given) through the current transforms, now: those that pass are upserted unless the warehouse holds a
    newer version, and resolved; the rest keep failing with their new error."""
    body = body or ReplayRequest()
    _known_connector(body.connector)
    counts = replay_dead_letters(
        config.engine(), workspace_id, connector=body.connector, entity=body.entity, error_ids=body.errorIds
    )
    return {
        "workspaceId": workspace_id,
        "replayed": counts.replayed,
        "resolved": counts.resolved,
        "stillFailing": counts.still_failing,
        "skippedNewer": counts.skipped_newer,
    }
