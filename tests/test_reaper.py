"""The lease reaper closes sync_log rows whose heartbeat stopped: a run that had outlived its max runtime
is named as a timeout ("Job <id> exceeded timeout of <ms>ms"), any other as a lost worker."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from dagster import DagsterRunStatus, build_sensor_context, job, op
from sqlalchemy import update

from resources import schema
from resources.notifier import NotifierResource
from resources.warehouse import WarehouseResource, utcnow
from sensors.reaper import LEASE_S, stale_run_reaper
from tests.support import rows

WS = "reaper-ws"


@op
def slow_step() -> None:
    time.sleep(1.2)


@job
def one_slow_step():
    slow_step()


def finished_run(instance, tags: dict[str, str]) -> str:
    result = one_slow_step.execute_in_process(instance=instance, tags=tags)
    assert result.success
    return result.run_id


def stale_sync_log_row(warehouse_url: str, run_id: str) -> int:
    resource = WarehouseResource(url=warehouse_url)
    log_id = resource.start_sync_log(WS, "hubspot", run_id, None, "manual").id
    with resource.engine.begin() as conn:
        conn.execute(
            update(schema.sync_log)
            .where(schema.sync_log.c.id == log_id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=LEASE_S + 5))
        )
    return log_id


def reap(instance, warehouse_url: str) -> str:
    context = build_sensor_context(
        instance=instance, resources={"warehouse": WarehouseResource(url=warehouse_url), "notifier": NotifierResource()}
    )
    return stale_run_reaper(context).skip_message


@pytest.mark.usefixtures("warehouse")
def test_a_row_of_a_run_past_its_max_runtime_is_closed_as_a_timeout(instance, pg_url):
    run_id = finished_run(instance, {"dagster/max_runtime": "1"})
    stale_sync_log_row(pg_url, run_id)

    assert reap(instance, pg_url) == "reaped 1 sync(s) in 0 run(s)"
    assert rows("SELECT status, error FROM sync_log WHERE run_id = :r", r=run_id) == [
        ("failed", f"Job {run_id} exceeded timeout of 1000ms")
    ]
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS  # finished runs are left alone


@pytest.mark.usefixtures("warehouse")
def test_a_row_of_a_run_within_its_limit_is_closed_as_a_lost_worker(instance, pg_url):
    run_id = finished_run(instance, {"dagster/max_runtime": "60"})
    live = WarehouseResource(url=pg_url).start_sync_log(WS, "gong", run_id, None, "manual")
    stale = stale_sync_log_row(pg_url, run_id)

    assert reap(instance, pg_url) == "reaped 1 sync(s) in 0 run(s)"
    [(status, error)] = rows("SELECT status, error FROM sync_log WHERE id = :i", i=stale)
    assert status == "failed"
    assert error.startswith(f"Sync worker lost: no heartbeat for {int(LEASE_S) + 5}")
    assert error.endswith(f"(lease {int(LEASE_S)}s), run {run_id}")
    assert rows("SELECT status, error FROM sync_log WHERE id = :i", i=live.id) == [("running", None)]
