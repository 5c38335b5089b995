"""Run outcomes -> webhook outbox: ``sync.completed``, ``sync.failed`` and ``sync.canceled``.

Each sensor writes the outbox (the delivery sensor and the immediate dispatcher send it), once per
(run id, status) through the row's dedupe key, so a replayed tick sends nothing twice. The failure and
cancel sensors first close the run's sync_log rows that its stopped step left open. They return None:
returning anything limits a run-status tick to one run. No ``monitored_jobs``: runs launched from the
UI (``__ASSET_JOB``) count too; runs are filtered here to those of a workspace with a webhook.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)
from dagster._utils.error import SerializableErrorInfo
from sqlalchemy import select

from resources import schema
from resources.notifier import NotifierResource, job_id_of
from resources.warehouse import WarehouseResource
from resources.webhooks.config import has_webhook
from sync_assets import CONNECTORS, CONNECTORS_BY_NAME
from sync_assets.runs import (
    PARTITION_TAG,
    SYNC_ID_TAG,
    SYNC_TYPE_TAG,
    connectors_of,
    run_tag,
    timed_out_message,
    worker_lost_message,
)
from sync_assets.state import watermark_text

WILL_RETRY_TAG = "dagster/will_retry"
FAILURE_REASON_TAG = "dagster/failure_reason"
MAX_ERRORS = 10
INTERVAL_S = 5
# Dagster tags a failed run dagster/will_retry just after storing its failure event: wait this long for it.
WILL_RETRY_TAG_WAIT_S = 2.0
# Dagster's message for a run failed with no reason given (the code server does so for a dead process).
FAILED_FROM_OUTSIDE = "This run has been marked as failed from outside the execution context."
CRASH_PREFIX = "Run execution process for "
ENGINE_EVENTS_SCANNED = 20
STEP_CONNECTORS = {f"{c.name}_sync": c.name for c in CONNECTORS}
# Wrappers Dagster puts around the user's exception; the cause is below them.
FRAMEWORK_ERRORS = ("Dagster", "RetryRequested")


def run_workspace(run: DagsterRun, notifier: NotifierResource) -> str | None:
    """The workspace a run synced, when it has a webhook to tell."""
    workspace = run.tags.get(PARTITION_TAG)
    return workspace if workspace and has_webhook(notifier.engine, workspace) else None


def results_of(instance: DagsterInstance, run_id: str) -> list[dict[str, Any]]:
    """Per-entity results from the run's materializations (what the sync loop committed)."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    results = []
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        # Connector assets only: the warehouse tables' materializations of the run are not sync results.
        if materialization is None or materialization.asset_key.path[0] not in CONNECTORS_BY_NAME:
            continue
        meta = {k: v.value for k, v in materialization.metadata.items()}
        connector, entity = materialization.asset_key.path
        results.append(
            {
                "connector": connector,
                "entity": entity,
                "recordsSynced": meta.get("records_synced", 0),
                "recordsDeleted": meta.get("records_deleted", 0),
                "recordsFailed": meta.get("records_failed", 0),
                "mode": meta.get("mode"),
                "watermark": watermark_text(materialization.metadata),
            }
        )
    return results


def errors_of(notifier: NotifierResource, run_id: str) -> list[str]:
    """The first per-record errors ("Entity: error (id)") the run's connectors logged."""
    log = schema.sync_log
    with notifier.engine.connect() as conn:
        lists = conn.execute(select(log.c.errors).where(log.c.run_id == run_id).order_by(log.c.id)).scalars()
        return [e for errors in lists for e in (errors or [])][:MAX_ERRORS]


def duration_ms(instance: DagsterInstance, run_id: str) -> int | None:
    record = instance.get_run_record_by_id(run_id)
    if record is None or record.start_time is None:
        return None
    end = record.end_time or time.time()
    return int((end - record.start_time) * 1000)


def base_data(instance: DagsterInstance, run: DagsterRun, notifier: NotifierResource) -> dict[str, Any]:
    job_id = job_id_of(run.run_id, run.tags)
    return {
        "jobId": job_id,
        "syncId": run_tag(run.tags, SYNC_ID_TAG) or job_id,
        "runId": run.run_id,
        "durationMs": duration_ms(instance, run.run_id),
        "results": results_of(instance, run.run_id),
        "errors": errors_of(notifier, run.run_id),
    }


def root_cause(error: SerializableErrorInfo) -> SerializableErrorInfo:
    """The first error in the cause chain that is not one of Dagster's wrappers."""
    chain = []
    current: SerializableErrorInfo | None = error
    while current is not None and len(chain) < 20:
        chain.append(current)
        current = current.cause or current.context
    for candidate in chain:
        if not (candidate.cls_name or "").startswith(FRAMEWORK_ERRORS):
            return candidate
    return chain[-1]


def error_text(error: SerializableErrorInfo) -> str:
    """The exception's own message, without the "module.Class: " prefix Dagster serializes it with."""
    message = error.message.strip()
    head, sep, rest = message.partition(": ")
    if sep and error.cls_name and (head == error.cls_name or head.endswith(f".{error.cls_name}")):
        return rest.strip()
    return message


def failure_reason(run: DagsterRun, message: str) -> str:
    tag = run.tags.get(FAILURE_REASON_TAG, "")
    if tag == "START_TIMEOUT" or "maximum runtime" in message or "timed out" in message:
        return "timeout"
    if tag in ("RUN_WORKER_RESTART", "UNEXPECTED_TERMINATION") or "run worker" in message:
        return "worker_lost"
    return "error"


def crash_explanation(instance: DagsterInstance, run_id: str) -> str | None:
    """What the code server logged when it found the run's process dead (killed, out of memory)."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ENGINE_EVENT, ascending=False, limit=ENGINE_EVENTS_SCANNED
    ).records
    for record in records:
        message = record.event_log_entry.dagster_event.message if record.event_log_entry.dagster_event else None
        start = message.find(CRASH_PREFIX) if message else -1
        if start >= 0:  # after the "[DagsterApiServer] " label
            return message[start:]
    return None


def failure_data(
    instance: DagsterInstance, run: DagsterRun, failure: DagsterEvent | None, step_failures: list[DagsterEvent]
) -> dict[str, Any]:
    """The real cause: the failed step's exception below Dagster's wrappers, else the run's own failure
    (for a run whose process died, the code server's account of how)."""
    run_message = (failure.message if failure else None) or ""
    if run_message == FAILED_FROM_OUTSIDE:
        crash = crash_explanation(instance, run.run_id)
        if crash:
            return {"connector": None, "failureReason": "worker_lost", "error": crash, "errorType": None}
    cause, connector = None, None
    for event in step_failures:
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            cause, connector = root_cause(error), STEP_CONNECTORS.get(event.step_key or "", event.step_key)
            break
    if cause is None and failure is not None:
        run_error = getattr(failure.event_specific_data, "error", None)
        cause = root_cause(run_error) if run_error else None
    return {
        "connector": connector,
        "failureReason": failure_reason(run, run_message),
        "error": error_text(cause) if cause else run_message,
        "errorType": cause.cls_name if cause else None,
    }


def stored_failure_data(instance: DagsterInstance, run: DagsterRun) -> dict[str, Any]:
    """`failure_data` read back from the run's event log, for a failed run the sensor could not settle."""

    def events(kind: DagsterEventType) -> list[DagsterEvent]:
        found = instance.get_records_for_run(run.run_id, of_type=kind).records
        return [r.event_log_entry.dagster_event for r in found if r.event_log_entry.dagster_event]

    failures = events(DagsterEventType.RUN_FAILURE)
    return failure_data(instance, run, failures[-1] if failures else None, events(DagsterEventType.STEP_FAILURE))


def fresh_run(instance: DagsterInstance, run: DagsterRun) -> DagsterRun:
    latest = instance.get_run_by_id(run.run_id) or run
    if run.status == DagsterRunStatus.FAILURE and instance.run_retries_enabled:
        deadline = time.monotonic() + WILL_RETRY_TAG_WAIT_S
        while WILL_RETRY_TAG not in latest.tags and time.monotonic() < deadline:
            time.sleep(0.2)
            latest = instance.get_run_by_id(run.run_id) or latest
    return latest


def close_syncs(
    instance: DagsterInstance,
    run: DagsterRun,
    warehouse: WarehouseResource,
    cause: str,
    log: logging.Logger,
    *,
    stopped_from_outside: bool,
) -> None:
    """The run's outcome wins: before a failed or canceled run is told, its open sync_log rows are failed,
    and, when the run was stopped from outside (max runtime, cancel, lost worker) rather than by a failing
    step, so are the rows whose step had finished. The webhook, the API's job view (both read the run) and
    the table then agree: Dagster's run status is the one every other view already shows, and the
    committed records stay either way. A timeout is named in the words the step itself would have used."""
    record = instance.get_run_record_by_id(run.run_id)
    reason = (timed_out_message(instance, record) if record else None) or cause
    closed = warehouse.close_open_syncs(run.run_id, reason)
    overruled, unstarted = 0, 0
    workspace = run.tags.get(PARTITION_TAG)
    if stopped_from_outside:
        overruled = warehouse.fail_finished_syncs(run.run_id, reason)
        if workspace:
            keys = [key.to_user_string() for key in run.asset_selection] if run.asset_selection else None
            sync_type = run_tag(run.tags, SYNC_TYPE_TAG) or "manual"
            connectors = connectors_of(run.job_name, keys)
            sync_id = run_tag(run.tags, SYNC_ID_TAG)
            unstarted = warehouse.record_unstarted_syncs(run.run_id, workspace, connectors, reason, sync_type, sync_id)
    if closed or overruled or unstarted:
        log.info(
            f"failed {closed} open, {overruled} finished and {unstarted} unstarted sync_log row(s) of run "
            f"{run.run_id}: {reason}"
        )


def record_outcome(
    instance: DagsterInstance,
    run: DagsterRun,
    notifier: NotifierResource,
    event: str,
    log: logging.Logger,
    extra: dict[str, Any] | None = None,
) -> None:
    status = run.status
    run = fresh_run(instance, run)
    if run.tags.get(WILL_RETRY_TAG) == "true":
        log.info(f"run {run.run_id} failed and will be retried; its final outcome is reported instead")
        return
    workspace = run_workspace(run, notifier)
    if workspace is None:
        return
    data = {**base_data(instance, run, notifier), **(extra or {})}
    event_id = notifier.notify(workspace, event, data, dedupe_key=f"{run.run_id}:{status.value}")
    if event_id:
        log.info(f"queued {event} {event_id} for workspace {workspace} (run {run.run_id})")


def settle_failed_run(
    instance: DagsterInstance,
    run: DagsterRun,
    data: dict[str, Any],
    warehouse: WarehouseResource,
    notifier: NotifierResource,
    log: logging.Logger,
) -> None:
    lost = data["failureReason"] == "worker_lost"
    cause = worker_lost_message(data["error"]) if lost else data["error"]
    outside = data["failureReason"] != "error" or data["connector"] is None
    close_syncs(instance, run, warehouse, cause, log, stopped_from_outside=outside)
    record_outcome(instance, run, notifier, "sync.failed", log, data)


def settle_canceled_run(
    instance: DagsterInstance,
    run: DagsterRun,
    warehouse: WarehouseResource,
    notifier: NotifierResource,
    log: logging.Logger,
) -> None:
    cause = f"Job {job_id_of(run.run_id, run.tags)} was canceled"
    close_syncs(instance, run, warehouse, cause, log, stopped_from_outside=True)
    record_outcome(instance, run, notifier, "sync.canceled", log)


def settle_stopped_run(
    instance: DagsterInstance,
    run: DagsterRun,
    warehouse: WarehouseResource,
    notifier: NotifierResource,
    log: logging.Logger,
) -> None:
    """What the failure and cancel sensors do, for a run they could not settle (the warehouse was down
    when their tick came): the lease reaper calls it on the run's rows left open. The outbox's dedupe
    key keeps the webhook to one."""
    if run.status == DagsterRunStatus.CANCELED:
        settle_canceled_run(instance, run, warehouse, notifier, log)
    else:
        settle_failed_run(instance, run, stored_failure_data(instance, run), warehouse, notifier, log)


@run_status_sensor(
    name="webhook_sync_completed",
    run_status=DagsterRunStatus.SUCCESS,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=INTERVAL_S,
    description="Queues a signed sync.completed webhook for every successful workspace sync.",
)
def sync_completed_sensor(context: RunStatusSensorContext, notifier: NotifierResource) -> None:
    record_outcome(context.instance, context.dagster_run, notifier, "sync.completed", context.log)


@run_failure_sensor(
    name="webhook_sync_failed",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=INTERVAL_S,
    description="Queues a signed sync.failed webhook (with the real cause) for every failed workspace sync.",
)
def sync_failed_sensor(
    context: RunFailureSensorContext, notifier: NotifierResource, warehouse: WarehouseResource
) -> None:
    run = context.dagster_run
    data = failure_data(context.instance, run, context.failure_event, context.get_step_failure_events())
    settle_failed_run(context.instance, run, data, warehouse, notifier, context.log)


@run_status_sensor(
    name="webhook_sync_canceled",
    run_status=DagsterRunStatus.CANCELED,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=INTERVAL_S,
    description="Queues a signed sync.canceled webhook for every canceled workspace sync.",
)
def sync_canceled_sensor(
    context: RunStatusSensorContext, notifier: NotifierResource, warehouse: WarehouseResource
) -> None:
    settle_canceled_run(context.instance, context.dagster_run, warehouse, notifier, context.log)


run_status_sensors = [sync_completed_sensor, sync_failed_sensor, sync_canceled_sensor]
