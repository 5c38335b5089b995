"""Orchestration on a real dagster-webserver + dagster-daemon (Postgres instance): the queue, the
per-workspace limit, the daily schedule, timeouts, dead workers and warehouse connection loss."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import UTC, datetime

import pytest
import requests
import yaml
from dagster import DagsterEventType, DagsterRunStatus, build_schedule_context
from sqlalchemy import create_engine, text

import definitions
from resources.control_plane import upsert_connection, upsert_workspace
from resources.db import get_engine
from resources.settings import warehouse_url
from sync_assets.runs import connector_asset_names
from tests.e2e.api_client import ADMIN
from tests.support import REPO, rows, wait_until

SIZES = {"hubspot": {"deals": 120, "contacts": 150, "companies": 60, "tasks": 80}}


def register(stack, workspace: str, **config) -> None:
    engine = get_engine(warehouse_url())
    upsert_workspace(engine, workspace, workspace)
    offered = stack.sandbox.connections()["hubspot"]
    upsert_connection(engine, workspace, "hubspot", offered["credentials"], {**offered["config"], **config})
    stack.instance.add_dynamic_partitions("workspace", [workspace])


def interval(stack, run_id: str) -> tuple[float, float]:
    record = stack.run_record(run_id)
    return record.start_time, record.end_time


def test_schedule_queues_one_run_per_idle_workspace_and_they_run_in_parallel(e2e, capfd):
    stack = e2e
    stack.sandbox.reset(sizes=SIZES)
    stack.sandbox.faults("hubspot", latency_ms=250)
    for ws in ("sched-a", "sched-b", "sched-c", "sched-busy"):
        register(stack, ws)
    busy_run = stack.launch("sync_hubspot", "sched-busy")
    stack.wait_for_run(busy_run, {DagsterRunStatus.STARTED, DagsterRunStatus.STARTING})

    schedule = definitions.defs.get_repository_def().get_schedule_def("daily_sync")
    context = build_schedule_context(
        instance=stack.instance,
        scheduled_execution_time=datetime(2026, 11, 30, 2, 0, tzinfo=UTC),
        repository_def=definitions.defs.get_repository_def(),
        resources={"warehouse": definitions.defs.resources["warehouse"]},
    )
    started = time.monotonic()
    capfd.readouterr()
    result = schedule.evaluate_tick(context)
    assert time.monotonic() - started < 5
    logged = capfd.readouterr().err
    requests = result.run_requests
    assert sorted(r.tags["dagster/partition"] for r in requests) == ["sched-a", "sched-b", "sched-c"]
    assert all(r.tags["sales-sync/sync_type"] == "scheduled" for r in requests)
    hubspot_config = {"ops": {"hubspot_sync": {"config": {"full_refresh": False}}}}
    assert all(r.run_config == hubspot_config for r in requests)
    # The connector's assets, then the warehouse tables it writes (recorded in the same run).
    assert {tuple(k.path) for k in requests[0].asset_selection} == {
        ("hubspot", "deals"),
        ("hubspot", "contacts"),
        ("hubspot", "accounts"),
        ("hubspot", "tasks"),
        *(("warehouse", t) for t in ("deals", "contacts", "accounts", "tasks", "sync_errors")),
    }
    assert "Queueing daily sync jobs for 4 workspace(s)" in logged
    assert "Skipping workspace sched-busy: a sync is already queued or running" in logged
    assert "Daily sync jobs queued: 3/4 workspaces" in logged

    # Submit exactly what the daemon would, then let the daemon's queue run them.
    run_ids = [
        stack.launch(
            "sync_workspace",
            r.tags["dagster/partition"],
            tags=dict(r.tags),
            assets=["/".join(k.path) for k in r.asset_selection],
        )
        for r in requests
    ]
    runs = [stack.wait_for_run(run_id, timeout_s=180) for run_id in run_ids]
    assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * 3
    intervals = [interval(stack, run_id) for run_id in run_ids]
    assert max(start for start, _ in intervals) < min(end for _, end in intervals), intervals
    for ws in ("sched-a", "sched-b", "sched-c"):
        assert rows("SELECT count(*) FROM deals WHERE workspace_id = :w", w=ws) == [(120,)]
    stack.wait_for_run(busy_run, timeout_s=120)


def test_no_workspaces_logs_no_workspaces(e2e, capfd):
    schedule = definitions.defs.get_repository_def().get_schedule_def("daily_sync")
    context = build_schedule_context(
        instance=e2e.instance,
        repository_def=definitions.defs.get_repository_def(),
        resources={"warehouse": definitions.defs.resources["warehouse"]},
    )
    capfd.readouterr()
    result = schedule.evaluate_tick(context)
    assert not result.run_requests
    assert result.skip_message == "No workspaces"
    assert "INFO - No workspaces" in capfd.readouterr().err


def test_one_active_run_per_workspace_while_other_workspaces_proceed(e2e):
    stack = e2e
    stack.sandbox.reset(sizes=SIZES)
    stack.sandbox.faults("hubspot", latency_ms=300)
    for ws in ("conc-a", "conc-b"):
        register(stack, ws)
    first = stack.launch("sync_hubspot", "conc-a")
    second = stack.launch("sync_hubspot", "conc-a")
    other = stack.launch("sync_hubspot", "conc-b")
    for run_id in (first, second, other):
        assert stack.wait_for_run(run_id, timeout_s=180).status == DagsterRunStatus.SUCCESS
    _, first_end = interval(stack, first)
    other_start, _ = interval(stack, other)
    # The queue let the second run of conc-a go only once the first had ended (RUN_STARTING is the
    # dequeue), while conc-b's run started before that end.
    [dequeued] = stack.instance.all_logs(second, of_type=DagsterEventType.RUN_STARTING)
    assert dequeued.timestamp >= first_end
    assert other_start < first_end


def test_run_past_its_max_runtime_fails_with_the_limit_named(e2e):
    stack = e2e
    stack.sandbox.reset(sizes=SIZES)
    # Every request outlasts the limit (six requests at least, 20 s each), so the step cannot finish
    # before run monitoring fails the run, however fast or loaded the machine is.
    stack.sandbox.faults("hubspot", latency_ms=20_000)
    register(stack, "timeout-ws")
    # No run retry: a retry would still be syncing (or waiting on the vendor) when the next test begins.
    run_id = stack.launch("sync_hubspot", "timeout-ws", tags={"dagster/max_runtime": "5", "dagster/max_retries": "0"})
    run = stack.wait_for_run(run_id, timeout_s=90)
    assert run.status == DagsterRunStatus.FAILURE
    start, end = interval(stack, run_id)
    # The daemon checks every 5 s; the upper bound is loose because a loaded daemon polls late, and the
    # message below already names the limit as the cause.
    assert 5 <= end - start <= 60
    error = wait_until(
        lambda: rows("SELECT status, error FROM sync_log WHERE run_id = :r AND status <> 'running'", r=run_id),
        30,
        "sync_log row closed",
    )
    assert error == [("failed", f"Job {run_id} exceeded timeout of 5000ms")]
    assert stack.instance.run_monitoring_max_runtime_seconds == 600  # the default without the tag


def test_a_run_canceled_after_one_connector_finished_tells_one_outcome_everywhere(e2e):
    stack = e2e
    stack.sandbox.reset(sizes={**SIZES, "gong": {"calls": 30}})
    # Gong's every request outlasts the test's wait: its step is still reading when the run is canceled.
    stack.sandbox.faults("gong", latency_ms=20_000)
    register(stack, "cancel-ws")
    offered = stack.sandbox.connections()["gong"]
    upsert_connection(get_engine(warehouse_url()), "cancel-ws", "gong", offered["credentials"], offered["config"])
    run_id = stack.launch("sync_workspace", "cancel-ws", assets=connector_asset_names(["hubspot", "gong"]))
    finished = "SELECT 1 FROM sync_log WHERE run_id = :r AND connector_type = 'hubspot' AND status = 'completed'"
    wait_until(lambda: rows(finished, r=run_id), 180, "hubspot's step finished")
    stack.graphql.terminate_run(run_id)
    assert stack.wait_for_run(run_id, timeout_s=120).status == DagsterRunStatus.CANCELED

    canceled = f"Job {run_id} was canceled"
    run_rows = "SELECT connector_type, status, error, records_synced FROM sync_log WHERE run_id = :r ORDER BY id"

    def settled() -> list[tuple] | None:
        found = rows(run_rows, r=run_id)
        return found if all(status == "failed" for _, status, _, _ in found) else None

    closed = wait_until(settled, 60, "the run's rows settled")
    assert sorted(c for c, *_ in closed) == ["gong", "hubspot"], closed
    (gong, hubspot) = sorted(closed)
    # The run's outcome wins; hubspot's committed records stay and are still counted.
    assert hubspot == (
        "hubspot",
        "failed",
        f"{canceled} (stopped after this connector had finished: its records are committed)",
        410,
    )
    assert gong[:2] == ("gong", "failed")
    assert gong[2] in (canceled, f"Job {run_id} was interrupted (canceled or terminated)")
    assert rows("SELECT count(*) FROM deals WHERE workspace_id = 'cancel-ws'") == [(120,)]
    api = requests.get(
        f"{stack.api_url}/api/workspaces/cancel-ws/sync/jobs/{run_id}",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=60,
    )
    job = api.json()
    assert (job["status"], job["dagsterStatus"]) == ("canceled", "CANCELED")
    assert {r["connector"]: r["status"] for r in job["results"]} == {"hubspot": "failed", "gong": "failed"}


def _run_worker_pids(stack, run_id: str) -> list[int]:
    """The run worker announces its pid in the run's engine events."""
    found = []
    for event in stack.instance.all_logs(run_id):
        match = re.search(r"Executing steps in process \(pid: (\d+)\)", event.user_message or "")
        if match:
            found.append(int(match.group(1)))
    return found


def test_killed_run_worker_is_reaped_and_the_workspace_syncs_again(e2e):
    stack = e2e
    stack.sandbox.reset(sizes=SIZES)
    stack.sandbox.faults("hubspot", latency_ms=400)
    register(stack, "dead-ws")
    run_id = stack.launch("sync_hubspot", "dead-ws")
    wait_until(lambda: rows("SELECT 1 FROM sync_log WHERE run_id = :r AND status = 'running'", r=run_id), 60)
    pids = wait_until(lambda: _run_worker_pids(stack, run_id), 10, "run worker process")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # Dagster may notice the dead worker itself; either way the lease reaper closes the sync record.
    run = stack.wait_for_run(run_id, timeout_s=60)
    assert run.status == DagsterRunStatus.FAILURE
    closed = wait_until(
        lambda: rows("SELECT status, error FROM sync_log WHERE run_id = :r AND status <> 'running'", r=run_id),
        60,
        "sync_log row reaped",
    )
    assert time.monotonic() - killed_at < 40  # lease 12 s + reaper interval 5 s + slack
    (status, error) = closed[0]
    # Whichever notices first names the loss: the code server (its run process died, so the run-failure
    # sensor closes the row) or the lease reaper (the heartbeat stopped).
    crashed = f"Sync worker lost: Run execution process for {run_id} was terminated by signal 9 (SIGKILL)."
    assert status == "failed"
    assert error.startswith(crashed) or error.startswith("Sync worker lost: no heartbeat for "), error

    # Dagster retries a run whose worker died (dagster.yaml run_retries); the retry syncs the workspace.
    stack.sandbox.clear_faults("hubspot")
    again = wait_until(lambda: stack.retry_of(run_id), 120, "Dagster's retry of the killed run").run_id
    assert stack.wait_for_run(again, timeout_s=120).status == DagsterRunStatus.SUCCESS
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM deals WHERE workspace_id = 'dead-ws'") == [(120, 120)]
    assert rows("SELECT count(*) FROM contacts WHERE workspace_id = 'dead-ws'") == [(150,)]


def test_lost_warehouse_connection_fails_the_step_which_is_retried_to_success(e2e, pg_url):
    stack = e2e
    stack.sandbox.reset(sizes=SIZES)
    register(stack, "dbloss-ws")
    database = pg_url.rsplit("/", 1)[1]
    locker = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    lock_conn = locker.connect()
    lock_conn.execute(text("BEGIN"))
    lock_conn.execute(text("LOCK TABLE deals IN ACCESS EXCLUSIVE MODE"))
    run_id = stack.launch("sync_hubspot", "dbloss-ws")

    watcher = locker.connect()  # activity views are frozen inside a transaction: look from outside it

    def blocked_backends():
        query = text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND wait_event_type = 'Lock'")
        return watcher.execute(query, {"d": database}).scalars().all()

    # The sync's first page waits inside its transaction: cut that connection, then let go of the lock.
    for pid in wait_until(blocked_backends, 90, "the sync blocked on the lock"):
        watcher.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    watcher.close()
    lock_conn.execute(text("COMMIT"))
    lock_conn.close()
    locker.dispose()

    run = stack.wait_for_run(run_id, timeout_s=120)
    assert run.status == DagsterRunStatus.SUCCESS
    retried = [
        e
        for e in stack.instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert len(retried) == 1
    log = rows("SELECT status FROM sync_log WHERE run_id = :r ORDER BY id", r=run_id)
    assert log == [("failed",), ("completed",)]
    assert rows("SELECT count(*), count(DISTINCT source_id) FROM deals WHERE workspace_id = 'dbloss-ws'") == [
        (120, 120)
    ]
    assert rows("SELECT count(*) FROM tasks WHERE workspace_id = 'dbloss-ws'") == [(80,)]


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/dagster.embedded.yaml"])
def test_instance_configs_validate_against_dagsters_schema(path, tmp_path):
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config_schema

    config = yaml.safe_load((REPO / path).read_text())
    result = validate_config(dagster_instance_config_schema(), config)
    assert result.success, [e.message for e in result.errors]
    assert config["run_monitoring"]["max_runtime_seconds"] == 600
    assert config["concurrency"]["runs"]["tag_concurrency_limits"] == [
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    assert config["run_coordinator"]["config"]["dequeue_use_threads"] is True
