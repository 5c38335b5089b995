"""The seed's sync endpoints (its "Quick Reference")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query

from api import auth, config
from api.dagster import gateway
from api.errors import ERROR_RESPONSES, ErrorBody
from api.launches import launcher
from api.models import History, Job, JobList, SyncAccepted, SyncRequest, SyncStatus
from api.syncs import SyncOptions, get_job, history, list_jobs, status, trigger

router = APIRouter(prefix="/api/workspaces/{workspace_id}", tags=["sync"], responses=ERROR_RESPONSES)
TRIGGER_RESPONSES = {
    409: {"model": ErrorBody, "description": "A sync of this workspace is already queued or running"},
    503: {"model": ErrorBody, "description": "Dagster is unreachable"},
}


def _accepted(workspace_id: str, connector: str | None, body: SyncRequest | None) -> dict[str, Any]:
    options = SyncOptions(body.fullRefresh, body.timeoutMs) if body else SyncOptions()
    accepted = trigger(config.engine(), gateway(), launcher(), workspace_id, connector, options)
    return {
        "syncId": accepted.sync_id,
        "jobId": accepted.job_id,
        "status": "queued",
        "statusUrl": f"/api/workspaces/{workspace_id}/sync/jobs/{accepted.job_id}",
    }


@router.post("/sync", status_code=202, response_model=SyncAccepted, responses=TRIGGER_RESPONSES)
def sync_workspace(
    workspace_id: str = Depends(auth.workspace_access), body: SyncRequest | None = Body(default=None)
) -> dict[str, Any]:
    """Queue a sync of every active connection of the workspace."""
    return _accepted(workspace_id, None, body)


@router.post("/connectors/{connector}/sync", status_code=202, response_model=SyncAccepted, responses=TRIGGER_RESPONSES)
def sync_connector(
    connector: str, workspace_id: str = Depends(auth.workspace_access), body: SyncRequest | None = Body(default=None)
) -> dict[str, Any]:
    """Queue a sync of one connection (404 when the workspace has no such connection)."""
    return _accepted(workspace_id, connector, body)


@router.get("/sync/status", response_model=SyncStatus)
def sync_status(workspace_id: str = Depends(auth.workspace_access)) -> dict[str, Any]:
    return status(config.engine(), gateway(), workspace_id)


@router.get("/sync/jobs", response_model=JobList)
def sync_jobs(
    workspace_id: str = Depends(auth.workspace_access), limit: int = Query(20, ge=1, le=100)
) -> dict[str, Any]:
    return {"workspaceId": workspace_id, "jobs": list_jobs(config.engine(), gateway(), workspace_id, limit)}


@router.get("/sync/jobs/{job_id}", response_model=Job)
def sync_job(job_id: str, workspace_id: str = Depends(auth.workspace_access)) -> dict[str, Any]:
    return get_job(config.engine(), gateway(), workspace_id, job_id)


@router.get("/sync/history", response_model=History)
def sync_history(
    workspace_id: str = Depends(auth.workspace_access), limit: int = Query(20, ge=1, le=100)
) -> dict[str, Any]:
    return {"workspaceId": workspace_id, "history": history(config.engine(), workspace_id, limit)}
