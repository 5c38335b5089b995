"""Per-workspace health: the asset checks every sync records for each (entity, workspace), their
thresholds, and which connections have gone stale.

Every check is partitioned by workspace (``AssetCheckSpec(partitions_def=...)``, a preview API of
Dagster 1.13, pinned in pyproject): its results show per partition, like the materializations.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, MetadataValue, PreviewWarning
from sqlalchemy import Engine, or_, select

from resources import schema
from resources.connection_config import FAILED_SHARE_KEY
from sync_assets.entity_read import EntityResult

# Partitioned checks are a preview API: Dagster is pinned (1.13.27) and tests/test_health.py covers what we
# use of it, so its warning (one per check spec, at every code-location load) only adds noise.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=PreviewWarning)

FAILED_RECORDS_CHECK = "no_failed_records"
RECONCILIATION_CHECK = "row_count_matches_vendor"
THROTTLING_CHECK = "throttle_ratio_below_limit"
FRESHNESS_CHECK = "synced_recently"

# A connection's config may set its own share (config.max_failed_share: its vendor's data is known to be
# messy); the operator's SYNC_MAX_FAILED_SHARE is the default for all others.
DEFAULT_MAX_FAILED_SHARE = 0.05
DEFAULT_MAX_THROTTLE_RATIO = 0.1
# The daily sync runs at 02:00 UTC: a day plus two hours of slack before a workspace counts as stale.
DEFAULT_MAX_SYNC_AGE_HOURS = 26.0


def max_failed_share(config: Mapping[str, Any]) -> float:
    """Above this share of a read's records failing, the failed-records check fails with ERROR, not WARN."""
    value = config.get(FAILED_SHARE_KEY)
    if value is None:
        value = os.environ.get("SYNC_MAX_FAILED_SHARE", DEFAULT_MAX_FAILED_SHARE)
    return float(value)


def max_throttle_ratio() -> float:
    """``SYNC_MAX_THROTTLE_RATIO``: the share of an entity's calls the vendor may throttle before a WARN."""
    return float(os.environ.get("SYNC_MAX_THROTTLE_RATIO", DEFAULT_MAX_THROTTLE_RATIO))


def max_sync_age() -> timedelta:
    """``SYNC_MAX_SYNC_AGE_HOURS``: how long after its last completed sync a connection counts as stale."""
    return timedelta(hours=float(os.environ.get("SYNC_MAX_SYNC_AGE_HOURS", DEFAULT_MAX_SYNC_AGE_HOURS)))


def failed_records_result(key: AssetKey, result: EntityResult, max_share: float) -> AssetCheckResult:
    """WARN when any record failed; ERROR when more than ``max_share`` of the records read failed."""
    read = result.records_synced + result.records_reread + result.records_failed
    share = result.records_failed / read if read else 0.0
    return AssetCheckResult(
        asset_key=key,
        check_name=FAILED_RECORDS_CHECK,
        passed=result.records_failed == 0,
        severity=AssetCheckSeverity.ERROR if share > max_share else AssetCheckSeverity.WARN,
        metadata={
            "records_failed": result.records_failed,
            "records_read": read,
            "failed_share": MetadataValue.float(round(share, 4)),
            "max_failed_share": MetadataValue.float(max_share),
            "first_errors": MetadataValue.json(result.errors[:5]),
        },
    )


def reconciliation_result(key: AssetKey, result: EntityResult, live_rows: int) -> AssetCheckResult:
    """After a full read, the workspace's live rows from this source against the vendor's own total.
    Records that failed in this read are missing for a known reason (the failed-records check), so the
    warehouse may hold that many fewer. Passes, saying why, when there is nothing to compare."""
    if result.mode != "full" or result.vendor_total is None:
        reason = "incremental sync" if result.mode != "full" else "no total"
        return AssetCheckResult(
            asset_key=key,
            check_name=RECONCILIATION_CHECK,
            passed=True,
            description=f"Not compared: {reason}.",
            metadata={"compared": False, "reason": reason, "warehouse_rows": live_rows},
        )
    total = result.vendor_total
    return AssetCheckResult(
        asset_key=key,
        check_name=RECONCILIATION_CHECK,
        passed=total - result.records_failed <= live_rows <= total,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "compared": True,
            "vendor_total": total,
            "warehouse_rows": live_rows,
            "records_failed": result.records_failed,
            "difference": live_rows - total,
        },
    )


def throttling_result(key: AssetKey, result: EntityResult, max_ratio: float) -> AssetCheckResult:
    ratio = result.throttled_calls / result.api_calls if result.api_calls else 0.0
    return AssetCheckResult(
        asset_key=key,
        check_name=THROTTLING_CHECK,
        passed=ratio <= max_ratio,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "throttled_calls": result.throttled_calls,
            "api_calls": result.api_calls,
            "throttle_ratio": MetadataValue.float(round(ratio, 4)),
            "max_throttle_ratio": MetadataValue.float(max_ratio),
        },
    )


def freshness_result(
    key: AssetKey, last_syncs: Mapping[str, datetime | None], now: datetime, max_age: timedelta
) -> AssetCheckResult:
    """Passes when every connector in ``last_syncs`` (connector -> its last completed sync) synced within
    ``max_age`` of ``now``; a workspace with none of them passes, as there is nothing to be stale."""
    stale = sorted(name for name, at in last_syncs.items() if at is None or now - at > max_age)
    return AssetCheckResult(
        asset_key=key,
        check_name=FRESHNESS_CHECK,
        passed=not stale,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "stale_connectors": MetadataValue.json(stale),
            "last_sync_at": MetadataValue.json(
                {name: at.isoformat() if at else None for name, at in last_syncs.items()}
            ),
            "max_age_hours": MetadataValue.float(max_age.total_seconds() / 3600),
        },
    )


@dataclass(frozen=True)
class StaleConnection:
    workspace_id: str
    connector: str
    last_sync_at: datetime | None


def last_syncs(engine: Engine, workspace_id: str) -> dict[str, datetime | None]:
    """Each active connection of an active workspace: connector -> ``connections.last_sync_at``."""
    c = schema.connections
    with engine.connect() as conn:
        found = conn.execute(
            select(c.c.connector_name, c.c.last_sync_at).where(c.c.workspace_id == workspace_id, c.c.status == "active")
        )
        return {name: aware(at) for name, at in found}


def stale_connections(engine: Engine, now: datetime, max_age: timedelta) -> list[StaleConnection]:
    """Active connections of active workspaces whose last completed sync is older than ``max_age``, or
    that never completed one; by workspace, then connector."""
    ws, c = schema.workspaces, schema.connections
    query = (
        select(c.c.workspace_id, c.c.connector_name, c.c.last_sync_at)
        .join(ws, ws.c.id == c.c.workspace_id)
        .where(
            ws.c.status == "active",
            c.c.status == "active",
            or_(c.c.last_sync_at.is_(None), c.c.last_sync_at < now - max_age),
        )
        .order_by(c.c.workspace_id, c.c.connector_name)
    )
    with engine.connect() as conn:
        return [StaleConnection(w, name, aware(at)) for w, name, at in conn.execute(query)]


def aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive timestamps; the warehouse stores UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)
