"""Sync jobs: trigger (check-and-launch under a workspace lock; a stale active run is failed first), and the views of
jobs, status and history. A job is a Dagster run; its id is the run id."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import DagsterEventType, DagsterRunStatus, RunRecord
from dagster._core.utils import make_new_run_id
from sqlalchemy import Engine, func, select

from api.dagster import DagsterGateway
from api.errors import ApiError, not_found
from api.launches import FAILED, Launch, LaunchWorker, enqueue, find_launch, pending_launch, recent_launches
from api.locks import workspace_lock
from resources import schema
from resources.warehouse import fail_running_syncs
from sync_assets import CONNECTORS_BY_NAME
from sync_assets.runs import (
    API_PRIORITY,
    FULL_REFRESH_TAG,
    MAX_RUNTIME_TAG,
    PARTITION_TAG,
    PRIORITY_TAG,
    SYNC_ID_TAG,
    SYNC_TYPE_TAG,
    connectors_of,
    full_refresh_tagged,
    run_tag,
    sync_asset_names,
    timed_out_message,
)

logger = logging.getLogger("api")

STALE_AFTER = timedelta(hours=1)
JOB_STATUSES = ("queued", "running", "completed", "completed_with_errors", "failed", "canceled")
_QUEUED = {DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED}
_RUNNING = {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}


def timeout_message(limit_s: float) -> str:
    """'Sync timed out (exceeded 1 hour)', the seed's wording, for any limit."""
    seconds = int(limit_s)
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"Sync timed out (exceeded {count} {unit}{'s' if count != 1 else ''})"
    return f"Sync timed out (exceeded {seconds} second{'s' if seconds != 1 else ''})"


STALE_MESSAGE = timeout_message(STALE_AFTER.total_seconds())


@dataclass(frozen=True)
class SyncOptions:
    full_refresh: bool = False
    timeout_ms: int | None = None


@dataclass(frozen=True)
class Accepted:
    sync_id: str
    job_id: str


def syncable_connectors(engine: Engine, workspace_id: str) -> list[str]:
    c = schema.connections
    with engine.connect() as conn:
        names = conn.execute(
            select(c.c.connector_name)
            .where(c.c.workspace_id == workspace_id, c.c.status == "active")
            .order_by(c.c.connector_name)
        ).scalars()
        return [n for n in names if n in CONNECTORS_BY_NAME]


def run_tags(sync_id: str, options: SyncOptions) -> dict[str, str]:
    tags = {SYNC_TYPE_TAG: "manual", SYNC_ID_TAG: sync_id, PRIORITY_TAG: API_PRIORITY}
    if options.full_refresh:
        tags[FULL_REFRESH_TAG] = "true"
    if options.timeout_ms is not None:
        tags[MAX_RUNTIME_TAG] = f"{options.timeout_ms / 1000:g}"
    return tags


def trigger(
    engine: Engine,
    gateway: DagsterGateway,
    launcher: LaunchWorker,
    workspace_id: str,
    connector: str | None,
    options: SyncOptions,
) -> Accepted:
    """Accept one sync unless the workspace already has one queued or running (409); the outbox's
    launcher creates its run (api/launches.py)."""
    connectors = syncable_connectors(engine, workspace_id)
    if connector is not None:
        if connector not in connectors:
            raise not_found(f"{connector} connection of workspace {workspace_id!r}")
        job_name, assets = f"sync_{connector}", None
    elif connectors:
        job_name = "sync_workspace"
        assets = sync_asset_names(connectors)
    else:
        raise not_found(f"active connections of workspace {workspace_id!r}")

    started = time.perf_counter()
    sync_id = str(uuid.uuid4())
    log = schema.sync_log
    conflict: str | None = None
    with engine.begin() as conn, workspace_lock(conn, workspace_id):
        alive: list[RunRecord] = []
        for record in gateway.in_flight(workspace_id):
            if gateway.past_max_runtime(record):
                message = timeout_message(gateway.max_runtime_s(record) or 0)
                gateway.time_out(record, message)
                fail_running_syncs(conn, message, log.c.run_id == record.dagster_run.run_id)
                logger.warning("timed out run %s of workspace %s: %s", record.dagster_run.run_id, workspace_id, message)
            else:
                alive.append(record)
        alive_ids = [r.dagster_run.run_id for r in alive]
        cutoff = datetime.now(UTC) - STALE_AFTER
        stale = fail_running_syncs(
            conn,
            STALE_MESSAGE,
            log.c.workspace_id == workspace_id,
            log.c.started_at < cutoff,
            log.c.run_id.is_(None) | log.c.run_id.not_in(alive_ids),
        )
        if stale:
            logger.warning("failed %d stale sync(s) of workspace %s: %s", stale, workspace_id, STALE_MESSAGE)
        pending = None if alive else pending_launch(conn, workspace_id)
        if alive:
            run = alive[0].dagster_run
            conflict = f"a sync of workspace {workspace_id!r} is already {job_status(run.status)} (job {run.run_id})"
        elif pending:
            conflict = f"a sync of workspace {workspace_id!r} is already queued (job {pending.job_id})"
        else:
            running = conn.execute(
                select(log.c.id, log.c.connector_type)
                .where(log.c.workspace_id == workspace_id, log.c.status == "running")
                .limit(1)
            ).first()
            if running:
                conflict = f"a {running.connector_type} sync of workspace {workspace_id!r} is still running"
            else:
                gateway.check_launchable(job_name, assets)
                job_id = make_new_run_id()
                enqueue(conn, Launch(job_id, workspace_id, sync_id, job_name, assets, run_tags(sync_id, options)))
    if conflict:
        raise ApiError(409, "sync_in_progress", conflict)
    launcher.wake()
    logger.info(
        "accepted %s for workspace %s: job %s in %.0f ms",
        job_name,
        workspace_id,
        job_id,
        (time.perf_counter() - started) * 1000,
    )
    return Accepted(sync_id, job_id)


# --- views ---------------------------------------------------------------------------------------


def job_status(status: DagsterRunStatus, logs: list[Any] = ()) -> str:
    if status in _QUEUED:
        return "queued"
    if status in _RUNNING:
        return "running"
    if status == DagsterRunStatus.SUCCESS:
        with_errors = any(r.status == "completed_with_errors" or r.records_failed for r in logs)
        return "completed_with_errors" if with_errors else "completed"
    if status == DagsterRunStatus.CANCELED:
        return "canceled"
    return "failed"


def iso(value: datetime | float | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _log_rows(engine: Engine, run_ids: list[str]) -> dict[str, list[Any]]:
    if not run_ids:
        return {}
    log = schema.sync_log
    with engine.connect() as conn:
        rows = conn.execute(select(log).where(log.c.run_id.in_(run_ids)).order_by(log.c.started_at, log.c.id)).all()
    by_run: dict[str, list[Any]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, []).append(row)
    return by_run


def connector_result(row: Any) -> dict[str, Any]:
    return {
        "connector": row.connector_type,
        "status": row.status,
        "recordsSynced": row.records_synced,
        "recordsDeleted": row.records_deleted,
        "recordsFailed": row.records_failed,
        "startedAt": iso(row.started_at),
        "completedAt": iso(row.completed_at),
        "durationMs": row.duration_ms,
        "error": row.error,
        "errors": list(row.errors or []),
    }


def _failure_message(gateway: DagsterGateway, record: RunRecord) -> str | None:
    """Why a job's failed run failed, when its sync_log rows do not say (yet): the step may still be
    writing them after run monitoring failed the run, so a timeout is named here in the sync log's words."""
    run_id = record.dagster_run.run_id
    timed_out = timed_out_message(gateway.instance, record)
    if timed_out:
        return timed_out
    records = gateway.instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE, limit=1).records
    return (
        records[0].event_log_entry.dagster_event.message
        if records and records[0].event_log_entry.dagster_event
        else None
    )


def _connectors_of(record: RunRecord) -> list[str]:
    run = record.dagster_run
    keys = [key.to_user_string() for key in run.asset_selection] if run.asset_selection else None
    return connectors_of(run.job_name, keys)


def launch_view(launch: Launch, *, detail: bool) -> dict[str, Any]:
    """A job the API accepted whose run is not created yet (or could not be): api/launches.py."""
    view: dict[str, Any] = {
        "jobId": launch.job_id,
        "syncId": launch.sync_id,
        "workspaceId": launch.workspace_id,
        "status": "failed" if launch.status == FAILED else "queued",
        "dagsterStatus": None,
        "jobName": launch.job_name,
        "syncType": run_tag(launch.tags, SYNC_TYPE_TAG) or "manual",
        "fullRefresh": full_refresh_tagged(launch.tags),
        "connectors": connectors_of(launch.job_name, launch.asset_keys),
        "attempts": 0,
        "createdAt": iso(launch.created_at),
        "startedAt": None,
        "completedAt": None,
        "durationMs": None,
        "recordsSynced": 0,
        "recordsDeleted": 0,
        "recordsFailed": 0,
    }
    if detail:
        view.update(results=[], errors=[], error=launch.error if launch.status == FAILED else None)
    return view


def job_view(gateway: DagsterGateway, records: list[RunRecord], logs: list[Any], *, detail: bool) -> dict[str, Any]:
    root, latest = records[0], records[-1]
    run = latest.dagster_run
    status = job_status(run.status, logs)
    view: dict[str, Any] = {
        "jobId": root.dagster_run.run_id,
        "syncId": run_tag(root.dagster_run.tags, SYNC_ID_TAG),
        "workspaceId": root.dagster_run.tags.get(PARTITION_TAG),
        "status": status,
        "dagsterStatus": run.status.value,
        "jobName": root.dagster_run.job_name,
        "syncType": run_tag(root.dagster_run.tags, SYNC_TYPE_TAG) or "manual",
        "fullRefresh": full_refresh_tagged(root.dagster_run.tags),
        "connectors": _connectors_of(root),
        "attempts": len(records),
        "createdAt": iso(root.create_timestamp),
        "startedAt": iso(root.start_time),
        "completedAt": iso(latest.end_time) if run.is_finished else None,
        "durationMs": (
            int((latest.end_time - root.start_time) * 1000)
            if run.is_finished and root.start_time and latest.end_time
            else None
        ),
        "recordsSynced": sum(r.records_synced for r in logs),
        "recordsDeleted": sum(r.records_deleted for r in logs),
        "recordsFailed": sum(r.records_failed for r in logs),
    }
    if detail:
        latest_logs = [r for r in logs if r.run_id == run.run_id] or logs
        errors = [e for r in latest_logs for e in (r.errors or [])]
        error = next((r.error for r in latest_logs if r.error), None)
        if status == "failed" and error is None:
            error = _failure_message(gateway, latest)
        view.update(results=[connector_result(r) for r in latest_logs], errors=errors, error=error)
    return view


def get_job(engine: Engine, gateway: DagsterGateway, workspace_id: str, job_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise not_found(f"job {job_id!r}") from None
    # The outbox first: its launcher creates the run before it deletes the row, so a job is always in
    # one or the other.
    launch = find_launch(engine, workspace_id, job_id)
    if launch is not None:
        return launch_view(launch, detail=True)
    records = gateway.job_runs(job_id)
    if not records or records[0].dagster_run.tags.get(PARTITION_TAG) != workspace_id:
        raise not_found(f"job {job_id!r}")
    by_run = _log_rows(engine, [r.dagster_run.run_id for r in records])
    logs = [row for r in records for row in by_run.get(r.dagster_run.run_id, [])]
    return job_view(gateway, records, logs, detail=True)


def _epoch(value: datetime | None) -> float:
    if value is None:
        return 0.0
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def list_jobs(engine: Engine, gateway: DagsterGateway, workspace_id: str, limit: int) -> list[dict[str, Any]]:
    """Newest first: the outbox's launches not yet runs, and the runs."""
    launches = recent_launches(engine, workspace_id, limit)
    roots = gateway.recent_jobs(workspace_id, limit)
    by_run = _log_rows(engine, [r.dagster_run.run_id for r in roots])
    launched = {r.dagster_run.run_id for r in roots}
    timed = [
        (_epoch(launch.created_at), launch_view(launch, detail=False))
        for launch in launches
        if launch.job_id not in launched
    ]
    timed += [
        (_epoch(r.create_timestamp), job_view(gateway, [r], by_run.get(r.dagster_run.run_id, []), detail=False))
        for r in roots
    ]
    timed.sort(key=lambda pair: pair[0], reverse=True)
    return [view for _, view in timed[:limit]]


def history(engine: Engine, workspace_id: str, limit: int) -> list[dict[str, Any]]:
    log = schema.sync_log
    with engine.connect() as conn:
        rows = conn.execute(
            select(log)
            .where(log.c.workspace_id == workspace_id)
            .order_by(log.c.started_at.desc().nulls_last(), log.c.id.desc())
            .limit(limit)
        ).all()
    return [
        {
            "id": row.id,
            "jobId": row.run_id,
            "syncId": row.sync_id,
            "syncType": row.sync_type,
            "mode": row.mode,
            **connector_result(row),
        }
        for row in rows
    ]


def status(engine: Engine, gateway: DagsterGateway, workspace_id: str) -> dict[str, Any]:
    c, log = schema.connections, schema.sync_log
    latest_ids = (
        select(func.max(log.c.id))
        .where(log.c.workspace_id == workspace_id)
        .group_by(log.c.connector_type)
        .scalar_subquery()
    )
    with engine.connect() as conn:
        connections = conn.execute(
            select(c.c.connector_name, c.c.status, c.c.last_sync_at)
            .where(c.c.workspace_id == workspace_id)
            .order_by(c.c.connector_name)
        ).all()
        last = {r.connector_type: r for r in conn.execute(select(log).where(log.c.id.in_(latest_ids))).all()}
        pending = pending_launch(conn, workspace_id)  # before the runs: see get_job
    active = gateway.in_flight(workspace_id)
    active_job = None
    if active:
        record = active[0]
        run = record.dagster_run
        job_id = run.tags.get("dagster/root_run_id", run.run_id)
        active_job = {"jobId": job_id, "status": job_status(run.status), "connectors": _connectors_of(record)}
    elif pending:
        connectors = connectors_of(pending.job_name, pending.asset_keys)
        active_job = {"jobId": pending.job_id, "status": "queued", "connectors": connectors}
    covered = {name: active_job["jobId"] for name in active_job["connectors"]} if active_job else {}
    names = [r.connector_name for r in connections] + sorted(set(last) - {r.connector_name for r in connections})
    by_name = {r.connector_name: r for r in connections}
    return {
        "workspaceId": workspace_id,
        "activeJob": active_job,
        "connectors": [
            {
                "connector": name,
                "connectionStatus": by_name[name].status if name in by_name else "removed",
                "lastStatus": last[name].status if name in last else None,
                "lastSyncAt": iso(by_name[name].last_sync_at) if name in by_name else None,
                "lastStartedAt": iso(last[name].started_at) if name in last else None,
                "lastCompletedAt": iso(last[name].completed_at) if name in last else None,
                "recordsSynced": last[name].records_synced if name in last else 0,
                "recordsDeleted": last[name].records_deleted if name in last else 0,
                "recordsFailed": last[name].records_failed if name in last else 0,
                "lastError": last[name].error if name in last else None,
                "activeJobId": covered.get(name),
            }
            for name in names
        ],
    }
