"""The warehouse resource: connections in, committed pages out, the sync record kept.

Every write the sync loop makes for one page (entity rows, dead-letter rows, heartbeat) commits in
one transaction, so a crash leaves either the whole page or none of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy import Connection as SqlConnection
from sqlalchemy import Engine, func, insert, select, update

from resources import schema
from resources.connections import Connection
from resources.db import get_engine
from resources.loader import upsert_rows
from resources.secrets import decrypt_json
from resources.settings import warehouse_url

MAX_ERRORS_IN_LOG = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


class PageWriter:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    def commit_page(self, table: str, rows: Sequence[dict[str, Any]], failures: Sequence[dict[str, Any]]) -> int:
        """Upsert a page's good rows and dead-letter its bad ones, atomically; returns rows written.
        (The lease is renewed by the loop's heartbeat thread, not per page.)"""
        with self._conn.begin():
            written = upsert_rows(self._conn, schema.ENTITY_TABLES[table], rows) if rows else 0
            if failures:
                self._conn.execute(insert(schema.sync_errors), list(failures))
        return written


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

    # --- the sync record ------------------------------------------------------------------------

    def start_sync_log(
        self, workspace_id: str, connector: str, run_id: str, sync_id: str | None, sync_type: str
    ) -> int:
        now = utcnow()
        with self.engine.begin() as conn:
            return conn.execute(
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

    @contextmanager
    def page_writer(self) -> Iterator[PageWriter]:
        """Commits an entity's pages on one connection: a pool checkout (with its liveness ping, a round
        trip) per entity instead of per page. A lost connection fails the write that needed it."""
        with self.engine.connect() as conn:
            yield PageWriter(conn)

    def heartbeat(self, sync_log_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.sync_log).where(schema.sync_log.c.id == sync_log_id).values(heartbeat_at=utcnow())
            )

    def finish_sync_log(
        self,
        sync_log_id: int,
        *,
        status: str,
        records_synced: int,
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
            started = conn.execute(select(log.c.started_at).where(log.c.id == sync_log_id)).scalar_one()
            started = started if started.tzinfo else started.replace(tzinfo=UTC)
            conn.execute(
                update(log)
                .where(log.c.id == sync_log_id)
                .values(
                    status=status,
                    completed_at=now,
                    heartbeat_at=now,
                    records_synced=records_synced,
                    records_failed=records_failed,
                    errors=errors[:MAX_ERRORS_IN_LOG],
                    error=error,
                    duration_ms=int((now - started).total_seconds() * 1000),
                    mode=mode,
                    watermark_from=watermark_from,
                    watermark_to=watermark_to,
                )
            )

    def close_open_syncs(self, run_id: str, error: str) -> int:
        """Fail the run's sync_log rows still open: a run stopped from outside (max runtime, cancel) can
        end before its step closes them. A step that closes its row later overwrites this with its counts."""
        with self.engine.begin() as conn:
            return fail_running_syncs(conn, error, schema.sync_log.c.run_id == run_id)

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
    return {
        "workspace_id": workspace_id,
        "connector": connector,
        "entity": entity,
        "run_id": run_id,
        "source_id": source_id,
        "error": error,
        "payload": json.loads(json.dumps(payload, default=str)),
    }
