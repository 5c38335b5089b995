"""Fails runs whose worker died: the default run launcher cannot see a crashed run process, so each
sync holds a lease (sync_log.heartbeat_at, renewed by the sync loop) and this sensor reaps runs whose
lease expired, freeing the workspace's queue slot. A run that still has a live sync (a step redelivered to
another Celery worker after its first worker died) keeps running: only the dead attempt is closed."""

from __future__ import annotations

import os
from datetime import timedelta

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from sqlalchemy import select

from resources import schema
from resources.warehouse import WarehouseResource, fail_running_syncs, utcnow
from sync_assets.runs import timed_out_message, worker_lost_message

LEASE_S = float(os.environ.get("SYNC_LEASE_SECONDS", "120"))
ALIVE = {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}


def lost_worker_message(run_id: str, silent_s: float) -> str:
    return worker_lost_message(f"no heartbeat for {int(silent_s)}s (lease {int(LEASE_S)}s), run {run_id}")


@sensor(
    name="stale_run_reaper",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=int(os.environ.get("SYNC_REAPER_INTERVAL_SECONDS", "15")),
    description="Fails runs whose sync_log heartbeat is older than SYNC_LEASE_SECONDS (default 120 s).",
)
def stale_run_reaper(context: SensorEvaluationContext, warehouse: WarehouseResource):
    log = schema.sync_log
    now = utcnow()
    cutoff = now - timedelta(seconds=LEASE_S)
    with warehouse.engine.begin() as conn:
        stale = conn.execute(
            select(log.c.id, log.c.run_id, log.c.heartbeat_at).where(
                log.c.status == "running", log.c.heartbeat_at < cutoff
            )
        ).all()
        live_runs = set(
            conn.execute(
                select(log.c.run_id).where(log.c.status == "running", log.c.heartbeat_at >= cutoff).distinct()
            ).scalars()
        )
        reaped_runs: set[str] = set()
        for row_id, run_id, heartbeat_at in stale:
            beat = heartbeat_at if heartbeat_at.tzinfo else heartbeat_at.replace(tzinfo=now.tzinfo)
            record = context.instance.get_run_record_by_id(run_id) if run_id else None
            # A run stopped at its max runtime whose step could not close its row is a timeout, not a lost
            # worker: the row says so in the words the API and the step itself use.
            message = (timed_out_message(context.instance, record) if record else None) or lost_worker_message(
                run_id or "?", (now - beat).total_seconds()
            )
            fail_running_syncs(conn, message, log.c.id == row_id)
            run = record.dagster_run if record else None
            if run is not None and run.status in ALIVE and run_id not in reaped_runs | live_runs:
                context.instance.report_run_failed(run, message)
                reaped_runs.add(run_id)
            context.log.warning(message)
    if not stale:
        return SkipReason("no expired leases")
    return SkipReason(f"reaped {len(stale)} sync(s) in {len(reaped_runs)} run(s)")
