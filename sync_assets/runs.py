"""The vocabulary every launcher of a sync shares (the API, the daily schedule, the sync loop, the
sensors): run tags, the run config of a sync step, the statuses that count as busy, and which assets a
workspace sync selects."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from dagster import Config, DagsterInstance, DagsterRunStatus, RunRecord
from pydantic import Field

PARTITION_TAG = "dagster/partition"  # the workspace; also what the per-workspace run limit keys on
MAX_RUNTIME_TAG = "dagster/max_runtime"
PRIORITY_TAG = "dagster/priority"
# The project's own tags carry its name as a prefix, as Dagster's carry "dagster/".
TAG_PREFIX = "sales-sync/"
SYNC_TYPE_TAG = f"{TAG_PREFIX}sync_type"  # manual | scheduled
SYNC_ID_TAG = f"{TAG_PREFIX}sync_id"
# A label for run lists; what a step does is decided by its run config (SyncConfig), which wins.
FULL_REFRESH_TAG = f"{TAG_PREFIX}full_refresh"
# Runs launched before the prefix (and callers that still send these) are read as before.
LEGACY_TAGS = {SYNC_TYPE_TAG: "sync_type", SYNC_ID_TAG: "sync_id", FULL_REFRESH_TAG: "full_refresh"}
TRUE_VALUES = {"1", "true", "yes"}
MAX_LOOKBACK_HOURS = 8760  # a year


def run_tag(tags: Mapping[str, str], key: str) -> str | None:
    """A project tag of a run, under its prefixed name or, for older runs, its legacy one."""
    value = tags.get(key)
    return value if value is not None else tags.get(LEGACY_TAGS.get(key, key))


class SyncConfig(Config):
    """The run config of one connector's sync step, shown and checked in the Launchpad."""

    full_refresh: bool = Field(
        default=False, description="Read everything from the vendor, ignoring the stored watermarks."
    )
    lookback_hours: int | None = Field(
        default=None,
        ge=0,
        le=MAX_LOOKBACK_HOURS,
        description="Re-read this many hours before the watermark for this run only "
        "(overrides the connection's lookback_hours; 0 to 8760).",
    )


def sync_op_name(connector: str) -> str:
    """The op (step) of a connector's multi_asset: where its SyncConfig goes in run config."""
    return f"{connector}_sync"


def sync_run_config(
    connectors: list[str], *, full_refresh: bool = False, lookback_hours: int | None = None
) -> dict[str, Any]:
    """Run config giving each connector's step the same SyncConfig. Only the steps a run executes may
    appear: Dagster rejects config for ops outside the run's selection."""
    config: dict[str, Any] = {"full_refresh": full_refresh}
    if lookback_hours is not None:
        config["lookback_hours"] = lookback_hours
    return {"ops": {sync_op_name(c): {"config": dict(config)} for c in connectors}}


def full_refresh_tagged(tags: Mapping[str, str]) -> bool:
    """Whether a run carries the full-refresh tag (prefixed or legacy)."""
    return (run_tag(tags, FULL_REFRESH_TAG) or "").lower() in TRUE_VALUES


def full_refresh_requested(
    config: SyncConfig, run_config: Mapping[str, Any], connector: str, tags: Mapping[str, str]
) -> bool:
    """Whether a step reads everything: its run config's ``full_refresh`` when the run config sets it,
    else the full-refresh tag (runs and callers from before SyncConfig)."""
    step_config = run_config.get("ops", {}).get(sync_op_name(connector), {}).get("config") or {}
    if "full_refresh" in step_config:
        return config.full_refresh
    return full_refresh_tagged(tags)


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
    """The words for a run stopped at its max runtime ("Job <id> exceeded timeout of <ms>ms"): the sync log and
    the API agree."""
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
    """The timeout message, named by the job id users hold (a retried run's root), when the run was past
    its limit at ``at`` (default: its end, else now); None otherwise."""
    if not past_max_runtime(instance, record, at or record.end_time):
        return None
    run = record.dagster_run
    return job_timeout_message(run.root_run_id or run.run_id, max_runtime_s(instance, record) or 0)


def connector_asset_names(connectors: list[str]) -> list[str]:
    """The connector asset keys ("hubspot/deals", …) of these connectors."""
    from sync_assets import CONNECTORS_BY_NAME

    return [name for connector in connectors for name in CONNECTORS_BY_NAME[connector].asset_names]


def sync_asset_names(connectors: list[str]) -> list[str]:
    """What a workspace sync of these connectors selects: their assets, then the warehouse tables they
    write ("warehouse/deals", …), which record their size in the same run. Tables fed only by the
    workspace's other connectors stay out, so no step waits on a connector the run does not sync."""
    from sync_assets import CONNECTORS_BY_NAME
    from sync_assets.tables import tables_written_by

    tables = [key.to_user_string() for c in connectors for key in tables_written_by(CONNECTORS_BY_NAME[c])]
    return connector_asset_names(connectors) + list(dict.fromkeys(tables))


def connectors_of(job_name: str, asset_keys: Iterable[str] | None) -> list[str]:
    """The connectors a job syncs: its connector assets' first path segments (not the warehouse tables'), or
    the one of ``sync_<connector>``."""
    from sync_assets import CONNECTORS_BY_NAME

    if asset_keys:
        return sorted({key.split("/")[0] for key in asset_keys} & CONNECTORS_BY_NAME.keys())
    if job_name.startswith("sync_") and job_name[5:] in CONNECTORS_BY_NAME:
        return [job_name[5:]]
    return []
