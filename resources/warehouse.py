"""The warehouse resource: connections in, committed pages out (resources/page_writer.py), the sync record kept.

Every write the sync loop makes for one page (entity rows, dead-letter rows, heartbeat) commits in
one transaction, so a crash leaves either the whole page or none of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy import Connection as SqlConnection
from sqlalchemy import Engine, Table, case, func, insert, select, update

from resources import schema
from resources.connections import Connection
from resources.db import get_engine
from resources.limits import NUL, without_nul
from resources.page_writer import PageWriter
from resources.secrets import decrypt_json
from resources.settings import warehouse_url

MAX_ERRORS_IN_LOG = 100
FINISHED_OK = ("completed", "completed_with_errors")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RowCounts:
    rows: int  # every row, soft-deleted ones included
    live: int  # rows not deleted at the vendor (for sync_errors: not resolved)


@dataclass(frozen=True)
class SyncLogRow:
    """One step attempt's sync_log row. Its writes match the run too: a step process that outlives its run
    (stopped in a 20 s vendor call, say) never writes into a row another run owns."""

    id: int
    run_id: str

    def matches(self, log: Table) -> Any:
        return (log.c.id == self.id) & (log.c.run_id == self.run_id)


class WarehouseResource(ConfigurableResource):
    url: str = Field(default="", description="SQLAlchemy URL; empty means the WAREHOUSE_URL env var.")

    @property
    def engine(self) -> Engine:
        return get_engine(self.url or warehouse_url())

    # --- control plane --------------------------------------------------------------------------

    def get_connection(self, workspace_id: str, connector: str) -> Connection | None:
        c = schema.connections
        with self.engine.connect() as conn:
            row = conn.execute(
                select(c.c.credentials, c.c.config, c.c.last_sync_at).where(
                    c.c.workspace_id == workspace_id,
                    c.c.connector_name == connector,
                    c.c.status == "active",
                )
            ).first()
        if row is None:
            return None
        return Connection(
            workspace_id=workspace_id,
            connector=connector,
            credentials=decrypt_json(row.credentials),
            config=row.config or {},
            last_sync_at=row.last_sync_at,
        )

    # --- table sizes ----------------------------------------------------------------------------

    def row_counts(self, table: str, workspace_id: str, source: str | None = None) -> RowCounts:
        """The workspace's rows in an entity table or ``sync_errors``, optionally those one connector wrote.
        Both counts follow the table's (workspace_id, source, …) index: no other workspace's rows are read."""
        t: Table = schema.ENTITY_TABLES.get(table, schema.sync_errors if table == "sync_errors" else None)
        if t is None:
            raise ValueError(f"{table!r} is not an entity table nor sync_errors")
        gone = t.c.resolved_at.is_not(None) if t is schema.sync_errors else t.c.is_deleted
        source_column = t.c.connector if t is schema.sync_errors else t.c.source
        query = select(func.count(), func.count().filter(~gone)).where(t.c.workspace_id == workspace_id)
        if source is not None:
            query = query.where(source_column == source)
        with self.engine.connect() as conn:
            rows, live = conn.execute(query).one()
        return RowCounts(rows, live)

    # --- the sync record ------------------------------------------------------------------------

    def start_sync_log(
        self, workspace_id: str, connector: str, run_id: str, sync_id: str | None, sync_type: str
    ) -> SyncLogRow:
        now = utcnow()
        with self.engine.begin() as conn:
            row_id = conn.execute(
                insert(schema.sync_log)
                .values(
                    workspace_id=workspace_id,
                    connector_type=connector,
                    sync_type=sync_type,
                    status="running",
                    run_id=run_id,
                    sync_id=sync_id,
                    started_at=now,
                    heartbeat_at=now,
                    errors=[],
                )
                .returning(schema.sync_log.c.id)
            ).scalar_one()
        return SyncLogRow(row_id, run_id)

    @contextmanager
    def page_writer(self, table: str, workspace_id: str, source: str) -> Iterator[PageWriter]:
        """Commits an entity's pages on one connection: a pool checkout (with its liveness ping, a round
        trip) per entity instead of per page. A lost connection fails the write that needed it."""
        with self.engine.connect() as conn:
            yield PageWriter(conn, table, workspace_id, source)

    def heartbeat(self, row: SyncLogRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(schema.sync_log).where(row.matches(schema.sync_log)).values(heartbeat_at=utcnow()))

    def finish_sync_log(
        self,
        row: SyncLogRow,
        *,
        status: str,
        records_synced: int,
        records_deleted: int,
        records_failed: int,
        errors: list[str],
        error: str | None,
        mode: str | None,
        watermark_from: str | None,
        watermark_to: str | None,
    ) -> None:
        log = schema.sync_log
        now = utcnow()
        with self.engine.begin() as conn:
            started = conn.execute(select(log.c.started_at).where(row.matches(log))).scalar_one_or_none()
            if started is None:  # the row is gone (an operator deleted it); nothing is left to record
                return
            started = started if started.tzinfo else started.replace(tzinfo=UTC)
            # A row already closed from outside (the run was stopped) keeps that outcome; it gains the counts.
            closed_outside = log.c.status != "running"
            conn.execute(
                update(log)
                .where(row.matches(log))
                .values(
                    status=case((closed_outside, log.c.status), else_=status),
                    completed_at=now,
                    heartbeat_at=now,
                    records_synced=records_synced,
                    records_deleted=records_deleted,
                    records_failed=records_failed,
                    errors=errors[:MAX_ERRORS_IN_LOG],
                    error=case((closed_outside, log.c.error), else_=error),
                    duration_ms=int((now - started).total_seconds() * 1000),
                    mode=mode,
                    watermark_from=watermark_from,
                    watermark_to=watermark_to,
                )
            )

    def fail_finished_syncs(self, run_id: str, error: str) -> int:
        """A run failed or canceled after some of its steps finished: their rows take the run's outcome, so
        sync_log, the job view and the webhook tell one story. The records those steps committed stay, and
        so do their watermarks, which cover only committed records."""
        log = schema.sync_log
        note = f"{error} (stopped after this connector had finished: its records are committed)"
        with self.engine.begin() as conn:
            return conn.execute(
                update(log)
                .where(log.c.run_id == run_id, log.c.status.in_(FINISHED_OK))
                .values(status="failed", error=note)
            ).rowcount

    def record_unstarted_syncs(
        self, run_id: str, workspace_id: str, connectors: list[str], error: str, sync_type: str, sync_id: str | None
    ) -> int:
        """A run stopped before some of its steps began (a timeout that fires while a loaded machine is still
        starting the step) still leaves one failed row per connector, so sync_log tells what the job view
        and the webhook tell."""
        log = schema.sync_log
        now = utcnow()
        with self.engine.begin() as conn:
            started = set(conn.execute(select(log.c.connector_type).where(log.c.run_id == run_id)).scalars())
            missing = [c for c in connectors if c not in started]
            if missing:
                conn.execute(
                    insert(log),
                    [
                        {
                            "workspace_id": workspace_id,
                            "connector_type": connector,
                            "sync_type": sync_type,
                            "status": "failed",
                            "run_id": run_id,
                            "sync_id": sync_id,
                            "started_at": now,
                            "completed_at": now,
                            "heartbeat_at": now,
                            "duration_ms": 0,
                            "errors": [],
                            "error": error,
                        }
                        for connector in missing
                    ],
                )
            return len(missing)

    def close_open_syncs(self, run_id: str, error: str, connector: str | None = None) -> int:
        """Fail the run's sync_log rows still open (of one connector, when given): a run stopped from outside
        (max runtime, cancel) can end before its step closes them, and a step attempt that lost the
        warehouse could not close its own."""
        log = schema.sync_log
        scope = [log.c.run_id == run_id] + ([log.c.connector_type == connector] if connector else [])
        with self.engine.begin() as conn:
            return fail_running_syncs(conn, error, *scope)

    def mark_synced(self, workspace_id: str, connector: str, at: datetime) -> None:
        """Mirror of the watermark's sync time for SQL users (``connections.last_sync_at``)."""
        c = schema.connections
        with self.engine.begin() as conn:
            conn.execute(
                update(c)
                .where(c.c.workspace_id == workspace_id, c.c.connector_name == connector)
                .values(last_sync_at=at, updated_at=func.now())
            )


def fail_running_syncs(conn: SqlConnection, error: str, *conditions: Any) -> int:
    """Mark the ``running`` sync_log rows that match ``conditions`` failed with ``error``; returns how many.
    Every path that gives up on a sync its step cannot close uses this (run-status sensors, the lease
    reaper, the API's stale and timed-out syncs)."""
    log = schema.sync_log
    return conn.execute(
        update(log)
        .where(log.c.status == "running", *conditions)
        .values(status="failed", error=error, completed_at=utcnow())
    ).rowcount


def dead_letter_row(
    workspace_id: str, connector: str, entity: str, run_id: str, source_id: str | None, error: str, payload: Any
) -> dict[str, Any]:
    """A sync_errors row. What the record brought is made storable (a dead letter must never fail its
    page): NULs removed, a source id cut to its column."""
    if source_id is not None:
        source_id = source_id.replace(NUL, "")[: schema.sync_errors.c.source_id.type.length]
    return {
        "workspace_id": workspace_id,
        "connector": connector,
        "entity": entity,
        "run_id": run_id,
        "source_id": source_id,
        "error": error.replace(NUL, ""),
        "payload": without_nul(json.loads(json.dumps(payload, default=str))),
    }
