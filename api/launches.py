"""The launch outbox: a trigger commits a pending launch and answers 202; the API's launcher (a child
process, a thread on SQLite) creates and queues the Dagster run under the id the 202 already gave.

Why: creating a run stores the run and its planned events one statement at a time, about 100 ms of
this process's CPU. On the request path that held every concurrent trigger, and every read queued
behind them. With the outbox the 202 costs a few warehouse statements, and it keeps its guarantees:

* **Race-free.** A trigger checks in-flight runs, then pending launches, under the workspace lock
  (api/locks.py). The launcher deletes a row only after its run is queued, under the same lock, so a
  trigger always sees one or the other.
* **Durable.** The row is committed before the 202. A process that stops before launching it leaves
  it pending, and the next API process launches it; a run created but not queued is only queued.
* **Several API processes.** Each launch claims its row with ``FOR UPDATE SKIP LOCKED`` (Postgres).
* **Failures.** A launch that fails (Dagster's storage unreachable) is retried with backoff, then
  marked ``failed`` with its cause, which the job's view reports; a failed launch blocks nothing.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection as PipeEnd
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from api import config
from api.dagster import DagsterGateway, gateway
from api.launcher import CodeLocationUnavailable
from api.locks import workspace_lock
from resources import schema
from sync_assets.runs import PARTITION_TAG, connectors_of, full_refresh_tagged, sync_run_config

logger = logging.getLogger("api")

RETRY_DELAYS_S = (1, 2, 4, 8)  # then the launch is marked failed: five attempts over about 15 s
POLL_S = 1.0  # how often the launcher looks for rows that retries or other processes left due
WORKER_NAME = "sync-launcher"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

PENDING, FAILED = schema.LAUNCH_PENDING, "failed"
_launches = schema.sync_launches


@dataclass(frozen=True)
class Launch:
    job_id: str
    workspace_id: str
    sync_id: str
    job_name: str
    asset_keys: list[str] | None
    tags: dict[str, str]
    status: str = PENDING
    error: str | None = None
    created_at: datetime | None = None


def _launch(row: Any) -> Launch:
    return Launch(**{f.name: row._mapping[f.name] for f in fields(Launch)})


def enqueue(conn: Connection, launch: Launch) -> None:
    """Record an accepted sync; the caller holds the workspace lock and commits."""
    now = datetime.now(UTC)
    values = {**asdict(launch), "status": PENDING, "error": None, "next_attempt_at": now, "created_at": now}
    conn.execute(insert(_launches).values(values))


def pending_launch(conn: Connection, workspace_id: str) -> Launch | None:
    row = conn.execute(
        select(_launches).where(_launches.c.workspace_id == workspace_id, _launches.c.status == PENDING).limit(1)
    ).first()
    return _launch(row) if row else None


def find_launch(engine: Engine, workspace_id: str, job_id: str) -> Launch | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(_launches).where(_launches.c.job_id == job_id, _launches.c.workspace_id == workspace_id)
        ).first()
    return _launch(row) if row else None


def recent_launches(engine: Engine, workspace_id: str, limit: int) -> list[Launch]:
    """Launches not (yet) runs, newest first: pending ones and those that failed."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(_launches)
            .where(_launches.c.workspace_id == workspace_id)
            .order_by(_launches.c.created_at.desc())
            .limit(limit)
        ).all()
    return [_launch(r) for r in rows]


def describe(exc: Exception) -> str:
    """A launch failure as stored and logged: our own messages in full, otherwise only the exception
    type, since a driver's message may carry a connection string."""
    if isinstance(exc, CodeLocationUnavailable):
        return str(exc)
    return type(exc).__name__


class Launcher:
    """Drains the outbox: woken by each trigger, and every ``POLL_S`` for retries and for rows left by
    a process that stopped."""

    def __init__(self, engine: Engine, gateway: DagsterGateway) -> None:
        self.engine = engine
        self.gateway = gateway

    def serve(self, wakeups: PipeEnd) -> None:
        """Launch until ``wakeups`` (the read end of a pipe, one message per trigger) reaches its end:
        the API process closed it, or died."""
        while True:
            try:
                while self.launch_next():
                    pass
            except Exception as exc:  # the warehouse is unreachable: the next poll tries again
                logger.warning("sync launcher could not read the outbox: %s", describe(exc))
            try:
                if wakeups.poll(POLL_S):
                    while wakeups.poll(0):
                        wakeups.recv_bytes()
            except (EOFError, OSError):
                return

    def launch_next(self) -> bool:
        """Launch the oldest due launch; False when none is due."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            row = conn.execute(
                select(_launches)
                .where(_launches.c.status == PENDING, _launches.c.next_attempt_at <= now)
                .order_by(_launches.c.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return False
            try:
                self.gateway.ensure_partition(row.workspace_id)
                tags = {**row.tags, PARTITION_TAG: row.workspace_id}
                # The steps read the full refresh from run config; the tag stays as the run's label.
                connectors = connectors_of(row.job_name, row.asset_keys)
                run_config = sync_run_config(connectors, full_refresh=full_refresh_tagged(tags))
                self.gateway.runs.launch(row.job_id, row.job_name, tags, row.asset_keys, run_config)
            except Exception as exc:
                self._retry_or_fail(conn, row, exc)
                return True
            with workspace_lock(conn, row.workspace_id):
                conn.execute(delete(_launches).where(_launches.c.job_id == row.job_id))
        logger.info("launched job %s (%s) of workspace %s", row.job_id, row.job_name, row.workspace_id)
        return True

    def _retry_or_fail(self, conn: Connection, row: Any, exc: Exception) -> None:
        attempt = row.attempts + 1
        error = f"Dagster could not launch the run: {describe(exc)}"
        if attempt > len(RETRY_DELAYS_S):
            values: dict[str, Any] = {"status": FAILED}
            logger.error("giving up launching job %s of workspace %s: %s", row.job_id, row.workspace_id, error)
        else:
            delay = RETRY_DELAYS_S[attempt - 1]
            values = {"next_attempt_at": datetime.now(UTC) + timedelta(seconds=delay)}
            logger.warning(
                "launch of job %s failed (attempt %d), retrying in %d s: %s", row.job_id, attempt, delay, error
            )
        conn.execute(
            update(_launches).where(_launches.c.job_id == row.job_id).values(attempts=attempt, error=error, **values)
        )


def _serve_in_child(wakeups: PipeEnd) -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    Launcher(config.engine(), gateway()).serve(wakeups)


class LaunchWorker:
    """The API process's launcher. On Postgres it is a child process, so creating runs never holds the
    API's interpreter lock while requests wait for it; on SQLite (the embedded instance: one API
    process, whose workspace lock is process-local) it is a thread. Woken through a pipe, which a
    dead worker cannot wedge (unlike a shared lock or event); the next trigger replaces a dead one."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._worker: threading.Thread | multiprocessing.process.BaseProcess | None = None
        self._wakeups: PipeEnd | None = None

    def start(self) -> None:
        with self._lock:
            if self._worker is not None and self._worker.is_alive():
                return
            reader, writer = self._context.Pipe(duplex=False)
            os.set_blocking(writer.fileno(), False)  # a full pipe already holds plenty of wake-ups
            engine = config.engine()
            if engine.dialect.name == "postgresql":
                self._worker = self._context.Process(
                    target=_serve_in_child, args=(reader,), name=WORKER_NAME, daemon=True
                )
                self._worker.start()
                reader.close()
            else:
                serve = Launcher(engine, gateway()).serve
                self._worker = threading.Thread(target=serve, args=(reader,), name=WORKER_NAME, daemon=True)
                self._worker.start()
            if self._wakeups is not None:
                self._wakeups.close()
            self._wakeups = writer

    def wake(self) -> None:
        """Best effort: a lost wake-up only delays the launch to the worker's next poll."""
        for _ in range(2):
            self.start()
            try:
                self._wakeups.send_bytes(b"\0")
                return
            except BlockingIOError:
                return
            except OSError:  # the worker died since start() looked: replace it, once
                continue

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            if self._wakeups is not None:
                self._wakeups.close()
                self._wakeups = None
            if self._worker is not None:
                self._worker.join(timeout_s)
                self._worker = None


_launcher: LaunchWorker | None = None
_launcher_lock = threading.Lock()


def launcher() -> LaunchWorker:
    """This process's launcher (started by the app's lifespan, or by the first trigger)."""
    global _launcher
    with _launcher_lock:
        if _launcher is None:
            _launcher = LaunchWorker()
        return _launcher
