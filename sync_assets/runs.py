"""The vocabulary every launcher of a sync shares (the API, the daily schedule, the sync loop, the
sensors): run tags, the statuses that count as busy, and which assets a workspace sync selects."""

from __future__ import annotations

from dagster import DagsterRunStatus

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


def connector_asset_names(connectors: list[str]) -> list[str]:
    """The asset keys ("hubspot/deals", …) a workspace sync of these connectors selects."""
    from sync_assets import CONNECTORS_BY_NAME

    return [name for connector in connectors for name in CONNECTORS_BY_NAME[connector].asset_names]
