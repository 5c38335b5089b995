"""A run stopped from outside (canceled, timed out, its worker lost) is told one way everywhere: its
sync_log rows take the run's outcome, whether their step was running, had finished or never began."""

from __future__ import annotations

import logging

import pytest
from dagster import AssetKey, DagsterRun, DagsterRunStatus
from dagster._core.utils import make_new_run_id
from sqlalchemy import text

from resources.notifier import NotifierResource
from resources.warehouse import WarehouseResource
from sensors.run_status import settle_canceled_run
from sync_assets.runs import PARTITION_TAG, SYNC_ID_TAG, SYNC_TYPE_TAG
from tests.support import rows

WS = "outcome-ws"
LOG = logging.getLogger("test")


def canceled_run(*assets: str) -> DagsterRun:
    return DagsterRun(
        job_name="sync_workspace",
        run_id=make_new_run_id(),
        tags={PARTITION_TAG: WS, SYNC_TYPE_TAG: "manual", SYNC_ID_TAG: "sync-1"},
        asset_selection=frozenset(AssetKey(a.split("/")) for a in assets),
        status=DagsterRunStatus.CANCELED,
    )


@pytest.mark.usefixtures("warehouse")
def test_a_canceled_runs_rows_are_failed_whether_finished_running_or_never_started(instance, pg_url):
    resource = WarehouseResource(url=pg_url)
    run = canceled_run("hubspot/deals", "hubspot/contacts", "gong/calls", "monday/tasks", "warehouse/deals")
    finished = resource.start_sync_log(WS, "hubspot", run.run_id, "sync-1", "manual")
    resource.finish_sync_log(
        finished,
        status="completed",
        records_synced=12,
        records_deleted=0,
        records_failed=0,
        errors=[],
        error=None,
        mode="full",
        watermark_from=None,
        watermark_to=None,
    )
    resource.start_sync_log(WS, "gong", run.run_id, "sync-1", "manual")  # still running when canceled

    settle_canceled_run(instance, run, resource, NotifierResource(url=pg_url), LOG)

    canceled = f"Job {run.run_id} was canceled"
    assert rows(
        "SELECT connector_type, status, error, records_synced, sync_type, sync_id, completed_at IS NOT NULL "
        "FROM sync_log WHERE run_id = :r ORDER BY connector_type",
        r=run.run_id,
    ) == [
        ("gong", "failed", canceled, 0, "manual", "sync-1", True),
        (
            "hubspot",
            "failed",
            f"{canceled} (stopped after this connector had finished: its records are committed)",
            12,
            "manual",
            "sync-1",
            True,
        ),
        ("monday", "failed", canceled, 0, "manual", "sync-1", True),
    ]

    # Settling again (a sensor tick replayed, or the reaper after the sensor) changes nothing.
    settle_canceled_run(instance, run, resource, NotifierResource(url=pg_url), LOG)
    assert rows("SELECT count(*) FROM sync_log WHERE run_id = :r", r=run.run_id) == [(3,)]


@pytest.mark.usefixtures("warehouse")
def test_a_step_that_finishes_after_its_row_was_failed_adds_its_counts_but_keeps_the_outcome(instance, pg_url):
    resource = WarehouseResource(url=pg_url)
    run = canceled_run("hubspot/deals")
    late = resource.start_sync_log(WS, "hubspot", run.run_id, "sync-1", "manual")
    settle_canceled_run(instance, run, resource, NotifierResource(url=pg_url), LOG)
    resource.finish_sync_log(
        late,
        status="completed",
        records_synced=7,
        records_deleted=1,
        records_failed=0,
        errors=[],
        error=None,
        mode="incremental",
        watermark_from=None,
        watermark_to=None,
    )
    assert rows("SELECT status, error, records_synced, records_deleted FROM sync_log WHERE id = :i", i=late.id) == [
        ("failed", f"Job {run.run_id} was canceled", 7, 1)
    ]


@pytest.mark.usefixtures("warehouse")
def test_a_step_that_outlives_its_run_never_writes_into_another_runs_row(pg_url):
    resource = WarehouseResource(url=pg_url)
    stale = resource.start_sync_log(WS, "hubspot", "run-stopped-long-ago", None, "manual")
    with resource.engine.begin() as conn:  # the row is gone and its id is handed out again
        conn.execute(text("TRUNCATE sync_log RESTART IDENTITY"))
    current = resource.start_sync_log(WS, "hubspot", "run-now", None, "manual")
    assert current.id == stale.id
    beat = rows("SELECT heartbeat_at FROM sync_log")

    resource.heartbeat(stale)
    resource.finish_sync_log(
        stale,
        status="failed",
        records_synced=0,
        records_deleted=0,
        records_failed=0,
        errors=[],
        error="interrupted",
        mode=None,
        watermark_from=None,
        watermark_to=None,
    )
    assert rows("SELECT run_id, status, error, records_synced, completed_at FROM sync_log") == [
        ("run-now", "running", None, 0, None)
    ]
    assert rows("SELECT heartbeat_at FROM sync_log") == beat
