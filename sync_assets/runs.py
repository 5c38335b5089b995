"""The vocabulary every launcher of a sync shares (the API, the daily schedule, the sync loop, the
sensors): run tags, the statuses that count as busy, and which assets a workspace sync selects."""

from __future__ import annotations

import time

from dagster import DagsterInstance, DagsterRunStatus, RunRecord

PARTITION_TAG = "dagster/partition"  # the workspace; also what the per-workspace run limit keys on
MAX_RUNTIME_TAG = "dagster/max_runtime"
PRIORITY_TAG = "dagster/priority"
SYNC_TYPE_TAG = "sync_type"  # manual | scheduled
SYNC_ID_TAG = "sync_id"
FULL_REFRESH_TAG = "full_refresh"

# API-triggered runs jump the nightly batch in the queue.
SCHEDULED_PRIORITY = "0"
API_PRIORITY = "10"

# A workspace with a run in one of these is busy (Dagster's own "in progress" list omits QUEUED).
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def job_timeout_message(run_id: str, limit_s: float) -> str:
    """The seed's MW-1 wording for a run stopped at its max runtime: the sync log and the API agree."""
    return f"Job {run_id} exceeded timeout of {int(limit_s * 1000)}ms"


def worker_lost_message(detail: str) -> str:
    """A sync whose run process is gone, in the words the reaper and the run-failure sensor share."""
    return f"Sync worker lost: {detail}"


def max_runtime_s(instance: DagsterInstance, record: RunRecord) -> float | None:
    """The run's limit: its ``dagster/max_runtime`` tag, else the instance's run-monitoring default."""
    raw = record.dagster_run.tags.get(MAX_RUNTIME_TAG)
    try:
        return float(raw) if raw else instance.run_monitoring_max_runtime_seconds or None
    except ValueError:
        return None


def past_max_runtime(instance: DagsterInstance, record: RunRecord, at: float | None = None) -> bool:
    """Whether the run had been running longer than its limit at ``at`` (default: now)."""
    limit, started = max_runtime_s(instance, record), record.start_time
    return bool(limit and started and (at or time.time()) - started >= limit)


def timed_out_message(instance: DagsterInstance, record: RunRecord, at: float | None = None) -> str | None:
    """The MW-1 message, named by the job id users hold (a retried run's root), when the run was past
    its limit at ``at`` (default: its end, else now); None otherwise."""
    if not past_max_runtime(instance, record, at or record.end_time):
        return None
    run = record.dagster_run
    return job_timeout_message(run.root_run_id or run.run_id, max_runtime_s(instance, record) or 0)


def connector_asset_names(connectors: list[str]) -> list[str]:
    """The asset keys ("hubspot/deals", …) a workspace sync of these connectors selects."""
    from sync_assets import CONNECTORS_BY_NAME

    return [name for connector in connectors for name in CONNECTORS_BY_NAME[connector].asset_names]
