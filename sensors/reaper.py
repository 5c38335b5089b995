"""Fails runs whose worker died: the default run launcher cannot see a crashed run process, so each
sync holds a lease (sync_log.heartbeat_at, renewed by the sync loop) and this sensor reaps runs whose
lease expired, freeing the workspace's queue slot. A run that still has a live sync (a step redelivered to
another Celery worker after its first worker died) keeps running: only the dead attempt is closed."""

from __future__ import annotations

import os
from datetime import timedelta

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from sqlalchemy import select

from resources import schema
from resources.notifier import NotifierResource
from resources.warehouse import WarehouseResource, fail_running_syncs, utcnow
from sensors.run_status import settle_stopped_run
from sync_assets.runs import timed_out_message, worker_lost_message

LEASE_S = float(os.environ.get("SYNC_LEASE_SECONDS", "120"))
ALIVE = {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}
STOPPED = {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def lost_worker_message(run_id: str, silent_s: float) -> str:
    return worker_lost_message(f"no heartbeat for {int(silent_s)}s (lease {int(LEASE_S)}s), run {run_id}")


def retry_pending(instance: DagsterInstance, run_id: str, now: float) -> bool:
    """Whether a step of the run is waiting out a retry (after losing the warehouse, which also stopped
    its heartbeat): the run is alive until that wait plus one lease has passed."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY, ascending=False, limit=1
    ).records
    if not records:
        return False
    entry = records[0].event_log_entry
    wait = getattr(entry.dagster_event.event_specific_data, "seconds_to_wait", None) or 0
    return now < entry.timestamp + wait + LEASE_S


@sensor(
    name="stale_run_reaper",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=int(os.environ.get("SYNC_REAPER_INTERVAL_SECONDS", "15")),
    description="Fails runs whose sync_log heartbeat is older than SYNC_LEASE_SECONDS (default 120 s).",
)
def stale_run_reaper(context: SensorEvaluationContext, warehouse: WarehouseResource, notifier: NotifierResource):
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
        unsettled: dict[str, DagsterRun] = {}
        for row_id, run_id, heartbeat_at in stale:
            beat = heartbeat_at if heartbeat_at.tzinfo else heartbeat_at.replace(tzinfo=now.tzinfo)
            record = context.instance.get_run_record_by_id(run_id) if run_id else None
            if record and record.dagster_run.status in STOPPED:
                # Failed or canceled while the warehouse was unreachable: its sensor could not settle it.
                unsettled[run_id] = record.dagster_run
                continue
            # A run stopped at its max runtime whose step could not close its row is a timeout, not a lost
            # worker: the row says so in the words the API and the step itself use.
            message = (timed_out_message(context.instance, record) if record else None) or lost_worker_message(
                run_id or "?", (now - beat).total_seconds()
            )
            fail_running_syncs(conn, message, log.c.id == row_id)
            run = record.dagster_run if record else None
            alive = run is not None and run.status in ALIVE and run_id not in reaped_runs | live_runs
            if alive and not retry_pending(context.instance, run_id, now.timestamp()):
                context.instance.report_run_failed(run, message)
                reaped_runs.add(run_id)
            context.log.warning(message)
    for run in unsettled.values():
        settle_stopped_run(context.instance, run, warehouse, notifier, context.log)
    if not stale:
        return SkipReason("no expired leases")
    settled = f"; settled {len(unsettled)} stopped run(s)" if unsettled else ""
    return SkipReason(f"reaped {len(stale)} sync(s) in {len(reaped_runs)} run(s){settled}")
