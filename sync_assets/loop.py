"""The shared sync loop: for each entity, fetch pages from the vendor, transform each record (capturing
the bad ones), commit whole pages, and only then record how far the sync got. One MaterializeResult per
entity is yielded after its last commit, so a crash replays pages rather than skipping them. How far a
sync may move its watermark is decided in sync_assets/watermark.py.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from dagster import AssetCheckKey, AssetCheckResult, AssetExecutionContext, MaterializeResult

from resources.models import FullReadNeeded
from resources.warehouse import SyncLogRow, WarehouseResource, utcnow
from sync_assets.entity_read import EntityRead, EntityResult, describe_error
from sync_assets.health import (
    failed_records_result,
    freshness_result,
    max_failed_share,
    max_sync_age,
    max_throttle_ratio,
    reconciliation_result,
    throttling_result,
)
from sync_assets.recipe import Connector, Entity
from sync_assets.runs import SYNC_ID_TAG, SYNC_TYPE_TAG, run_tag, timed_out_message
from sync_assets.state import asset_key, read_state, state_metadata
from sync_assets.tables import qualified_table_name
from sync_assets.watermark import FULL_READ, Cursor, ReadWindow, StoredState, WatermarkTracker, plan_read

PROGRESS_INTERVAL_S = 2.0
page_log = logging.getLogger("sync.pages")
if not page_log.handlers:
    _stdout = logging.StreamHandler(sys.stdout)
    _stdout.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    page_log.addHandler(_stdout)
    page_log.setLevel(logging.INFO)
    page_log.propagate = False
# The run's lease: a reaper fails runs whose heartbeat is older than the lease (sensors/reaper.py).
HEARTBEAT_INTERVAL_S = float(os.environ.get("SYNC_HEARTBEAT_SECONDS", "20"))

# (connector, entity, current, total, message): progress sink for webhooks; best effort.
ProgressSink = Callable[[str, str, int, int | None, str], None]


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment else None


class ConnectorSync:
    """Syncs the selected entities of one connector for one workspace within one run step."""

    def __init__(
        self,
        context: AssetExecutionContext,
        connector: Connector,
        warehouse: WarehouseResource,
        client: Any,
        progress: ProgressSink | None = None,
        config: Mapping[str, Any] | None = None,
        full_refresh: bool = False,
    ) -> None:
        self.context = context
        self.connector = connector
        self.warehouse = warehouse
        self.client = client
        self.progress = progress
        self.config = config or {}
        self.workspace_id = context.partition_key
        self.run_id = context.run.run_id
        tags = context.run.tags
        self.full_refresh = full_refresh
        self.sync_type = run_tag(tags, SYNC_TYPE_TAG) or "manual"
        self.sync_id = run_tag(tags, SYNC_ID_TAG)
        self._last_progress = 0.0

    def run(self, entities: list[Entity]) -> Iterator[MaterializeResult | AssetCheckResult]:
        log_row = self.warehouse.start_sync_log(
            self.workspace_id, self.connector.name, self.run_id, self.sync_id, self.sync_type
        )
        results: list[EntityResult] = []
        with Heartbeat(self.warehouse, log_row, HEARTBEAT_INTERVAL_S):
            try:
                account = self.client.account_identity()
                for entity in entities:
                    result = self.sync_entity(entity, account)
                    results.append(result)
                    yield from self.outputs(entity, result, account)
            except BaseException as exc:
                reason = describe_error(exc) if isinstance(exc, Exception) else self.interruption_reason()
                try:
                    self.finish(log_row, results, error=reason)
                except Exception as finish_exc:  # e.g. the warehouse itself is gone; keep the first cause
                    self.context.log.error(f"could not record the failure in sync_log: {describe_error(finish_exc)}")
                raise
        self.finish(log_row, results, error=None)

    def interruption_reason(self) -> str:
        """Name the limit when run monitoring stopped the run for exceeding its max runtime."""
        record = self.context.instance.get_run_record_by_id(self.run_id)
        timed_out = timed_out_message(self.context.instance, record, at=time.time()) if record else None
        if timed_out:
            return timed_out
        return f"Job {self.run_id} was interrupted (canceled or terminated)"

    def sync_entity(self, entity: Entity, account: str | None) -> EntityResult:
        """Plan the entity's window from its stored state (sync_assets/watermark.py), then read it. A vendor
        that no longer covers an incremental window (its deletion log expired) gets a full read."""
        cursor = entity.cursor.with_overrides(self.config)
        key = asset_key(self.connector, entity)
        stored = None if self.full_refresh else read_state(self.context.instance, key, self.workspace_id)
        window = plan_read(cursor, stored, full_refresh=self.full_refresh, account=account, now=utcnow())
        self.log_plan(entity, window, stored, account)
        reader = EntityRead(
            entity=entity,
            client=self.client,
            warehouse=self.warehouse,
            source=self.connector.name,
            workspace_id=self.workspace_id,
            run_id=self.run_id,
            log=self.context.log,
            progress=self.report_progress,
        )
        try:
            result = self.read(reader, cursor, stored, window)
        except FullReadNeeded as exc:
            if window.is_full:
                raise
            self.context.log.warning(f"{self.connector.title} {entity.name}: {exc}; reading everything")
            result = self.read(reader, cursor, stored, FULL_READ)
        if result.records_future_dated:
            self.context.log.warning(
                f"{self.connector.title} {entity.name}: {result.records_future_dated} record(s) dated in the future "
                f"by the vendor's clock; synced, but the watermark stays at {iso(result.watermark)}"
            )
        return result

    @staticmethod
    def read(reader: EntityRead, cursor: Cursor, stored: StoredState | None, window: ReadWindow) -> EntityResult:
        previous = None if window.is_full or stored is None else stored.watermark
        result = EntityResult(reader.entity.name, "full" if window.is_full else "incremental", previous)
        result.last_full_at = None if stored is None else stored.last_full_at
        return reader.run(window, WatermarkTracker(cursor, previous), result)

    def log_plan(self, entity: Entity, window: ReadWindow, stored: StoredState | None, account: str | None) -> None:
        log, name = self.context.log, f"{self.connector.title} {entity.name}"
        if window.since is not None:
            log.info(
                f"{name}: incremental from {iso(window.since)} (watermark {iso(stored.watermark if stored else None)})"
            )
        elif window.resume_token is not None:
            log.info(f"{name}: incremental from the vendor's change log")
        elif stored is not None and not self.full_refresh and account and stored.account and stored.account != account:
            log.warning(f"{name}: the connection now reads another vendor account; full sync")
        else:
            log.info(f"{name}: full sync")

    def report_progress(self, entity: str, result: EntityResult, total: int | None, final: bool) -> None:
        done = result.records_synced + result.records_reread + result.records_failed
        message = f"{self.connector.title} {entity}: {done}{f'/{total}' if total else ''} records read"
        # Every page goes to the step's stdout (the run's compute logs); the Dagster event log, a
        # database write per line, gets the same line at most every PROGRESS_INTERVAL_S and at the end.
        detail = (
            f"{message}, {result.records_synced} changed, {result.records_deleted} deleted ({result.pages} page(s))"
        )
        page_log.info(detail)
        now = time.monotonic()
        if final or now - self._last_progress >= PROGRESS_INTERVAL_S:
            self._last_progress = now
            self.context.log.info(detail)
            if not self.progress:
                return
            try:
                self.progress(self.connector.name, entity, done, total, message)
            except Exception as exc:  # progress is best effort: it never affects the sync
                self.context.log.warning(f"progress notification failed: {describe_error(exc)}")

    def outputs(
        self, entity: Entity, result: EntityResult, account: str | None
    ) -> Iterator[MaterializeResult | AssetCheckResult]:
        key = asset_key(self.connector, entity)
        counts = self.warehouse.row_counts(entity.name, self.workspace_id, self.connector.name)
        metadata: dict[str, Any] = {
            "records_synced": result.records_synced,
            "records_reread": result.records_reread,
            "records_deleted": result.records_deleted,
            "records_failed": result.records_failed,
            "records_future_dated": result.records_future_dated,
            "mode": result.mode,
            "api_calls": result.api_calls,
            "throttled_calls": result.throttled_calls,
            "retries": result.retries,
            "rate_limit_wait_ms": result.rate_limit_wait_ms,
            "pages": result.pages,
            "duration_ms": result.duration_ms,
            "dagster/table_name": qualified_table_name(entity.name),
            # The workspace's rows from this source (soft-deleted ones included), as the table holds them now.
            "dagster/partition_row_count": counts.rows,
        }
        last_full = result.read_started_at if result.mode == "full" else result.last_full_at or result.read_started_at
        metadata |= state_metadata(
            StoredState(result.watermark, result.resume_token, account, last_full, result.read_started_at)
        )
        yield MaterializeResult(asset_key=key, metadata=metadata)
        now = utcnow()
        checks = [
            failed_records_result(key, result, max_failed_share(self.config)),
            reconciliation_result(key, result, counts.live),
            throttling_result(key, result, max_throttle_ratio()),
            # Just synced: fresh. The hourly stale_workspaces job records it stale later (schedules/freshness.py).
            freshness_result(key, {self.connector.name: now}, now, max_sync_age()),
        ]
        selected = self.context.selected_asset_check_keys
        yield from (c for c in checks if AssetCheckKey(key, c.check_name) in selected)

    def finish(self, log_row: SyncLogRow, results: list[EntityResult], error: str | None) -> None:
        failed = sum(r.records_failed for r in results)
        status = "failed" if error else "completed_with_errors" if failed else "completed"
        modes = {r.mode for r in results}
        marks_from = [r.watermark_from for r in results if r.watermark_from]
        marks_to = [r.watermark for r in results if r.watermark]
        self.warehouse.finish_sync_log(
            log_row,
            status=status,
            records_synced=sum(r.records_synced for r in results),
            records_deleted=sum(r.records_deleted for r in results),
            records_failed=failed,
            errors=[e for r in results for e in r.errors],
            error=error,
            mode=("full" if "full" in modes else "incremental") if modes else None,
            watermark_from=iso(min(marks_from)) if marks_from else None,
            watermark_to=iso(max(marks_to)) if marks_to else None,
        )
        if not error:
            self.warehouse.mark_synced(self.workspace_id, self.connector.name, utcnow())


class Heartbeat:
    """Renews the sync_log lease from a background thread while the step runs, so a long vendor
    wait (a Bulk job, a rate limit) is not mistaken for a dead worker."""

    def __init__(self, warehouse: WarehouseResource, log_row: SyncLogRow, interval_s: float) -> None:
        self._warehouse, self._log_row, self._interval_s = warehouse, log_row, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{log_row.id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._warehouse.heartbeat(self._log_row)
            except Exception:  # a missed beat only shortens the lease; the sync itself reports DB loss
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
