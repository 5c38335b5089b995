"""Webhooks end to end: a real sync against the sandbox, the run-status sensors evaluated on its run, and
delivery over real HTTP to a local receiver (docs/webhooks.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterRunStatus, build_run_status_sensor_context

from definitions import connector_assets, defs
from resources.notifier import NotifierResource
from resources.warehouse import WarehouseResource
from resources.webhooks.config import clear_webhook, set_webhook
from resources.webhooks.delivery import TEST_EVENT_DATA
from resources.webhooks.destination import InvalidWebhookUrl, validate_webhook_url
from resources.webhooks.dispatcher import dispatcher
from resources.webhooks.outbox import RetryPolicy
from sensors.run_status import sync_canceled_sensor, sync_completed_sensor, sync_failed_sensor
from sync_assets.state import watermark_text
from tests.conftest import register
from tests.receiver import Receiver
from tests.support import rows, run_sync, wait_until

HUBSPOT = next(a for a in connector_assets if AssetKey(["hubspot", "deals"]) in a.keys)
WS = "hooked"
SECRET = "test-secret-key"
SIZES = {"hubspot": {"deals": 120, "contacts": 150, "companies": 60, "tasks": 80}}
REVOKED_CAUSE = (
    "[HubSpot] OAuth refresh refused: HTTP 400 VALIDATION_ERROR on POST /oauth/v1/token: refresh token was revoked"
)


# The signature verifier receivers are given (docs/webhooks.md), verbatim.
def verify_webhook(payload_body, signature_header, secret):
    expected = "sha256=" + hmac.new(secret.encode(), payload_body.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature_header)


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def allow_private(monkeypatch):
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.delenv("WEBHOOK_ALLOWED_HOSTS", raising=False)


@pytest.fixture
def hooked(warehouse, instance, sandbox, receiver, allow_private):
    """A HubSpot workspace whose webhook points at the local receiver."""
    sandbox.reset(sizes=SIZES)
    register(warehouse, instance, sandbox, WS, ["hubspot"])
    assert set_webhook(warehouse, WS, receiver.url, SECRET)
    dispatcher.forget_cooldowns()
    yield warehouse
    dispatcher.wait_idle(15)


def outbox() -> list[tuple]:
    return rows(
        "SELECT event, status, attempts, last_status_code, last_error FROM webhook_deliveries ORDER BY created_at"
    )


def evaluate_on(sensor, instance, run_id: str, event, notifier, failure: bool = False):
    """Evaluate a run-status sensor on the run's stored state and the given status event."""
    context = build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        dagster_event=event,
        partition_key=WS,
        resources={"notifier": notifier, "warehouse": WarehouseResource()},
    )
    return sensor(context.for_run_failure() if failure else context)


def evaluate(sensor, instance, result, notifier, failure: bool = False):
    event = result.get_run_failure_event() if failure else result.get_run_success_event()
    return evaluate_on(sensor, instance, result.run_id, event, notifier, failure)


SINK_SECONDS: list[float] = []


class TimedNotifier(NotifierResource):
    """Records how long each progress hand-over blocks the sync loop."""

    def progress_sink(self, workspace_id: str, job_id: str):
        sink = super().progress_sink(workspace_id, job_id)

        def timed(*args) -> None:
            started = time.monotonic()
            sink(*args)
            SINK_SECONDS.append(time.monotonic() - started)

        return timed if sink else None


def final_progress(received) -> set[tuple[str, int]]:
    return {(r.envelope["data"]["entity"], r.envelope["data"]["progress"]["current"]) for r in received}


def assert_signed(received) -> None:
    """Every delivered body passes the seed's verifier; the id and timestamp headers match the body."""
    for r in received:
        assert verify_webhook(r.body, r.headers["X-Webhook-Signature"], SECRET)
        envelope = r.envelope
        assert list(envelope) == ["event", "id", "workspaceId", "timestamp", "data"]
        assert r.headers["X-Webhook-Id"] == envelope["id"]
        signed_at = datetime.fromisoformat(envelope["timestamp"].replace("Z", "+00:00"))
        assert r.headers["X-Webhook-Timestamp"] == str(int(signed_at.timestamp()))
        assert abs(signed_at.timestamp() - r.at) < 5
        assert r.path == "/hooks/sales-sync?token=receiver-token"


def test_sync_sends_progress_then_exactly_one_signed_completed(hooked, instance, receiver):
    notifier = NotifierResource()
    result = run_sync(instance, HUBSPOT, WS, notifier=notifier)
    assert result.success
    run_id = result.run_id
    assert dispatcher.wait_idle(15)
    progress = receiver.events("sync.progress")
    assert len(progress) >= 1
    assert {(d["jobType"], d["jobId"], d["connector"]) for d in (r.envelope["data"] for r in progress)} == {
        ("sync", run_id, "hubspot")
    }
    # The loop always reports each entity's final count.
    assert {("deals", 120), ("contacts", 150), ("accounts", 60), ("tasks", 80)} <= final_progress(progress)
    assert progress[-1].envelope["data"]["progress"] == {
        "current": 80,
        "total": 80,  # the search names its total
        "message": "HubSpot tasks: 80/80 records read",
    }

    # Evaluated twice (a replayed tick): still one outbox row, one delivery.
    assert evaluate(sync_completed_sensor, instance, result, notifier) is None
    assert evaluate(sync_completed_sensor, instance, result, notifier) is None
    assert rows("SELECT count(*) FROM webhook_deliveries WHERE event = 'sync.completed'") == [(1,)]
    receiver.wait_for("sync.completed")
    assert dispatcher.wait_idle(15)
    (completed,) = receiver.events("sync.completed")
    data = completed.envelope["data"]
    watermarks = {
        e: watermark_text(
            instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(["hubspot", e]), asset_partitions=[WS]), limit=1
            )
            .records[0]
            .asset_materialization.metadata
        )
        for e in ("deals", "contacts", "accounts", "tasks")
    }
    assert data["results"] == [
        {
            "connector": "hubspot",
            "entity": e,
            "recordsSynced": n,
            "recordsDeleted": 0,
            "recordsFailed": 0,
            "mode": "full",
            "watermark": watermarks[e],
        }
        for e, n in (("deals", 120), ("contacts", 150), ("accounts", 60), ("tasks", 80))
    ]
    assert (data["jobId"], data["syncId"], data["runId"], data["errors"]) == (run_id, run_id, run_id, [])
    assert 0 < data["durationMs"] < 60_000
    assert completed.envelope["workspaceId"] == WS
    (row_id,) = rows("SELECT id FROM webhook_deliveries WHERE event = 'sync.completed'")[0]
    assert completed.envelope["id"] == row_id

    assert_signed(receiver.events())
    tampered = completed.body.replace('"recordsSynced":120', '"recordsSynced":121')
    assert tampered != completed.body
    assert not verify_webhook(tampered, completed.headers["X-Webhook-Signature"], SECRET)
    assert not verify_webhook(completed.body, completed.headers["X-Webhook-Signature"], "another-secret")
    statuses = set(rows("SELECT status, attempts, last_status_code, last_error FROM webhook_deliveries"))
    assert statuses == {("delivered", 1, 200, None)}
    assert len(receiver.events()) == len(progress) + 1


def test_test_event_reproduces_the_seed_payload_and_reports_the_answer(hooked, receiver):
    notifier = NotifierResource()
    assert notifier.send_test_event(WS) == {"delivered": True, "statusCode": 200, "error": None}
    (received,) = receiver.events()
    envelope = received.envelope
    assert (envelope["event"], envelope["workspaceId"], envelope["data"]) == ("sync.progress", WS, TEST_EVENT_DATA)
    assert envelope["data"] == {
        "jobType": "test",
        "progress": {"current": 50, "total": 100, "message": "Test webhook notification"},
    }
    assert_signed([received])

    receiver.status = 500
    assert notifier.send_test_event(WS) == {
        "delivered": False,
        "statusCode": 500,
        "error": "receiver answered HTTP 500",
    }
    # A test event is one attempt, never retried later.
    assert outbox() == [
        ("sync.progress", "delivered", 1, 200, None),
        ("sync.progress", "failed", 1, 500, "receiver answered HTTP 500"),
    ]
    assert clear_webhook(hooked, WS)
    assert notifier.send_test_event(WS) == {"delivered": False, "statusCode": None, "error": "no webhook configured"}


def test_revoked_credentials_send_sync_failed_with_the_real_cause(hooked, instance, sandbox, receiver):
    sandbox.faults("hubspot", revoke=True)
    notifier = NotifierResource()
    result = run_sync(instance, HUBSPOT, WS, notifier=notifier)
    assert not result.success
    assert REVOKED_CAUSE not in result.get_run_failure_event().message  # Dagster's line is generic
    assert evaluate(sync_failed_sensor, instance, result, notifier, failure=True) is None
    assert evaluate(sync_failed_sensor, instance, result, notifier, failure=True) is None
    (failed,) = receiver.wait_for("sync.failed")
    data = failed.envelope["data"]
    duration = data.pop("durationMs")
    assert 0 < duration < 60_000
    assert data == {
        "jobId": result.run_id,
        "syncId": result.run_id,
        "runId": result.run_id,
        "results": [],
        "errors": [],
        "connector": "hubspot",
        "failureReason": "error",
        "error": REVOKED_CAUSE,
        "errorType": "VendorError",
    }
    assert_signed([failed])
    assert rows("SELECT count(*) FROM webhook_deliveries WHERE event = 'sync.failed'") == [(1,)]


def test_a_failure_that_will_be_retried_sends_nothing_until_the_final_outcome(hooked, instance, sandbox, receiver):
    sandbox.faults("hubspot", revoke=True)
    notifier = NotifierResource()
    first = run_sync(instance, HUBSPOT, WS, notifier=notifier)
    assert not first.success
    instance.add_run_tags(first.run_id, {"dagster/will_retry": "true"})
    assert evaluate(sync_failed_sensor, instance, first, notifier, failure=True) is None
    assert rows("SELECT count(*) FROM webhook_deliveries WHERE event = 'sync.failed'") == [(0,)]

    retry = run_sync(
        instance,
        HUBSPOT,
        WS,
        notifier=notifier,
        tags={"dagster/root_run_id": first.run_id, "dagster/parent_run_id": first.run_id},
    )
    assert not retry.success
    assert evaluate(sync_failed_sensor, instance, retry, notifier, failure=True) is None
    (failed,) = receiver.wait_for("sync.failed")
    data = failed.envelope["data"]
    assert (data["jobId"], data["runId"], data["error"]) == (first.run_id, retry.run_id, REVOKED_CAUSE)
    assert rows("SELECT count(*) FROM webhook_deliveries WHERE event = 'sync.failed'") == [(1,)]


def test_a_canceled_run_closes_its_open_sync_and_sends_sync_canceled(hooked, instance, receiver):
    notifier = NotifierResource()
    run = instance.create_run_for_job(defs.resolve_job_def("sync_hubspot"), tags={"dagster/partition": WS})
    # The step was stopped before it could close its row.
    WarehouseResource().start_sync_log(WS, "hubspot", run.run_id, None, "manual")
    event = instance.report_run_canceled(run)
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED
    assert evaluate_on(sync_canceled_sensor, instance, run.run_id, event, notifier) is None
    assert rows("SELECT run_id, status, error, completed_at IS NOT NULL FROM sync_log") == [
        (run.run_id, "failed", f"Job {run.run_id} was canceled", True)
    ]
    (canceled,) = receiver.wait_for("sync.canceled")
    assert canceled.envelope["data"] == {
        "jobId": run.run_id,
        "syncId": run.run_id,
        "runId": run.run_id,
        "durationMs": None,
        "results": [],
        "errors": [],
    }


def test_a_run_whose_process_died_closes_its_sync_and_sends_the_crash(hooked, instance, receiver):
    notifier = NotifierResource()
    run = instance.create_run_for_job(defs.resolve_job_def("sync_hubspot"), tags={"dagster/partition": WS})
    WarehouseResource().start_sync_log(WS, "hubspot", run.run_id, None, "manual")
    # What the code server records when it finds the run's process gone.
    crash = f"Run execution process for {run.run_id} was terminated by signal 9 (SIGKILL)."
    instance.report_engine_event(f"[DagsterApiServer] {crash}", run)
    event = instance.report_run_failed(run)
    assert evaluate_on(sync_failed_sensor, instance, run.run_id, event, notifier, failure=True) is None
    assert rows("SELECT status, error FROM sync_log") == [("failed", f"Sync worker lost: {crash}")]
    (failed,) = receiver.wait_for("sync.failed")
    data = failed.envelope["data"]
    assert (data["failureReason"], data["error"], data["errorType"]) == ("worker_lost", crash, None)


def test_a_slow_receiver_times_out_is_logged_and_retried_and_the_sync_is_on_time(hooked, instance, receiver, caplog):
    caplog.set_level(logging.INFO, logger="sales_sync.webhooks")
    receiver.delay_s = 6
    notifier = TimedNotifier(retry_base_s=1)
    SINK_SECONDS.clear()
    result = run_sync(instance, HUBSPOT, WS, notifier=notifier)
    assert result.success
    # The time the sync spent handing progress over, per event: a blocking delivery would cost the 5 s
    # timeout (wall-clock totals are not compared: other sessions load the machine).
    assert len(SINK_SECONDS) >= 4
    assert max(SINK_SECONDS) < 2.0
    assert dispatcher.wait_idle(15)
    # The first attempts (one per dispatcher worker) time out; the workspace then cools down and the
    # rest wait in the outbox.
    attempted = rows("SELECT id, status, last_status_code, last_error FROM webhook_deliveries WHERE attempts = 1")
    timed_out = [i for i, *_ in attempted]
    assert 1 <= len(timed_out) <= 2
    assert {tuple(rest) for _, *rest in attempted} == {("pending", None, "timed out after 5 s")}
    for event_id in timed_out:
        assert (
            f"[Webhooks] sync.progress {event_id} to http://127.0.0.1:{receiver.port} failed on attempt 1: "
            "timed out after 5 s; retrying at " in caplog.text
        )
    assert evaluate(sync_completed_sensor, instance, result, notifier) is None

    receiver.delay_s = 0
    reports = []

    def all_delivered() -> bool:
        # The timed-out ones are due retry_base_s after their attempt; on a loaded machine a pass may
        # come before one of them is due, so pass again until the outbox is empty.
        reports.append(notifier.deliver_due())
        return rows("SELECT DISTINCT status FROM webhook_deliveries") == [("delivered",)]

    wait_until(all_delivered, timeout_s=15, what="every delivery delivered")
    # A dispatcher attempt may still be under way (e.g. of sync.completed, once the cool-down ran out on a
    # slow machine): let it finish before the outbox and the receiver are read.
    assert dispatcher.wait_idle(15)
    assert all((r.retrying, r.failed) == (0, 0) for r in reports)
    # Every retried delivery was retried once, after one failed attempt: those seen timing out above, and
    # any whose first attempt a dispatcher thread made later on a loaded machine. That each first attempt
    # reached the receiver (and was not a second send by mistake) is checked on the receiver's side below.
    retried = [i for (i,) in rows("SELECT id FROM webhook_deliveries WHERE attempts > 1")]
    assert set(timed_out) <= set(retried)
    assert rows("SELECT DISTINCT attempts FROM webhook_deliveries WHERE attempts > 1") == [(2,)]
    total = len(rows("SELECT id FROM webhook_deliveries")) + len(retried)
    deadline = time.monotonic() + 10  # the late answers land once the receiver's 6 s sleeps end
    while len(receiver.events()) < total and time.monotonic() < deadline:
        time.sleep(0.1)
    ids = [r.headers["X-Webhook-Id"] for r in receiver.events()]
    # A timed-out event arrived twice under one id (late, then on retry); everything else once.
    assert sorted(ids) == sorted([*(i for (i,) in rows("SELECT id FROM webhook_deliveries")), *retried])
    assert len(receiver.events("sync.completed")) == 1
    assert_signed(receiver.events())
    assert SECRET not in caplog.text and "receiver-token" not in caplog.text


def test_500_then_refused_then_recovery_delivers_once_under_the_same_id(hooked, receiver, caplog):
    caplog.set_level(logging.INFO, logger="sales_sync.webhooks")
    notifier = NotifierResource(deliver_immediately=False, retry_base_s=0.2)
    receiver.status = 500
    event_id = notifier.notify(WS, "sync.completed", {"jobId": "job-1"}, dedupe_key="job-1:SUCCESS")
    assert notifier.notify(WS, "sync.completed", {"jobId": "job-1"}, dedupe_key="job-1:SUCCESS") is None
    (attempt,) = notifier.deliver_due().attempts
    assert (attempt.event_id, attempt.delivered, attempt.status_code) == (event_id, False, 500)
    assert attempt.will_retry
    assert outbox() == [("sync.completed", "pending", 1, 500, "receiver answered HTTP 500")]

    receiver.stop()
    time.sleep(0.25)
    (attempt,) = notifier.deliver_due().attempts
    assert (attempt.delivered, attempt.status_code, attempt.will_retry) == (False, None, True)
    assert attempt.error.startswith("connection failed")
    assert notifier.deliver_due().attempts == []  # backing off: 0.4 s after the second failure
    assert (
        f"[Webhooks] sync.completed {event_id} to http://127.0.0.1:{receiver.port} failed on attempt 2: "
        "connection failed" in caplog.text
    )

    receiver.status = 200
    receiver.start()
    time.sleep(0.45)
    (attempt,) = notifier.deliver_due().attempts
    assert (attempt.event_id, attempt.delivered, attempt.status_code) == (event_id, True, 200)
    assert notifier.deliver_due().attempts == []
    assert outbox() == [("sync.completed", "delivered", 3, 200, None)]
    received = receiver.events()
    assert [(r.status, r.headers["X-Webhook-Id"]) for r in received] == [(500, event_id), (200, event_id)]
    assert_signed(received)
    first, second = (r.envelope for r in received)
    assert {**first, "timestamp": None} == {**second, "timestamp": None}  # only re-stamped


def test_delivery_gives_up_after_the_retry_horizon(hooked, receiver, caplog):
    caplog.set_level(logging.INFO, logger="sales_sync.webhooks")
    notifier = NotifierResource(deliver_immediately=False, retry_base_s=0.1, retry_horizon_s=0.5)
    receiver.stop()
    event_id = notifier.notify(WS, "sync.completed", {"jobId": "job-2"})
    deadline = time.monotonic() + 5
    while rows("SELECT status FROM webhook_deliveries") == [("pending",)] and time.monotonic() < deadline:
        notifier.deliver_due()
        time.sleep(0.05)
    ((status, attempts),) = rows("SELECT status, attempts FROM webhook_deliveries")
    assert status == "failed" and 2 <= attempts <= 4
    assert (
        f"sync.completed {event_id} to http://127.0.0.1:{receiver.port} failed on attempt {attempts}: "
        "connection failed" in caplog.text
    )
    assert caplog.text.rstrip().endswith("giving up")


def test_retry_schedule_doubles_to_a_cap_and_spans_about_a_day():
    policy = RetryPolicy()
    created = datetime(2026, 1, 1, tzinfo=UTC)
    now, attempts, delays = created, 0, []
    while True:
        attempts += 1
        retry_at = policy.next_attempt(created, attempts, now)
        if retry_at is None:
            break
        delays.append((retry_at - now).total_seconds())
        now = retry_at
    assert delays[:4] == [10, 20, 40, 80]
    assert max(delays) == 4 * 3600
    assert attempts == 16
    assert timedelta(hours=20) < now - created <= timedelta(hours=24)


def test_no_webhook_configured_sends_nothing(warehouse, instance, sandbox, receiver, allow_private):
    sandbox.reset(sizes=SIZES)
    register(warehouse, instance, sandbox, WS, ["hubspot"])
    notifier = NotifierResource()
    assert notifier.progress_sink(WS, "job") is None
    result = run_sync(instance, HUBSPOT, WS, notifier=notifier)
    assert result.success
    assert evaluate(sync_completed_sensor, instance, result, notifier) is None
    assert notifier.notify(WS, "sync.completed", {}) is None
    assert notifier.deliver_due().attempts == []
    assert outbox() == []
    assert receiver.events() == []


def test_private_address_is_refused_without_the_allowlist(hooked, receiver, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="sales_sync.webhooks")
    monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE")
    notifier = NotifierResource(deliver_immediately=False)
    refused_id = notifier.notify(WS, "sync.completed", {"jobId": "job-3"})
    (attempt,) = notifier.deliver_due().attempts
    reason = (
        "127.0.0.1 resolves to 127.0.0.1, a loopback address; set WEBHOOK_ALLOW_PRIVATE=1 or list the host in "
        "WEBHOOK_ALLOWED_HOSTS to allow it"
    )
    assert (attempt.delivered, attempt.error, attempt.will_retry) == (False, f"refused: {reason}", False)
    assert outbox() == [("sync.completed", "failed", 1, None, f"refused: {reason}")]
    assert f"[Webhooks] refused to deliver sync.completed {refused_id} for workspace {WS}: {reason}" in caplog.text
    assert receiver.events() == []

    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", "10.0.0.0/8, 127.0.0.1/32")
    allowed_id = notifier.notify(WS, "sync.completed", {"jobId": "job-4"})
    (attempt,) = notifier.deliver_due().attempts
    assert (attempt.event_id, attempt.delivered) == (allowed_id, True)
    assert [r.headers["X-Webhook-Id"] for r in receiver.events()] == [allowed_id]
    assert SECRET not in caplog.text and "receiver-token" not in caplog.text


def test_webhook_urls_must_be_http_and_secrets_are_encrypted(hooked):
    for bad in ("not-a-url", "ftp://example.com/hook", "javascript:alert(1)", "http://", "https://host:99999/x"):
        with pytest.raises(InvalidWebhookUrl):
            validate_webhook_url(bad)
        with pytest.raises(InvalidWebhookUrl):
            set_webhook(hooked, WS, bad, SECRET)
    assert validate_webhook_url(" https://hooks.example.com/x?y=1 ") == "https://hooks.example.com/x?y=1"
    ((stored,),) = rows("SELECT webhook_secret FROM workspaces WHERE id = :w", w=WS)
    assert stored and SECRET not in stored
    assert not set_webhook(hooked, "no-such-workspace", "https://hooks.example.com/x", SECRET)
    assert json.loads(json.dumps(TEST_EVENT_DATA)) == TEST_EVENT_DATA
