"""The API's launch outbox (api/launches.py) on a real Postgres warehouse: what a trigger commits, how
it blocks a second trigger until its run is launched, what the views say meanwhile, and how failed
launches are retried and then reported. Dagster is replaced by a recorder here; tests/e2e/test_api.py
launches through the real instance and daemon."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from dagster import build_schedule_context
from sqlalchemy import select, update

import definitions
from api.errors import ApiError
from api.launcher import CodeLocationUnavailable
from api.launches import Launcher
from api.syncs import SyncOptions, get_job, list_jobs, status, trigger
from resources import schema
from resources.control_plane import upsert_connection, upsert_workspace
from resources.warehouse import WarehouseResource

# A workspace sync selects the connector's assets, then the warehouse tables they write.
HUBSPOT_ASSETS = [
    "hubspot/deals",
    "hubspot/contacts",
    "hubspot/accounts",
    "hubspot/tasks",
    *(f"warehouse/{t}" for t in ("deals", "contacts", "accounts", "tasks", "sync_errors")),
]
launches = schema.sync_launches


class RecordingRuns:
    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.launched: list[tuple] = []

    def launch(self, run_id, job_name, tags, asset_keys, run_config) -> None:
        if self.failure is not None:
            raise self.failure
        self.launched.append((run_id, job_name, tags, asset_keys, run_config))


class IdleDagster:
    """Dagster as the API sees it, with no run in flight; records what the outbox asks of it."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.runs = RecordingRuns(failure)
        self.checked: list[tuple] = []
        self.partitions: list[str] = []

    def in_flight(self, workspace_id):
        return []

    def check_launchable(self, job_name, asset_keys) -> None:
        self.checked.append((job_name, asset_keys))

    def ensure_partition(self, workspace_id) -> None:
        self.partitions.append(workspace_id)

    def job_runs(self, job_id):
        return []

    def recent_jobs(self, workspace_id, limit):
        return []


class WakeCounter:
    wakes = 0

    def wake(self) -> None:
        self.wakes += 1


@pytest.fixture
def hubspot_workspace(warehouse):
    upsert_workspace(warehouse, "ws1", "Ws1")
    upsert_connection(warehouse, "ws1", "hubspot", {"access_token": "pat-secret-1"}, {})
    return warehouse


def outbox(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    launches.c.job_id,
                    launches.c.workspace_id,
                    launches.c.job_name,
                    launches.c.asset_keys,
                    launches.c.status,
                    launches.c.attempts,
                    launches.c.error,
                ).order_by(launches.c.created_at)
            )
        ]


def make_due(engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(launches).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_an_accepted_sync_waits_in_the_outbox_and_blocks_a_second_until_its_run_is_launched(hubspot_workspace):
    engine, dagster, waker = hubspot_workspace, IdleDagster(), WakeCounter()
    accepted = trigger(engine, dagster, waker, "ws1", None, SyncOptions(full_refresh=True))
    job_id = accepted.job_id
    assert waker.wakes == 1
    assert dagster.checked == [("sync_workspace", HUBSPOT_ASSETS)]
    assert outbox(engine) == [(job_id, "ws1", "sync_workspace", HUBSPOT_ASSETS, "pending", 0, None)]

    with pytest.raises(ApiError) as conflict:
        trigger(engine, dagster, waker, "ws1", "hubspot", SyncOptions())
    assert (conflict.value.status, conflict.value.message) == (
        409,
        f"a sync of workspace 'ws1' is already queued (job {job_id})",
    )

    job = get_job(engine, dagster, "ws1", job_id)
    assert {k: v for k, v in job.items() if k != "createdAt"} == {
        "jobId": job_id,
        "syncId": accepted.sync_id,
        "workspaceId": "ws1",
        "status": "queued",
        "dagsterStatus": None,
        "jobName": "sync_workspace",
        "syncType": "manual",
        "fullRefresh": True,
        "connectors": ["hubspot"],
        "attempts": 0,
        "startedAt": None,
        "completedAt": None,
        "durationMs": None,
        "recordsSynced": 0,
        "recordsDeleted": 0,
        "recordsFailed": 0,
        "results": [],
        "errors": [],
        "error": None,
    }
    assert datetime.fromisoformat(job["createdAt"]) > datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(ApiError) as foreign:
        get_job(engine, dagster, "ws2", job_id)
    assert foreign.value.status == 404
    active = {"jobId": job_id, "status": "queued", "connectors": ["hubspot"]}
    assert status(engine, dagster, "ws1")["activeJob"] == active
    assert [j["jobId"] for j in list_jobs(engine, dagster, "ws1", 20)] == [job_id]

    launcher = Launcher(engine, dagster)
    assert launcher.launch_next() is True
    expected_tags = {
        "sales-sync/sync_type": "manual",
        "sales-sync/sync_id": accepted.sync_id,
        "dagster/priority": "10",
        "sales-sync/full_refresh": "true",
        "dagster/partition": "ws1",
    }
    expected_config = {"ops": {"hubspot_sync": {"config": {"full_refresh": True}}}}
    assert dagster.runs.launched == [(job_id, "sync_workspace", expected_tags, HUBSPOT_ASSETS, expected_config)]
    assert dagster.partitions == ["ws1"]
    assert outbox(engine) == []
    assert launcher.launch_next() is False
    # From here the run itself is in flight (Dagster's check, exercised end to end); the outbox no
    # longer holds the workspace.
    second = trigger(engine, dagster, waker, "ws1", "hubspot", SyncOptions())
    assert outbox(engine) == [(second.job_id, "ws1", "sync_hubspot", None, "pending", 0, None)]


def test_a_failing_launch_is_retried_with_backoff_then_reported_failed_without_its_cause_text(
    hubspot_workspace, caplog
):
    engine = hubspot_workspace
    dagster = IdleDagster(RuntimeError("could not connect to postgresql://dagster:s3cret-pw@db/dagster"))
    job_id = trigger(engine, dagster, WakeCounter(), "ws1", "hubspot", SyncOptions()).job_id
    launcher = Launcher(engine, dagster)
    error = "Dagster could not launch the run: RuntimeError"

    delays = []
    for attempt in range(1, 5):
        before = datetime.now(UTC)
        assert launcher.launch_next() is True
        assert outbox(engine) == [(job_id, "ws1", "sync_hubspot", None, "pending", attempt, error)]
        assert launcher.launch_next() is False  # not due before its backoff
        with engine.connect() as conn:
            due = conn.execute(select(launches.c.next_attempt_at)).scalar_one()
        delays.append(round((due - before).total_seconds()))
        make_due(engine)
    assert delays == [1, 2, 4, 8]
    assert launcher.launch_next() is True
    assert outbox(engine) == [(job_id, "ws1", "sync_hubspot", None, "failed", 5, error)]
    assert launcher.launch_next() is False
    assert dagster.runs.launched == []

    job = get_job(engine, dagster, "ws1", job_id)
    assert (job["status"], job["dagsterStatus"], job["error"]) == ("failed", None, error)
    assert status(engine, dagster, "ws1")["activeJob"] is None
    # A failed launch blocks nothing.
    retry = trigger(engine, dagster, WakeCounter(), "ws1", "hubspot", SyncOptions())
    assert [(r[0], r[4]) for r in outbox(engine)] == [(job_id, "failed"), (retry.job_id, "pending")]
    assert "s3cret-pw" not in caplog.text
    assert f"giving up launching job {job_id} of workspace ws1: {error}" in caplog.text


def test_an_unreachable_code_location_is_named_in_the_launch_error(hubspot_workspace):
    engine = hubspot_workspace
    dagster = IdleDagster(CodeLocationUnavailable("code location 'sales_sync' is unreachable"))
    trigger(engine, dagster, WakeCounter(), "ws1", "hubspot", SyncOptions())
    assert Launcher(engine, dagster).launch_next() is True
    [row] = outbox(engine)
    assert row[5:] == (1, "Dagster could not launch the run: code location 'sales_sync' is unreachable")


def test_a_serving_launcher_drains_what_was_accepted_before_it_started(hubspot_workspace):
    """A row committed by a process that stopped before launching it is launched by the next one."""
    engine, dagster = hubspot_workspace, IdleDagster()
    job_id = trigger(engine, dagster, WakeCounter(), "ws1", "hubspot", SyncOptions()).job_id
    wakeups, waker = multiprocessing.Pipe(duplex=False)
    serving = threading.Thread(target=Launcher(engine, dagster).serve, args=(wakeups,))
    serving.start()
    try:
        deadline = time.monotonic() + 10
        while outbox(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        waker.close()  # the end of the pipe stops it
        serving.join(10)
    assert [r[0] for r in dagster.runs.launched] == [job_id]
    assert outbox(engine) == []
    assert not serving.is_alive()


def test_the_daily_schedule_skips_a_workspace_whose_accepted_sync_is_not_launched_yet(
    hubspot_workspace, instance, pg_url, capfd
):
    engine = hubspot_workspace
    upsert_workspace(engine, "ws2", "Ws2")
    upsert_connection(engine, "ws2", "hubspot", {"access_token": "pat-secret-2"}, {})
    instance.add_dynamic_partitions("workspace", ["ws1", "ws2"])
    trigger(engine, IdleDagster(), WakeCounter(), "ws1", None, SyncOptions())

    repository = definitions.defs.get_repository_def()
    context = build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 12, 4, 2, 0, tzinfo=UTC),
        repository_def=repository,
        resources={"warehouse": WarehouseResource(url=pg_url)},
    )
    capfd.readouterr()
    result = repository.get_schedule_def("daily_sync").evaluate_tick(context)
    assert [r.tags["dagster/partition"] for r in result.run_requests] == ["ws2"]
    assert "Skipping workspace ws1: a sync is already queued or running" in capfd.readouterr().err
