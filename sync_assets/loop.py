"""The shared sync loop: pages in, per-record transform with error capture, atomic commits of whole
pages, watermark advanced only by committed rows, one MaterializeResult per entity after its last commit.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    MaterializeResult,
    MetadataValue,
)
from pydantic import ValidationError

from resources.warehouse import PageWriter, WarehouseResource, dead_letter_row, utcnow
from sync_assets.recipe import Connector, Entity
from sync_assets.runs import FULL_REFRESH_TAG, SYNC_ID_TAG, SYNC_TYPE_TAG, timed_out_message

FAILED_RECORDS_CHECK = "no_failed_records"
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
# Pages are committed together up to this many records, or this long after the last commit.
COMMIT_ROWS = 1000
COMMIT_INTERVAL_S = 1.0
# Beyond this many records at one instant, the boundary is simply re-read (upserts absorb it).
MAX_WATERMARK_IDS = 1000

# (connector, entity, current, total, message): progress sink for webhooks; best effort.
ProgressSink = Callable[[str, str, int, int | None, str], None]


@dataclass
class EntityResult:
    entity: str
    mode: str
    watermark_from: datetime | None
    watermark: datetime | None
    records_synced: int = 0
    records_failed: int = 0
    pages: int = 0
    api_calls: int = 0
    duration_ms: int = 0
    records_skipped: int = 0
    errors: list[str] = field(default_factory=list)
    # Ids committed at exactly the watermark instant: an inclusive (>=) re-read skips them.
    watermark_ids: set[str] = field(default_factory=set)


def describe_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}" for err in exc.errors())
    return str(exc) or type(exc).__name__


def asset_key(connector: Connector, entity: Entity) -> AssetKey:
    return AssetKey([connector.name, entity.name])


def read_watermark(context: AssetExecutionContext, key: AssetKey, partition: str) -> tuple[datetime | None, set[str]]:
    """The watermark lives in the latest materialization's metadata of (asset, partition)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None, set()
    metadata = records[0].asset_materialization.metadata
    value = getattr(metadata.get("watermark"), "value", None)
    ids = getattr(metadata.get("watermark_ids"), "value", None) or []
    return (datetime.fromisoformat(value) if value else None), set(ids)


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
        lookback: timedelta | None = None,
    ) -> None:
        self.context = context
        self.connector = connector
        self.lookback = connector.lookback if lookback is None else lookback
        self.warehouse = warehouse
        self.client = client
        self.progress = progress
        self.workspace_id = context.partition_key
        self.run_id = context.run.run_id
        tags = context.run.tags
        self.full_refresh = tags.get(FULL_REFRESH_TAG, "").lower() in {"1", "true", "yes"}
        self.sync_type = tags.get(SYNC_TYPE_TAG, "manual")
        self.sync_id = tags.get(SYNC_ID_TAG)
        self._last_progress = 0.0

    def run(self, entities: list[Entity]) -> Iterator[MaterializeResult | AssetCheckResult]:
        log_id = self.warehouse.start_sync_log(
            self.workspace_id, self.connector.name, self.run_id, self.sync_id, self.sync_type
        )
        results: list[EntityResult] = []
        with Heartbeat(self.warehouse, log_id, HEARTBEAT_INTERVAL_S):
            try:
                for entity in entities:
                    result = self.sync_entity(entity, log_id)
                    results.append(result)
                    yield from self.outputs(entity, result)
            except BaseException as exc:
                reason = describe_error(exc) if isinstance(exc, Exception) else self.interruption_reason()
                try:
                    self.finish(log_id, results, error=reason)
                except Exception as finish_exc:  # e.g. the warehouse itself is gone; keep the first cause
                    self.context.log.error(f"could not record the failure in sync_log: {describe_error(finish_exc)}")
                raise
        self.finish(log_id, results, error=None)

    def interruption_reason(self) -> str:
        """Name the limit when run monitoring stopped the run for exceeding its max runtime."""
        record = self.context.instance.get_run_record_by_id(self.run_id)
        timed_out = timed_out_message(self.context.instance, record, at=time.time()) if record else None
        if timed_out:
            return timed_out
        return f"Job {self.run_id} was interrupted (canceled or terminated)"

    def sync_entity(self, entity: Entity, log_id: int) -> EntityResult:
        key = asset_key(self.connector, entity)
        previous, seen_ids = (
            (None, set()) if self.full_refresh else read_watermark(self.context, key, self.workspace_id)
        )
        since = previous - self.lookback if previous else None
        result = EntityResult(entity.name, "incremental" if since else "full", previous, previous)
        result.watermark_ids = set(seen_ids)
        # A lookback re-reads on purpose (vendors without a modified time: an edit keeps the record's
        # time), so records at the old watermark are re-read too rather than skipped as already seen.
        boundary_ids = set() if self.lookback else seen_ids
        started, calls_before = time.monotonic(), self.client.api_calls
        log = self.context.log
        if since:
            log.info(f"{self.connector.title} {entity.name}: incremental from {iso(since)} (watermark {iso(previous)})")
        else:
            log.info(f"{self.connector.title} {entity.name}: full sync")
        total: int | None = None
        with self.warehouse.page_writer() as writer:
            batch = PageBatch()
            try:
                for page in prefetched(entity.fetch(self.client, since)):
                    total = page.total if page.total is not None else total
                    batch.add(*self.transform_page(entity, page.records, result, since, boundary_ids))
                    if batch.due():
                        self.commit(writer, entity, batch, result, total)
            except Exception:
                # The vendor failed part-way: the pages read before it are whole; keep them.
                if batch.pages:
                    self.commit(writer, entity, batch, result, total)
                raise
            if batch.pages:
                self.commit(writer, entity, batch, result, total)
        result.api_calls = self.client.api_calls - calls_before
        result.duration_ms = int((time.monotonic() - started) * 1000)
        self.report_progress(entity, result, total, final=True)
        return result

    def commit(
        self, writer: PageWriter, entity: Entity, batch: PageBatch, result: EntityResult, total: int | None
    ) -> None:
        rows, failures, pages = batch.take()  # taken first: a failed commit is not retried by the caller
        written = writer.commit_page(entity.table, rows, failures)
        # Only now are the pages durable: the watermark may move past them.
        self.advance_watermark(result, rows)
        result.records_synced += written
        result.pages += pages
        self.report_progress(entity, result, total)

    def transform_page(
        self,
        entity: Entity,
        records: list[Any],
        result: EntityResult,
        since: datetime | None,
        seen_ids: set[str],
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        previous = result.watermark_from
        for record in records:
            try:
                row = entity.transform(record).as_row()
            except Exception as exc:  # a bad record is captured, never fatal
                source_id = _safe_source_id(record)
                message = f"{entity.label}: {describe_error(exc)} ({source_id})"
                result.records_failed += 1
                result.errors.append(message)
                failures.append(
                    dead_letter_row(
                        self.workspace_id,
                        self.connector.name,
                        entity.name,
                        self.run_id,
                        source_id,
                        message,
                        _safe_payload(record),
                    )
                )
                continue
            updated = row["source_updated_at"]
            if since is not None and (updated < since or (updated == previous and row["source_id"] in seen_ids)):
                # Older than asked for (coarse vendor filters), or the boundary record the last
                # sync already committed: not a change.
                result.records_skipped += 1
                continue
            row["workspace_id"] = self.workspace_id
            row["source"] = self.connector.name
            row["properties"] = record.payload
            rows.append(row)
        if failures:
            self.context.log.warning(f"{len(failures)} {entity.name} record(s) failed; first: {failures[0]['error']}")
        return rows, failures

    @staticmethod
    def advance_watermark(result: EntityResult, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            updated = row["source_updated_at"]
            if result.watermark is None or updated > result.watermark:
                result.watermark = updated
                result.watermark_ids = {row["source_id"]}
            elif updated == result.watermark:
                result.watermark_ids.add(row["source_id"])

    def report_progress(self, entity: Entity, result: EntityResult, total: int | None, final: bool = False) -> None:
        done = result.records_synced + result.records_failed
        message = f"{self.connector.title} {entity.name}: {done}{f'/{total}' if total else ''} records"
        # Every page goes to the step's stdout (the run's compute logs); the Dagster event log, a
        # database write per line, gets the same line at most every PROGRESS_INTERVAL_S and at the end.
        page_log.info(f"{message} ({result.pages} page(s))")
        now = time.monotonic()
        if final or now - self._last_progress >= PROGRESS_INTERVAL_S:
            self._last_progress = now
            self.context.log.info(f"{message} ({result.pages} page(s))")
            if not self.progress:
                return
            try:
                self.progress(self.connector.name, entity.name, done, total, message)
            except Exception as exc:  # progress is best effort: it never affects the sync
                self.context.log.warning(f"progress notification failed: {describe_error(exc)}")

    def outputs(self, entity: Entity, result: EntityResult) -> Iterator[MaterializeResult | AssetCheckResult]:
        key = asset_key(self.connector, entity)
        metadata: dict[str, Any] = {
            "records_synced": result.records_synced,
            "records_failed": result.records_failed,
            "mode": result.mode,
            "api_calls": result.api_calls,
            "pages": result.pages,
            "duration_ms": result.duration_ms,
            "table": entity.table,
        }
        if result.watermark:
            metadata["watermark"] = MetadataValue.text(iso(result.watermark))
            if len(result.watermark_ids) <= MAX_WATERMARK_IDS:
                metadata["watermark_ids"] = MetadataValue.json(sorted(result.watermark_ids))
        yield MaterializeResult(asset_key=key, metadata=metadata)
        check_key = AssetCheckKey(key, FAILED_RECORDS_CHECK)
        if check_key in self.context.selected_asset_check_keys:
            yield AssetCheckResult(
                asset_key=key,
                check_name=FAILED_RECORDS_CHECK,
                passed=result.records_failed == 0,
                severity=AssetCheckSeverity.WARN,
                metadata={
                    "records_failed": result.records_failed,
                    "first_errors": MetadataValue.json(result.errors[:5]),
                },
            )

    def finish(self, log_id: int, results: list[EntityResult], error: str | None) -> None:
        failed = sum(r.records_failed for r in results)
        status = "failed" if error else "completed_with_errors" if failed else "completed"
        modes = {r.mode for r in results}
        marks_from = [r.watermark_from for r in results if r.watermark_from]
        marks_to = [r.watermark for r in results if r.watermark]
        self.warehouse.finish_sync_log(
            log_id,
            status=status,
            records_synced=sum(r.records_synced for r in results),
            records_failed=failed,
            errors=[e for r in results for e in r.errors],
            error=error,
            mode=("full" if "full" in modes else "incremental") if modes else None,
            watermark_from=iso(min(marks_from)) if marks_from else None,
            watermark_to=iso(max(marks_to)) if marks_to else None,
        )
        if not error:
            self.warehouse.mark_synced(self.workspace_id, self.connector.name, utcnow())


class PageBatch:
    """Transformed pages waiting to be committed together: one transaction (and one round of staging
    statements and WAL flush) per COMMIT_ROWS rows rather than per vendor page of 100, but never more
    than COMMIT_INTERVAL_S of reading at risk, so a slow vendor still commits page by page."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.pages = 0
        self._since = time.monotonic()

    def add(self, rows: list[dict[str, Any]], failures: list[dict[str, Any]]) -> None:
        self.rows += rows
        self.failures += failures
        self.pages += 1

    def due(self) -> bool:
        return len(self.rows) + len(self.failures) >= COMMIT_ROWS or time.monotonic() - self._since >= COMMIT_INTERVAL_S

    def take(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        taken = self.rows, self.failures, self.pages
        self.rows, self.failures, self.pages, self._since = [], [], 0, time.monotonic()
        return taken


_END = object()
PAGES_AHEAD = 4


def prefetched(pages: Iterator[Any]) -> Iterator[Any]:
    """Fetch the next pages from the vendor in a background thread while the current one is
    transformed and committed. Pages still come out in order, and at most PAGES_AHEAD are held ahead:
    enough to keep fetching through a commit (one per up to ten HubSpot pages), still bounded memory."""
    handoff: queue.Queue = queue.Queue(maxsize=PAGES_AHEAD)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        handoff.put(page, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(_END)
        except BaseException as exc:  # surfaced in the consumer, with its traceback
            handoff.put(exc)

    thread = threading.Thread(target=produce, name="page-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        close = getattr(pages, "close", None)
        thread.join(timeout=5)
        if close and not thread.is_alive():
            close()


class Heartbeat:
    """Renews the sync_log lease from a background thread while the step runs, so a long vendor
    wait (a Bulk job, a rate limit) is not mistaken for a dead worker."""

    def __init__(self, warehouse: WarehouseResource, log_id: int, interval_s: float) -> None:
        self._warehouse, self._log_id, self._interval_s = warehouse, log_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{log_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._warehouse.heartbeat(self._log_id)
            except Exception:  # a missed beat only shortens the lease; the sync itself reports DB loss
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _safe_source_id(record: Any) -> str | None:
    try:
        return str(record.source_id)
    except Exception:
        return None


def _safe_payload(record: Any) -> Any:
    try:
        return record.payload
    except Exception:
        return repr(record)[:2000]
