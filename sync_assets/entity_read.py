"""One entity's read over one window: fetch → transform → commit, page by page, then, when the read named
every record that exists, the sweep of the rows it never named.

The watermark moves only past committed rows and never past the read's start (sync_assets/watermark.py).
Deletions reach the warehouse three ways: records the vendor marks deleted (upserted with ``is_deleted``),
deletions the vendor lists without the record, and the sweep. The sweep deletes nothing on its own
word: it asks the vendor about each row it did not see (``Entity.confirm``), because a read can miss a
live record (a live order that shifted, a search index that lagged).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

import psycopg
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from resources.limits import without_nul
from resources.models import Page
from resources.page_writer import PageWriter
from resources.warehouse import WarehouseResource, dead_letter_row
from sync_assets.entities import refusal
from sync_assets.pages import PageBatch, prefetched
from sync_assets.recipe import Entity
from sync_assets.watermark import ReadWindow, WatermarkTracker

CONFIRM_BATCH = 100  # ids per confirmation request (the most HubSpot, Salesforce and monday take at once)


@dataclass
class EntityResult:
    entity: str
    mode: str
    watermark_from: datetime | None
    watermark: datetime | None = None
    records_synced: int = 0  # inserted or changed
    records_reread: int = 0  # read again, found unchanged: neither rewritten nor counted as synced
    records_deleted: int = 0  # newly marked deleted (deleted, archived, trashed or merged at the vendor)
    records_failed: int = 0
    records_future_dated: int = 0  # dated after the vendor's present (a client-set time): never the watermark
    pages: int = 0
    api_calls: int = 0
    throttled_calls: int = 0  # calls the vendor throttled (each retried)
    retries: int = 0  # retried attempts of any kind
    rate_limit_wait_ms: int = 0  # time held back by our own rate limiter
    vendor_total: int | None = None  # how many records the vendor said the read would find, when it says
    duration_ms: int = 0
    read_started_at: datetime | None = None
    resume_token: str | None = None
    last_full_at: datetime | None = None  # when a full read of this entity last completed (before this one)
    swept: bool = False  # the read named every record, and the rows it did not name were checked
    errors: list[str] = field(default_factory=list)


# (entity name, result, vendor's total or None, final): progress for logs and webhooks.
Progress = Callable[[str, EntityResult, "int | None", bool], None]


def describe_error(exc: Exception) -> str:
    """The one line sync_log, webhooks and the Dagster UI show for an error. A record's validation errors
    are named by field; a database error by its class and SQLSTATE only, because the driver's text quotes
    the statement, its parameters and COPY's row data. Vendor errors arrive already reduced to the
    vendor's code and message (resources/http.py)."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {refusal(err)}" for err in exc.errors())
    database_error = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(database_error, SQLAlchemyError | psycopg.Error | sqlite3.Error):
        sqlstate = getattr(database_error, "sqlstate", None)
        return f"warehouse error: {type(database_error).__name__}" + (f" (SQLSTATE {sqlstate})" if sqlstate else "")
    return str(exc) or type(exc).__name__


class EntityRead:
    """Reads one entity of one connector for one workspace, within a run."""

    def __init__(
        self,
        *,
        entity: Entity,
        client: Any,
        warehouse: WarehouseResource,
        source: str,
        workspace_id: str,
        run_id: str,
        log: Any,
        progress: Progress,
    ) -> None:
        self.entity, self.client, self.warehouse = entity, client, warehouse
        self.doubted: list[str] = []  # listed deletions the warehouse doubts: asked of the vendor after the read
        self.source, self.workspace_id, self.run_id = source, workspace_id, run_id
        self.log, self.progress = log, progress

    def run(self, window: ReadWindow, tracker: WatermarkTracker, result: EntityResult) -> EntityResult:
        started, client = time.monotonic(), self.client
        calls, throttled, retries, waited_s = (
            client.api_calls,
            client.throttled_calls,
            client.retries,
            client.rate_limit_wait_s,
        )
        self.client.clock.mark()
        with self.warehouse.page_writer(self.entity.name, self.workspace_id, self.source) as writer:
            writer.track_seen()
            enumerates_all = self.read(writer, window, tracker, result)
            if self.doubted:  # after the read: its pages are still being fetched in another thread until then
                self.log.info(
                    f"{self.source} {self.entity.name}: {len(self.doubted)} listed deletion(s) dated before the "
                    "version the warehouse holds; asking the vendor"
                )
                self.confirm(writer, tracker, result, list(dict.fromkeys(self.doubted)))
            if window.is_full if enumerates_all is None else enumerates_all:
                self.sweep(writer, tracker, result)
        tracker.began(self.client.clock.read_start())
        result.read_started_at = tracker.read_start
        result.watermark = tracker.watermark()
        result.records_future_dated = tracker.future_dated
        result.api_calls = client.api_calls - calls
        result.throttled_calls = client.throttled_calls - throttled
        result.retries = client.retries - retries
        result.rate_limit_wait_ms = round((client.rate_limit_wait_s - waited_s) * 1000)
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    def read(
        self, writer: PageWriter, window: ReadWindow, tracker: WatermarkTracker, result: EntityResult
    ) -> bool | None:
        """Every page of the window committed; returns what the last page said of naming every record."""
        batch, total, enumerates_all = PageBatch(), None, None
        try:
            for page in prefetched(self.entity.read(self.client, window)):
                total = page.total if page.total is not None else total
                self.add(batch, page, result)
                result.resume_token = page.resume_token or result.resume_token
                enumerates_all = page.enumerates_all
                if batch.due():
                    self.commit(writer, batch, tracker, result, total)
        except Exception:
            # The vendor failed part-way: the pages read before it are whole; keep them.
            if batch.pages:
                self.commit(writer, batch, tracker, result, total)
            raise
        if batch.pages:
            self.commit(writer, batch, tracker, result, total)
        result.vendor_total = total
        self.progress(self.entity.name, result, total, True)
        return enumerates_all

    def sweep(self, writer: PageWriter, tracker: WatermarkTracker, result: EntityResult) -> None:
        """Rows the complete read left in doubt: the vendor confirms each one live (upserted) or gone (marked)."""
        candidates = writer.sweep_candidates()
        result.swept = True
        if not candidates:
            return
        self.log.info(f"{self.source} {self.entity.name}: asking the vendor about {len(candidates)} row(s) in doubt")
        self.confirm(writer, tracker, result, candidates)

    def confirm(self, writer: PageWriter, tracker: WatermarkTracker, result: EntityResult, ids: list[str]) -> None:
        """The vendor's word on these rows: each is upserted as the vendor holds it, or marked gone."""
        remaining = iter(ids)
        while chunk := list(islice(remaining, CONFIRM_BATCH)):
            batch = PageBatch()
            for page in self.entity.confirm(self.client, chunk):
                self.add(batch, page, result)
            self.commit(writer, batch, tracker, result, None)

    def add(self, batch: PageBatch, page: Page[Any], result: EntityResult) -> None:
        rows, failures = self.transform(page.records, result)
        batch.add(rows, failures, page.deletions, page.present_ids)

    def commit(
        self, writer: PageWriter, batch: PageBatch, tracker: WatermarkTracker, result: EntityResult, total: int | None
    ) -> None:
        taken = batch.take()  # taken first: a failed commit is not retried by the caller
        # The first response has arrived by now: its vendor time is when this read began.
        tracker.began(self.client.clock.read_start())
        counts = writer.commit_page(
            taken.rows, taken.failures, taken.deletions, taken.present_ids, refused_letter=self.refused_letter
        )
        stored = taken.rows
        if counts.refused:  # dead-lettered like a record its transform failed: not a committed row
            refused = {letter["source_id"] for letter in counts.refused}
            stored = [row for row in taken.rows if row["source_id"] not in refused]
            result.records_failed += len(counts.refused)
            result.errors += [letter["error"] for letter in counts.refused]
            self.log.warning(
                f"{len(counts.refused)} {self.entity.name} record(s) refused by the warehouse; "
                f"first: {counts.refused[0]['error']}"
            )
        # Only now are the rows durable: the watermark may move past them.
        tracker.committed(stored, self.client.clock.now())
        result.records_synced += counts.written
        result.records_deleted += counts.deleted
        result.records_reread += counts.unchanged
        result.pages += taken.pages
        self.progress(self.entity.name, result, total, False)
        self.doubted += counts.doubted

    def refused_letter(self, row: dict[str, Any], reason: str) -> dict[str, Any]:
        """The dead letter of a row the warehouse refused: its payload, and why as far as the driver says."""
        message = f"{self.entity.label}: {reason} ({row['source_id']})"
        return dead_letter_row(
            self.workspace_id, self.source, self.entity.name, self.run_id, row["source_id"], message, row["properties"]
        )

    def transform(self, records: list[Any], result: EntityResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for record in records:
            try:
                row = self.entity.transform(record).as_row()
            except Exception as exc:  # a bad record is captured, never fatal
                source_id = _safe_source_id(record)
                message = f"{self.entity.label}: {describe_error(exc)} ({source_id})"
                result.records_failed += 1
                result.errors.append(message)
                failures.append(
                    dead_letter_row(
                        self.workspace_id,
                        self.source,
                        self.entity.name,
                        self.run_id,
                        source_id,
                        message,
                        _safe_payload(record),
                    )
                )
                continue
            row["workspace_id"] = self.workspace_id
            row["source"] = self.source
            row["properties"] = without_nul(record.payload)
            rows.append(row)
        if failures:
            self.log.warning(f"{len(failures)} {self.entity.name} record(s) failed; first: {failures[0]['error']}")
        return rows, failures


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
