"""Webhooks through the real dagster-daemon: a run launched over GraphQL ends, the run-status sensor
queues sync.completed, and the receiver gets it, signed (issue 7)."""

from __future__ import annotations

import time

from dagster import DagsterRunStatus

from resources.control_plane import upsert_connection, upsert_workspace
from resources.db import get_engine
from resources.settings import warehouse_url
from resources.webhooks.config import set_webhook
from tests.receiver import Receiver
from tests.support import rows
from tests.test_webhooks import SECRET, assert_signed

WS = "hooked-e2e"
SIZES = {"hubspot": {"deals": 120, "contacts": 150, "companies": 60, "tasks": 80}}


def test_a_real_run_ends_and_the_receiver_gets_one_signed_sync_completed(e2e):
    stack = e2e
    stack.sandbox.reset(sizes=SIZES)
    receiver = Receiver().start()
    try:
        engine = get_engine(warehouse_url())
        upsert_workspace(engine, WS, WS)
        offered = stack.sandbox.connections()["hubspot"]
        upsert_connection(engine, WS, "hubspot", offered["credentials"], offered["config"])
        assert set_webhook(engine, WS, receiver.url, SECRET)
        stack.instance.add_dynamic_partitions("workspace", [WS])

        run_id = stack.launch("sync_hubspot", WS)
        assert stack.wait_for_run(run_id).status == DagsterRunStatus.SUCCESS
        ended = stack.run_record(run_id).end_time
        (completed,) = receiver.wait_for("sync.completed", timeout_s=30)
        assert completed.at - ended < 15
        data = completed.envelope["data"]
        assert (data["jobId"], data["runId"], data["errors"]) == (run_id, run_id, [])
        assert [(r["entity"], r["recordsSynced"], r["mode"]) for r in data["results"]] == [
            ("deals", 120, "full"),
            ("contacts", 150, "full"),
            ("accounts", 60, "full"),
            ("tasks", 80, "full"),
        ]
        progress = receiver.events("sync.progress")
        assert progress and {r.envelope["data"]["jobId"] for r in progress} == {run_id}
        assert_signed(receiver.events())
        time.sleep(6)  # another sensor tick: still exactly one completed event
        assert len(receiver.events("sync.completed")) == 1
        assert rows(
            "SELECT status, attempts FROM webhook_deliveries WHERE workspace_id = :w AND event = 'sync.completed'",
            w=WS,
        ) == [("delivered", 1)]
    finally:
        receiver.stop()
