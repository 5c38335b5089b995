"""`sync_workspace` on Celery workers (SYNC_EXECUTOR=celery, RabbitMQ broker in a private vhost): steps
spread over two worker processes, results equal a single-machine run, a killed worker's step is redelivered
to the other one, and the Postgres-held limits (credential rate limit, one run per workspace) hold across
workers. Real processes throughout: dagster-webserver, dagster-daemon, the sandbox, `dagster-celery worker`."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from dagster import DagsterEventType, DagsterRunStatus

from resources.control_plane import upsert_connection, upsert_workspace
from resources.db import get_engine
from resources.settings import warehouse_url
from scripts import workers
from sync_assets import CONNECTORS_BY_NAME
from sync_assets.state import asset_key
from tests.stack import Stack, start_stack, stop_stack
from tests.support import SANDBOX_URL_ENV, rows, run_sync, wait_until

TABLES = ("deals", "contacts", "accounts", "tasks")
HUBSPOT_RATE = {"requests": 5, "per_seconds": 1}  # one request every 202 ms per credential
# The operator's platform limits for this stack: HubSpot's credential shared at HUBSPOT_RATE, Salesforce's off.
PLATFORM_LIMITS = {"hubspot": HUBSPOT_RATE, "salesforce": False}
SIZES = {
    "hubspot": {"deals": 250, "contacts": 150, "companies": 60, "tasks": 80},
    "salesforce": {"Opportunity": 120, "Contact": 150, "Account": 60, "Task": 80},
}
EXPECTED = {"deals": 370, "contacts": 300, "accounts": 120, "tasks": 160}  # hubspot + salesforce per workspace


@dataclass
class CeleryPlatform:
    stack: Stack
    pool: list[workers.Worker]

    def restart(self, worker: workers.Worker) -> None:
        fresh = workers.start_worker(worker.name, self.stack.env, worker.log.parent)
        workers.wait_ready([fresh])
        self.pool[self.pool.index(worker)] = fresh


@pytest.fixture(scope="module")
def platform(pg_url: str) -> Iterator[CeleryPlatform]:
    vhost = f"sync_test_{os.getpid()}_{secrets.token_hex(3)}"
    broker = workers.create_vhost(vhost)
    other_instance = os.environ.get("DAGSTER_PG_URL")  # start_stack points this process at its own instance
    stack = start_stack(
        pg_url,
        with_api=False,
        extra_env={
            "SYNC_EXECUTOR": "celery",
            "SYNC_CELERY_BROKER": broker,
            # Four runs start at once on two shared cores: give the code server's run launch room (default 60 s).
            "DAGSTER_GRPC_TIMEOUT_SECONDS": "180",
            # The redelivered step must start within the lease, or the reaper fails the run (production: 120 s).
            "SYNC_LEASE_SECONDS": "30",
            "SYNC_RATE_LIMITS": json.dumps(PLATFORM_LIMITS),
        },
    )
    try:
        pool = workers.start_workers(2, stack.env, stack.logs)
        try:
            yield CeleryPlatform(stack, pool)
        finally:
            workers.stop_workers(pool)
    finally:
        stop_stack(stack)
        workers.delete_vhost(vhost)
        if other_instance is None:
            os.environ.pop("DAGSTER_PG_URL", None)
        else:
            os.environ["DAGSTER_PG_URL"] = other_instance


@pytest.fixture
def celery(platform: CeleryPlatform, warehouse) -> CeleryPlatform:
    platform.stack.sandbox.reset(sizes=SIZES)
    return platform


def register(stack: Stack, workspace: str, connectors: tuple[str, ...], **config) -> list[str]:
    """The workspace, its connections (one shared sandbox credential per vendor) and its partition;
    returns the asset selection a workspace sync of these connections makes."""
    engine = get_engine(warehouse_url())
    upsert_workspace(engine, workspace, workspace)
    offered = stack.sandbox.connections()
    for name in connectors:
        upsert_connection(engine, workspace, name, offered[name]["credentials"], {**offered[name]["config"], **config})
    stack.instance.add_dynamic_partitions("workspace", [workspace])
    return [
        "/".join(asset_key(CONNECTORS_BY_NAME[c], e).path) for c in connectors for e in CONNECTORS_BY_NAME[c].entities
    ]


@dataclass
class StepExecution:
    step: str
    worker: str  # Celery node name: <worker>@<host>
    started: float
    pid: int | None = None  # the worker process that ran it (from its STEP_START)
    ended: float | None = None


def step_executions(stack: Stack, run_id: str) -> list[StepExecution]:
    """Each time a Celery worker picked up one of the run's steps, from the run's event log: dagster-celery's
    "Executing steps <key> in celery worker" engine event names the worker node; the step's events that
    follow, until the next pick-up of the same step, come from that worker's process."""
    found: list[StepExecution] = []
    current: dict[str, StepExecution] = {}
    for event in stack.instance.all_logs(run_id):
        dagster_event = event.dagster_event
        if dagster_event is None or event.step_key is None:
            continue
        if dagster_event.event_type == DagsterEventType.ENGINE_EVENT:
            worker = dagster_event.engine_event_data.metadata.get("Celery worker")
            if worker is not None:
                current[event.step_key] = StepExecution(event.step_key, worker.value, event.timestamp)
                found.append(current[event.step_key])
            continue
        execution = current.get(event.step_key)
        if execution is None:
            continue
        if dagster_event.event_type == DagsterEventType.STEP_START:
            execution.pid = dagster_event.pid
        elif dagster_event.event_type in {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}:
            execution.ended = event.timestamp
    return found


def table_contents(workspace: str) -> dict[str, list[tuple]]:
    """Every row of a workspace, minus what differs by design between two syncs (workspace id, row id,
    load timestamps)."""
    return {
        table: rows(
            f"SELECT source, source_id, (to_jsonb(t) - 'workspace_id' - 'id' - 'created_at' - 'updated_at')::text "
            f"FROM {table} t WHERE workspace_id = :w ORDER BY source, source_id",
            w=workspace,
        )
        for table in TABLES
    }


def assert_exact_rows(workspace: str) -> None:
    for table, count in EXPECTED.items():
        counted = rows(
            f"SELECT count(*), count(DISTINCT (source, source_id)) FROM {table} WHERE workspace_id = :w", w=workspace
        )
        assert counted == [(count, count)], (workspace, table, counted)


def overlapping_on_different_workers(executions: list[StepExecution]) -> bool:
    return any(
        a.worker != b.worker and a.started < (b.ended or time.time()) and b.started < (a.ended or time.time())
        for a in executions
        for b in executions
    )


def test_four_workspaces_spread_over_both_workers_and_match_a_single_machine_run(celery, instance, monkeypatch):
    stack = celery.stack
    stack.sandbox.faults("hubspot", latency_ms=50)
    stack.sandbox.faults("salesforce", latency_ms=50)
    workspaces = [f"celery-{i}" for i in range(1, 5)]
    selection = [register(stack, ws, ("hubspot", "salesforce")) for ws in workspaces][0]

    launched = {ws: stack.launch("sync_workspace", ws, assets=selection) for ws in workspaces}
    again = stack.launch("sync_workspace", "celery-1", assets=selection)  # queued behind the first celery-1 run
    runs = {ws: stack.wait_for_run(run_id, timeout_s=150) for ws, run_id in launched.items()}
    assert {ws: r.status for ws, r in runs.items()} == dict.fromkeys(workspaces, DagsterRunStatus.SUCCESS), [
        failure_messages(stack, run_id) for run_id in launched.values()
    ]
    assert stack.wait_for_run(again, timeout_s=120).status == DagsterRunStatus.SUCCESS, failure_messages(stack, again)

    # Every step ran on a Celery worker, and both workers (two processes) took steps.
    executions = {ws: step_executions(stack, run_id) for ws, run_id in launched.items()}
    assert {ws: sorted(e.step for e in ex) for ws, ex in executions.items()} == dict.fromkeys(
        workspaces, ["hubspot_sync", "salesforce_sync"]
    )
    everything = [e for ex in executions.values() for e in ex]
    assert {e.worker.split("@")[0] for e in everything} == {"sync-worker-1", "sync-worker-2"}
    assert len({e.pid for e in everything}) == 2 and None not in {e.pid for e in everything}
    assert not {e.pid for e in everything} & {os.getpid(), *(s.process.pid for s in stack.services if s.process)}

    # One run per workspace, across workers too: the second celery-1 run started after the first ended.
    first, second = stack.run_record(launched["celery-1"]), stack.run_record(again)
    assert second.start_time >= first.end_time

    # Exact rows, no duplicates (the second celery-1 run re-synced in place), and the same content as a
    # single-machine run of the same workspace (in this process, Dagster's in-process executor).
    for ws in workspaces:
        assert_exact_rows(ws)
    stack.sandbox.clear_faults("hubspot")
    stack.sandbox.clear_faults("salesforce")
    # This process syncs it, with the workers' settings: their limits, their vendor endpoints.
    monkeypatch.setenv("SYNC_RATE_LIMITS", json.dumps(PLATFORM_LIMITS))
    monkeypatch.setenv(SANDBOX_URL_ENV, stack.sandbox.url)
    register(stack, "single-machine", ("hubspot", "salesforce"))
    instance.add_dynamic_partitions("workspace", ["single-machine"])
    assert run_sync(instance, connector_assets("hubspot", "salesforce"), "single-machine").success
    assert_exact_rows("single-machine")
    expected = table_contents("single-machine")
    for ws in workspaces:
        assert table_contents(ws) == expected, ws


def connector_assets(*names: str) -> list:
    import definitions

    return [a for a in definitions.connector_assets if a.node_def.name in {f"{n}_sync" for n in names}]


def test_a_shared_credentials_rate_limit_holds_across_workers(celery):
    """Two workspaces share one HubSpot credential; their steps run at the same time on the two workers
    (one step per idle worker), yet the vendor sees evenly spaced calls and, enforcing the same limit,
    never answers 429."""
    stack = celery.stack
    # Big enough that each workspace's step outlasts the gap between the two runs' launches (seconds on a
    # loaded machine): 23 calls is about 5 s at the shared pace.
    stack.sandbox.reset(sizes={"hubspot": {"deals": 3000, "contacts": 150, "companies": 60, "tasks": 80}})
    # The vendor enforces one call of headroom over the client's pace, so arrival jitter on a busy machine
    # is not a 429, while two workers each pacing alone (10 calls/s) would be.
    stack.sandbox.limits("hubspot", HUBSPOT_RATE["requests"] + 1, HUBSPOT_RATE["per_seconds"])
    stack.sandbox.faults("hubspot", latency_ms=100)
    workspaces = ["limit-a", "limit-b"]
    selection = [register(stack, ws, ("hubspot",)) for ws in workspaces][0]
    run_ids = [stack.launch("sync_workspace", ws, assets=selection) for ws in workspaces]
    for run_id in run_ids:
        assert stack.wait_for_run(run_id, timeout_s=150).status == DagsterRunStatus.SUCCESS, failure_messages(
            stack, run_id
        )

    executions = [e for run_id in run_ids for e in step_executions(stack, run_id)]
    assert overlapping_on_different_workers(executions), executions
    log = stack.sandbox.requests("hubspot")
    assert {r["status"] for r in log} == {200}
    # Any 10 consecutive calls span at least ~10 intervals (a span, not single gaps: the sandbox stamps arrival
    # on one event loop, which can bunch two stamps when the machine is busy). Two workers each pacing itself
    # alone would make spans of ~5 intervals.
    stamps = [r["ts_ms"] / 1000 for r in log]
    interval = HUBSPOT_RATE["per_seconds"] / HUBSPOT_RATE["requests"]
    spans = [later - earlier for earlier, later in zip(stamps, stamps[10:], strict=False)]
    # Per workspace: deals in 16 search pages of 200 (the last one empty), contacts, companies and tasks in
    # one page each, then one archive page of each.
    assert len(stamps) == 2 * (16 + 3 + 4)
    assert min(spans) >= 10 * interval * 0.9, sorted(spans)[:3]
    for ws in workspaces:
        assert rows("SELECT count(*), count(DISTINCT source_id) FROM deals WHERE workspace_id = :w", w=ws) == [
            (3000, 3000)
        ]


def test_a_killed_workers_step_is_redelivered_to_the_other_worker_without_loss_or_duplicates(celery):
    stack = celery.stack
    # 26 search pages of 200 deals at 400 ms each: about 10 s of reading left after the first commit.
    stack.sandbox.reset(sizes={"hubspot": {"deals": 5000, "contacts": 150, "companies": 60, "tasks": 80}})
    stack.sandbox.faults("hubspot", latency_ms=400)
    selection = register(stack, "celery-kill", ("hubspot",))
    run_id = stack.launch("sync_workspace", "celery-kill", assets=selection)

    # Mid-sync: the step is on a worker and has committed some pages, but not all.
    running = wait_until(lambda: step_executions(stack, run_id), 120, "the step picked up by a worker")[0]
    deals = "SELECT count(*) FROM deals WHERE workspace_id = 'celery-kill'"
    wait_until(lambda: rows(deals)[0][0] > 0, 60, "a committed page")
    victim = next(w for w in celery.pool if running.worker.startswith(f"{w.name}@"))
    workers.kill_worker(victim)
    committed_before_the_kill = rows(deals)[0][0]
    assert 0 < committed_before_the_kill < 5000
    try:
        run = stack.wait_for_run(run_id, timeout_s=150)
        assert run.status == DagsterRunStatus.SUCCESS, failure_messages(stack, run_id)
        first, second = step_executions(stack, run_id)
        assert (first.step, first.worker, second.step) == ("hubspot_sync", running.worker, "hubspot_sync")
        assert second.worker != first.worker
        assert None not in (first.pid, second.pid) and second.pid != first.pid
        assert first.ended is None and second.ended is not None
        for table, count in {"deals": 5000, "contacts": 150, "accounts": 60, "tasks": 80}.items():
            counted = rows(
                f"SELECT count(*), count(DISTINCT source_id) FROM {table} WHERE workspace_id = 'celery-kill'"
            )
            assert counted == [(count, count)], (table, counted)
        # The dead attempt's sync record is closed by the lease reaper; the run it belonged to was not failed.
        closed = wait_until(
            lambda: (
                rows("SELECT status, error FROM sync_log WHERE run_id = :r ORDER BY id", r=run_id)
                if not rows("SELECT 1 FROM sync_log WHERE run_id = :r AND status = 'running'", r=run_id)
                else None
            ),
            60,
            "the dead attempt's sync_log row reaped",
        )
        assert [s for s, _ in closed] == ["failed", "completed"]
        assert closed[0][1].startswith("Sync worker lost: no heartbeat for ")
        assert stack.instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
    finally:
        celery.restart(victim)


def failure_messages(stack: Stack, run_id: str) -> list[str]:
    found = []
    for event in stack.instance.all_logs(run_id):
        error = getattr(event.dagster_event.event_specific_data, "error", None) if event.dagster_event else None
        if error is not None:
            found.append(f"{event.step_key}: {error.to_string()[:2000]}")
        elif event.dagster_event and event.dagster_event.event_type == DagsterEventType.RUN_FAILURE:
            found.append(event.user_message or event.dagster_event.message or "")
    return found
