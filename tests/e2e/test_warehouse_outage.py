"""Real warehouse outages: the platform's processes reach Postgres through a TCP proxy that the test cuts
and restores. A sync survives an outage of a minute (its step is retried 5, 10, 20 and 40 s apart and
resumes from the committed watermarks); a longer one fails it cleanly, with the cause in sync_log and in
the sync.failed webhook once the warehouse is back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from dagster import DagsterEventType, DagsterRunStatus

from resources.control_plane import upsert_connection, upsert_workspace
from resources.db import get_engine
from resources.settings import warehouse_url
from resources.webhooks.config import set_webhook
from sync_assets.factory import WAREHOUSE_RETRY_WAITS_S
from tests.receiver import Receiver
from tests.stack import Stack, start_stack, stop_stack
from tests.support import rows, wait_until
from tests.tcp_proxy import TcpProxy
from tests.test_webhooks import SECRET

SIZES = {"hubspot": {"deals": 120, "contacts": 150, "companies": 60, "tasks": 80}}
OUTAGE_S = 60
# Every vendor request takes a second: the sync is still reading when the proxy is cut after its first commit.
LATENCY_MS = 1000
EXPECTED = {"deals": 120, "contacts": 150, "accounts": 60, "tasks": 80}


@pytest.fixture(scope="module")
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 5432) as running:
        yield running


@pytest.fixture(scope="module")
def stack(pg_url: str, proxy: TcpProxy) -> Iterator[Stack]:
    """The platform's processes use the proxied warehouse URL; this test process reads it directly."""
    assert "@127.0.0.1:5432/" in pg_url
    running = start_stack(pg_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/"), with_api=False)
    yield running
    stop_stack(running)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def register(stack: Stack, workspace: str, receiver: Receiver) -> None:
    engine = get_engine(warehouse_url())
    upsert_workspace(engine, workspace, workspace)
    offered = stack.sandbox.connections()["hubspot"]
    upsert_connection(engine, workspace, "hubspot", offered["credentials"], offered["config"])
    assert set_webhook(engine, workspace, receiver.url, SECRET)
    stack.instance.add_dynamic_partitions("workspace", [workspace])


def launch_and_cut_after_first_commit(stack: Stack, proxy: TcpProxy, workspace: str) -> str:
    stack.sandbox.reset(sizes=SIZES)
    stack.sandbox.faults("hubspot", latency_ms=LATENCY_MS)
    run_id = stack.launch("sync_hubspot", workspace)
    wait_until(lambda: rows("SELECT 1 FROM deals WHERE workspace_id = :w", w=workspace), 120, "a first commit")
    proxy.cut()
    return run_id


def step_retries(stack: Stack, run_id: str) -> int:
    events = stack.instance.all_logs(run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    return len(events)


def counts(workspace: str) -> dict[str, int]:
    return {
        table: rows(f"SELECT count(*), count(DISTINCT source_id) FROM {table} WHERE workspace_id = :w", w=workspace)[0]
        for table in EXPECTED
    }


def test_a_sync_survives_a_one_minute_warehouse_outage_without_duplicates(stack, proxy, receiver, warehouse):
    workspace = "outage-60s"
    register(stack, workspace, receiver)
    run_id = launch_and_cut_after_first_commit(stack, proxy, workspace)
    time.sleep(OUTAGE_S)
    proxy.restore()

    run = stack.wait_for_run(run_id, timeout_s=300)
    assert run.status == DagsterRunStatus.SUCCESS
    assert 1 <= step_retries(stack, run_id) <= len(WAREHOUSE_RETRY_WAITS_S)
    assert counts(workspace) == {table: (n, n) for table, n in EXPECTED.items()}
    log = rows("SELECT status, error FROM sync_log WHERE run_id = :r ORDER BY id", r=run_id)
    # The attempts cut off are closed by the retried step (or, after a lease, by the reaper); the last completes.
    assert log[-1] == ("completed", None)
    assert {status for status, _ in log[:-1]} == {"failed"}
    for _, error in log[:-1]:
        assert error == "warehouse connection lost; the step was retried" or error.startswith("Sync worker lost: ")
    (completed,) = receiver.wait_for("sync.completed", timeout_s=60)
    assert completed.envelope["data"]["runId"] == run_id


def test_an_outage_past_the_retries_fails_the_sync_with_the_cause_recorded_once_the_warehouse_returns(
    stack, proxy, receiver, warehouse
):
    workspace = "outage-long"
    register(stack, workspace, receiver)
    run_id = launch_and_cut_after_first_commit(stack, proxy, workspace)
    try:
        # The warehouse stays away until Dagster has failed the run: longer than the step's 75 s of retries.
        run = stack.wait_for_run(run_id, timeout_s=400)
    finally:
        proxy.restore()
    assert run.status == DagsterRunStatus.FAILURE
    assert step_retries(stack, run_id) == len(WAREHOUSE_RETRY_WAITS_S)
    cause = "warehouse unreachable: connection lost (OperationalError) on 5 attempts over 75s of retries"

    # Whatever could not be written during the outage is settled once the warehouse is back: the last
    # attempt's row by the run-failure sensor or, if its tick came too early, by the lease reaper.
    closed = wait_until(
        lambda: rows(
            "SELECT status, error FROM sync_log WHERE run_id = :r AND status <> 'running' ORDER BY id DESC LIMIT 1",
            r=run_id,
        ),
        90,
        "the last attempt's sync_log row closed",
    )
    assert closed == [("failed", cause)]
    (failed,) = receiver.wait_for("sync.failed", timeout_s=90)
    data = failed.envelope["data"]
    assert (data["runId"], data["connector"], data["error"], data["errorType"]) == (
        run_id,
        "hubspot",
        cause,
        "WarehouseError",
    )
    # Pages committed before the cut stay, once each; the next sync picks up from there.
    assert all(total == distinct for total, distinct in counts(workspace).values())
