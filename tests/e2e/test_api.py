"""The REST API on a real stack (dagster-webserver + dagster-daemon on Postgres, the sandbox, uvicorn):
status codes, tenant isolation, stale and concurrent triggers, the 50-request race, and secrets."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterRunStatus

from api.syncs import STALE_MESSAGE
from tests.e2e.api_client import ADMIN, Api, sql
from tests.support import wait_until

SMALL = {"hubspot": {"deals": 5, "contacts": 5, "companies": 5, "tasks": 5}}
RUN_TIMEOUT_S = 300
LOGGED_SERVICES = ("api", "dagster-webserver", "dagster-daemon")


@pytest.fixture(scope="module")
def seen() -> list[str]:
    """Every response body of this module, for the secrets check at its end."""
    return []


@pytest.fixture
def api(e2e, seen) -> Api:
    e2e.sandbox.reset(sizes=SMALL)
    return Api(e2e.api_url, ADMIN, seen)


def service_output(stack, name: str) -> str:
    """Everything a service process wrote, read through its stdout descriptor (its log file, which a
    shared machine's /tmp cleanup may already have unlinked)."""
    [service] = [s for s in stack.services if s.name == name]
    return Path(f"/proc/{service.process.pid}/fd/1").read_text(errors="replace")


def error(response: requests.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"]


def operations(api: Api) -> list[tuple[str, str]]:
    spec = api.call("GET", "/openapi.json", token=None).json()
    return [(m.upper(), p) for p, item in spec["paths"].items() for m in item if p.startswith("/api/")]


def concrete(path: str, workspace: str, job_id: str) -> str:
    return (
        path.replace("{workspace_id}", workspace)
        .replace("{connector}", "hubspot")
        .replace("{job_id}", job_id)
        .replace("{delivery_id}", "evt-1")
        .replace("{token_id}", "1")
    )


VALID_BODIES = {
    ("POST", "/api/workspaces"): {"id": "made-by-tenant", "name": "x"},
    ("PUT", "/api/workspaces/{workspace_id}/connections/{connector}"): {"credentials": {"access_token": "t"}},
    ("PUT", "/api/workspaces/{workspace_id}/webhook"): {"webhookUrl": "http://example.com/h", "webhookSecret": "s"},
    ("POST", "/api/workspaces/{workspace_id}/tokens"): {"name": "stolen"},
}


def test_health_openapi_and_docs_need_no_token(api):
    assert api.call("GET", "/healthz", token=None).json() == {"status": "ok"}
    spec = api.call("GET", "/openapi.json", token=None).json()
    assert "/api/workspaces/{workspace_id}/sync" in spec["paths"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "swagger-ui" in api.call("GET", "/docs", token=None).text


def test_every_route_answers_401_without_a_valid_token(api):
    api.create_workspace("auth-ws")
    ops = operations(api)
    assert len(ops) == 23
    for method, path in ops:
        url = concrete(path, "auth-ws", str(uuid.uuid4()))
        body = VALID_BODIES.get((method, path))
        for token in (None, "wrong", "ssw_" + "x" * 43):
            response = api.call(method, url, token=token, json=body)
            assert error(response) == (401, "unauthorized"), (method, path, token)
            assert response.headers["WWW-Authenticate"] == "Bearer"
        basic = requests.request(method, api.url + url, headers={"Authorization": "Basic YTpi"}, json=body, timeout=30)
        assert error(basic) == (401, "unauthorized")


def test_a_workspace_token_sees_nothing_of_another_workspace(api, e2e):
    offered = e2e.sandbox.connections()
    for ws in ("tenant-a", "tenant-b"):
        api.create_workspace(ws)
        assert api.connect(ws, "hubspot", offered).status_code == 201
    assert (
        api.call(
            "PUT",
            "/api/workspaces/tenant-b/webhook",
            json=VALID_BODIES[("PUT", "/api/workspaces/{workspace_id}/webhook")],
        ).status_code
        == 200
    )
    tenant_a = api.as_token(api.token_for("tenant-a"))
    runs_before = e2e.instance.get_runs_count()
    for method, path in operations(api):
        body = VALID_BODIES.get((method, path))
        if "{workspace_id}" not in path:
            assert error(tenant_a.call(method, path, json=body)) == (403, "forbidden")
            continue
        foreign = tenant_a.call(method, concrete(path, "tenant-b", str(uuid.uuid4())), json=body)
        unknown = tenant_a.call(method, concrete(path, "no-such-ws", str(uuid.uuid4())), json=body)
        assert error(foreign) == (404, "not_found"), (method, path, foreign.text)
        assert foreign.json()["error"]["message"] == "workspace 'tenant-b' not found"
        assert error(unknown) == (404, "not_found")
    # Nothing of tenant-b changed, and its own token still works on its own workspace.
    assert [c["connector"] for c in api.call("GET", "/api/workspaces/tenant-b/connections").json()["connections"]] == [
        "hubspot"
    ]
    assert api.call("GET", "/api/workspaces/tenant-b/webhook").json()["webhookUrl"] == "http://example.com/h"
    assert e2e.instance.get_runs_count() == runs_before
    assert sql("SELECT count(*) FROM workspaces WHERE id = 'made-by-tenant'") == [(0,)]
    assert tenant_a.call("GET", "/api/workspaces/tenant-a").status_code == 200
    assert error(tenant_a.call("POST", "/api/workspaces/tenant-a/tokens")) == (403, "forbidden")
    assert error(tenant_a.call("DELETE", "/api/workspaces/tenant-a")) == (403, "forbidden")


def test_management_endpoints(api, e2e):
    created = api.create_workspace("mgmt-ws")
    assert created["id"] == "mgmt-ws" and created["connections"] == [] and created["webhookConfigured"] is False
    assert e2e.instance.has_dynamic_partition("workspace", "mgmt-ws")  # registered at once
    assert error(api.call("POST", "/api/workspaces", json={"id": "mgmt-ws", "name": "again"})) == (
        409,
        "workspace_exists",
    )
    for bad in ({"id": "Bad Id", "name": "x"}, {"id": "ok-id"}, {"id": "ok-id", "name": ""}, {"id": 5, "name": "x"}):
        assert error(api.call("POST", "/api/workspaces", json=bad)) == (400, "invalid_request"), bad
    assert (
        error(api.call("POST", "/api/workspaces", data="{not json", headers={"Content-Type": "application/json"}))[0]
        == 400
    )

    offered = e2e.sandbox.connections()
    assert api.connect("mgmt-ws", "hubspot", offered).status_code == 201
    replaced = api.connect("mgmt-ws", "hubspot", offered, page_size=50)
    assert replaced.status_code == 200
    assert replaced.json()["config"] == {**offered["hubspot"]["config"], "page_size": 50}
    assert "credentials" not in replaced.json() and replaced.json()["hasCredentials"] is True
    stored = sql("SELECT credentials FROM connections WHERE workspace_id = 'mgmt-ws'")[0][0]
    assert json.dumps(offered["hubspot"]["credentials"]) not in stored and stored.startswith("gAAAA")  # Fernet
    assert error(api.call("PUT", "/api/workspaces/mgmt-ws/connections/nosuch", json={"credentials": {"a": 1}})) == (
        400,
        "invalid_request",
    )
    assert error(api.call("PUT", "/api/workspaces/mgmt-ws/connections/hubspot", json={"credentials": {}}))[0] == 400
    nul = {"credentials": {"a": "b"}, "config": {"base_url": "http://x\u0000"}}
    assert error(api.call("PUT", "/api/workspaces/mgmt-ws/connections/hubspot", json=nul)) == (400, "invalid_request")
    assert error(api.call("POST", "/api/workspaces", json={"id": "nul-ws", "name": "a\u0000b"}))[0] == 400
    assert error(api.call("GET", "/api/workspaces/mgmt%00ws")) == (404, "not_found")
    listed = api.call("GET", "/api/workspaces/mgmt-ws/connections").json()
    assert [c["connector"] for c in listed["connections"]] == ["hubspot"]
    assert api.call("GET", "/api/workspaces/mgmt-ws").json()["connections"] == ["hubspot"]

    assert api.call("DELETE", "/api/workspaces/mgmt-ws/connections/hubspot").status_code == 204
    assert error(api.call("DELETE", "/api/workspaces/mgmt-ws/connections/hubspot")) == (404, "not_found")
    assert api.call("GET", "/api/workspaces/mgmt-ws/connections").json()["connections"] == []

    token = api.call("POST", "/api/workspaces/mgmt-ws/tokens", json={"name": "ci"}).json()
    assert token["token"].startswith("ssw_") and token["name"] == "ci"
    assert sql("SELECT token_hash FROM api_tokens") == [(hashlib.sha256(token["token"].encode()).hexdigest(),)]
    assert api.as_token(token["token"]).call("GET", "/api/workspaces/mgmt-ws").status_code == 200

    assert api.call("DELETE", "/api/workspaces/mgmt-ws").status_code == 204
    assert error(api.call("GET", "/api/workspaces/mgmt-ws")) == (404, "not_found")
    assert error(api.as_token(token["token"]).call("GET", "/api/workspaces/mgmt-ws")) == (401, "unauthorized")
    assert not e2e.instance.has_dynamic_partition("workspace", "mgmt-ws")


def test_a_stale_running_row_is_failed_and_the_new_sync_proceeds(api, e2e):
    offered = e2e.sandbox.connections()
    for ws in ("qw3-stale", "qw3-recent"):
        api.create_workspace(ws)
        api.connect(ws, "hubspot", offered)
    # The seed's SQL, literally.
    sql(
        "INSERT INTO sync_log (workspace_id, connector_type, sync_type, status, started_at) "
        "VALUES ('qw3-stale', 'salesforce', 'manual', 'running', NOW() - INTERVAL '2 hours')"
    )
    sql(
        "INSERT INTO sync_log (workspace_id, connector_type, sync_type, status, started_at) "
        "VALUES ('qw3-stale', 'hubspot', 'manual', 'running', NOW() - INTERVAL '3 hours')"
    )
    response = api.call("POST", "/api/workspaces/qw3-stale/sync", json={"fullRefresh": True})
    assert response.status_code == 202, response.text
    stale = sql(
        "SELECT status, error, completed_at IS NOT NULL FROM sync_log "
        "WHERE workspace_id = 'qw3-stale' AND run_id IS NULL ORDER BY started_at DESC"
    )
    assert stale == [("failed", "Sync timed out (exceeded 1 hour)", True)] * 2
    assert STALE_MESSAGE == "Sync timed out (exceeded 1 hour)"
    job_id = response.json()["jobId"]
    run = e2e.launched(job_id)
    assert run.tags["sales-sync/full_refresh"] == "true"
    assert run.run_config == {"ops": {"hubspot_sync": {"config": {"full_refresh": True}}}}
    assert e2e.wait_for_run(job_id, timeout_s=RUN_TIMEOUT_S).status == DagsterRunStatus.SUCCESS
    newest = sql(
        "SELECT connector_type, status, run_id FROM sync_log WHERE workspace_id = 'qw3-stale' "
        "ORDER BY started_at DESC LIMIT 1"
    )
    assert newest == [("hubspot", "completed", job_id)]

    sql(
        "INSERT INTO sync_log (workspace_id, connector_type, sync_type, status, started_at) "
        "VALUES ('qw3-recent', 'salesforce', 'manual', 'running', NOW() - INTERVAL '30 minutes')"
    )
    conflict = api.call("POST", "/api/workspaces/qw3-recent/sync")
    assert error(conflict) == (409, "sync_in_progress")
    assert conflict.json()["error"]["message"] == "a salesforce sync of workspace 'qw3-recent' is still running"
    assert sql("SELECT status, error FROM sync_log WHERE workspace_id = 'qw3-recent'") == [("running", None)]


def test_fifty_parallel_triggers_give_exactly_one_sync(api, e2e):
    api.create_workspace("race-ws")
    api.connect("race-ws", "hubspot", e2e.sandbox.connections())
    runs_before = e2e.instance.get_runs_count()
    gate = threading.Barrier(50)

    def trigger(_: int) -> requests.Response:
        gate.wait()
        return api.call("POST", "/api/workspaces/race-ws/sync")

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(trigger, range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] + [409] * 49
    [accepted] = [r.json() for r in responses if r.status_code == 202]
    e2e.launched(accepted["jobId"])
    assert e2e.instance.get_runs_count() == runs_before + 1
    assert all(accepted["jobId"] in r.json()["error"]["message"] for r in responses if r.status_code == 409)
    e2e.wait_for_run(accepted["jobId"], timeout_s=RUN_TIMEOUT_S)


def test_a_sync_accepted_but_never_launched_is_launched_by_the_running_api(api, e2e):
    """What a process that stopped between its 202 and the launch leaves in the outbox (written here
    directly) is launched by the API's launcher under the same job id, and runs to completion."""
    api.create_workspace("orphan-ws")
    api.connect("orphan-ws", "hubspot", e2e.sandbox.connections())
    job_id = str(uuid.uuid4())
    tags = {"sync_type": "manual", "sync_id": "orphan-sync", "dagster/priority": "10"}
    sql(
        "INSERT INTO sync_launches (job_id, workspace_id, sync_id, job_name, tags) "
        "VALUES (:job, 'orphan-ws', 'orphan-sync', 'sync_hubspot', CAST(:tags AS jsonb))",
        job=job_id,
        tags=json.dumps(tags),
    )
    run = e2e.wait_for_run(job_id, timeout_s=RUN_TIMEOUT_S)
    assert (run.status, run.job_name) == (DagsterRunStatus.SUCCESS, "sync_hubspot")
    assert {k: run.tags[k] for k in (*tags, "dagster/partition")} == {**tags, "dagster/partition": "orphan-ws"}
    assert sql("SELECT count(*) FROM sync_launches") == [(0,)]
    job = api.call("GET", f"/api/workspaces/orphan-ws/sync/jobs/{job_id}").json()
    assert (job["status"], job["dagsterStatus"], job["syncId"]) == ("completed", "SUCCESS", "orphan-sync")


def launcher_processes(stack) -> list[int]:
    """The API's launcher: the one child process it spawned (api/launches.py)."""
    [service] = [s for s in stack.services if s.name == "api"]
    found = subprocess.run(
        ["pgrep", "-P", str(service.process.pid), "-f", "spawn_main"], capture_output=True, text=True
    )
    return [int(pid) for pid in found.stdout.split()]


def test_a_dead_launcher_process_is_replaced_by_the_next_trigger(api, e2e):
    [before] = launcher_processes(e2e)
    os.kill(before, signal.SIGKILL)
    api.create_workspace("relaunch-ws")
    api.connect("relaunch-ws", "hubspot", e2e.sandbox.connections())
    response = api.call("POST", "/api/workspaces/relaunch-ws/sync")
    assert response.status_code == 202, response.text
    assert e2e.wait_for_run(response.json()["jobId"], timeout_s=RUN_TIMEOUT_S).status == DagsterRunStatus.SUCCESS
    [after] = launcher_processes(e2e)
    assert after != before


def test_a_salesforce_sync_is_accepted_at_once_and_its_job_completes(api, e2e):
    """A trigger answers 202 and a second one 409, and the 404s of the trigger, then every read endpoint on
    the finished job. Runs after other launches, so the 202 is timed on a warm webserver, as in production."""
    api.create_workspace("qw1-ws")
    offered = e2e.sandbox.connections()
    assert api.connect("qw1-ws", "salesforce", offered).status_code == 201
    assert error(api.call("POST", "/api/workspaces/qw1-ws/connectors/hubspot/sync")) == (404, "not_found")
    assert error(api.call("POST", "/api/workspaces/nope/connectors/salesforce/sync")) == (404, "not_found")
    assert error(api.call("POST", "/api/workspaces/qw1-ws/sync", json={"timeoutMs": "soon"})) == (
        400,
        "invalid_request",
    )
    assert error(api.call("POST", "/api/workspaces/qw1-ws/sync", json={"timeoutMs": 5})) == (400, "invalid_request")

    started = time.monotonic()
    response = api.call("POST", "/api/workspaces/qw1-ws/connectors/salesforce/sync", json={"timeoutMs": 120000})
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    accepted = response.json()
    # The request does not wait for the sync (the old service took 49 s). The seed's 500 ms figure is a
    # performance target, measured side by side in bench/api.py rather than asserted in a timed test.
    assert elapsed < 10, f"202 after {elapsed:.3f}s: the trigger waited for the sync"
    job_id = accepted["jobId"]
    assert accepted == {
        "syncId": accepted["syncId"],
        "jobId": job_id,
        "status": "queued",
        "statusUrl": f"/api/workspaces/qw1-ws/sync/jobs/{job_id}",
    }
    # A second trigger before the first finishes.
    duplicate = api.call("POST", "/api/workspaces/qw1-ws/sync")
    assert error(duplicate) == (409, "sync_in_progress")
    assert job_id in duplicate.json()["error"]["message"]

    run = e2e.launched(job_id)
    assert run.job_name == "sync_salesforce"
    assert run.tags["dagster/partition"] == "qw1-ws"
    assert run.tags["dagster/max_runtime"] == "120"
    assert run.tags["dagster/priority"] == "10" and run.tags["sales-sync/sync_type"] == "manual"
    assert run.tags["sales-sync/sync_id"] == accepted["syncId"]
    assert e2e.wait_for_run(job_id, timeout_s=RUN_TIMEOUT_S).status == DagsterRunStatus.SUCCESS

    job = api.call("GET", accepted["statusUrl"]).json()
    assert job["status"] == "completed" and job["jobId"] == job_id and job["connectors"] == ["salesforce"]
    assert [(r["connector"], r["status"], r["recordsSynced"]) for r in job["results"]] == [
        ("salesforce", "completed", 120 + 150 + 60 + 80)
    ]
    assert job["errors"] == [] and job["error"] is None and job["completedAt"] and job["durationMs"] > 0
    jobs = api.call("GET", "/api/workspaces/qw1-ws/sync/jobs?limit=20").json()["jobs"]
    assert [(j["jobId"], j["status"]) for j in jobs] == [(job_id, "completed")]
    history = api.call("GET", "/api/workspaces/qw1-ws/sync/history?limit=20").json()["history"]
    assert [(h["connector"], h["status"], h["jobId"], h["syncType"]) for h in history] == [
        ("salesforce", "completed", job_id, "manual")
    ]
    status = api.call("GET", "/api/workspaces/qw1-ws/sync/status").json()
    assert status["activeJob"] is None
    [connector] = status["connectors"]
    assert (connector["connector"], connector["lastStatus"], connector["recordsSynced"]) == (
        "salesforce",
        "completed",
        410,
    )
    assert connector["lastSyncAt"] is not None
    for bad in ("limit=0", "limit=101", "limit=abc"):
        assert error(api.call("GET", f"/api/workspaces/qw1-ws/sync/jobs?{bad}")) == (400, "invalid_request")
    assert error(api.call("GET", "/api/workspaces/qw1-ws/sync/jobs/not-a-uuid")) == (404, "not_found")
    assert error(api.call("GET", f"/api/workspaces/qw1-ws/sync/jobs/{uuid.uuid4()}")) == (404, "not_found")


def test_workspace_sync_runs_the_assets_of_its_active_connections(api, e2e):
    """POST /sync launches sync_workspace with the assets of exactly the workspace's connections; two
    workspaces with the same connections get runs of the same job and plan snapshots."""
    offered = e2e.sandbox.connections()
    job_ids = []
    for ws in ("pair-a", "pair-b"):
        api.create_workspace(ws)
        assert api.connect(ws, "hubspot", offered).status_code == 201
        assert api.connect(ws, "gong", offered).status_code == 201
        response = api.call("POST", f"/api/workspaces/{ws}/sync")
        assert response.status_code == 202, response.text
        job_ids.append(response.json()["jobId"])
    runs = [e2e.wait_for_run(job_id, timeout_s=RUN_TIMEOUT_S) for job_id in job_ids]
    assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * 2
    expected = {AssetKey(["hubspot", e]) for e in ("deals", "contacts", "accounts", "tasks")} | {
        AssetKey(["gong", "calls"])
    }
    # The tables those connectors write are recorded in the same run.
    expected |= {AssetKey(["warehouse", t]) for t in ("deals", "contacts", "accounts", "tasks", "calls", "sync_errors")}
    for ws, run in zip(("pair-a", "pair-b"), runs, strict=True):
        assert (run.job_name, run.tags["dagster/partition"], run.asset_selection) == ("sync_workspace", ws, expected)
        materialized = {
            e.asset_materialization.asset_key
            for e in e2e.instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        }
        assert materialized == expected
    assert runs[0].execution_plan_snapshot_id == runs[1].execution_plan_snapshot_id
    assert runs[0].job_snapshot_id == runs[1].job_snapshot_id
    assert sql("SELECT workspace_id, source, count(*) FROM calls GROUP BY 1, 2 ORDER BY 1") == [
        ("pair-a", "gong", 120),
        ("pair-b", "gong", 120),
    ]
    assert sql("SELECT workspace_id, count(*) FROM deals GROUP BY 1 ORDER BY 1") == [("pair-a", 5), ("pair-b", 5)]


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def test_webhook_configuration_test_event_and_deliveries(api):
    api.create_workspace("hook-ws")
    edge2 = api.call("PUT", "/api/workspaces/hook-ws/webhook", json={"webhookUrl": "not-a-url"})
    assert error(edge2) == (400, "invalid_request")
    assert "http:// or https://" in edge2.json()["error"]["message"]
    for url in ("ftp://example.com/h", "http://", "javascript:alert(1)"):
        body = {"webhookUrl": url, "webhookSecret": "s"}
        assert error(api.call("PUT", "/api/workspaces/hook-ws/webhook", json=body)) == (400, "invalid_request"), url

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hooks"
        secret = "whsec-" + uuid.uuid4().hex
        put = api.call("PUT", "/api/workspaces/hook-ws/webhook", json={"webhookUrl": url, "webhookSecret": secret})
        assert put.json() == {"workspaceId": "hook-ws", "configured": True, "webhookUrl": url, "secretSet": True}
        assert api.call("GET", "/api/workspaces/hook-ws/webhook").json() == put.json()
        assert secret not in sql("SELECT webhook_secret FROM workspaces WHERE id = 'hook-ws'")[0][0]

        Receiver.received.clear()
        tested = api.call("POST", "/api/workspaces/hook-ws/webhook/test").json()
        assert tested == {"delivered": True, "statusCode": 200, "error": None}
        [(headers, body)] = Receiver.received
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Webhook-Signature"] == expected
        event = json.loads(body)
        assert (event["event"], event["workspaceId"], event["data"]["jobType"]) == ("sync.progress", "hook-ws", "test")
        assert event["data"]["progress"] == {"current": 50, "total": 100, "message": "Test webhook notification"}
    finally:
        server.shutdown()

    sql(
        "INSERT INTO webhook_deliveries (id, workspace_id, event, payload, status, attempts, last_status_code, "
        "last_error, next_attempt_at) VALUES ('evt-1', 'hook-ws', 'sync.completed', '{}', 'failed', 5, 500, "
        "'HTTP 500', NOW() + INTERVAL '1 day')"
    )
    logged = api.call("GET", "/api/workspaces/hook-ws/webhook/deliveries").json()["deliveries"]
    assert sorted((d["id"], d["event"], d["status"], d["attempts"], d["lastStatusCode"]) for d in logged) == sorted(
        [("evt-1", "sync.completed", "failed", 5, 500), (event["id"], "sync.progress", "delivered", 1, 200)]
    )
    delivered = api.call("GET", "/api/workspaces/hook-ws/webhook/deliveries?status=delivered").json()["deliveries"]
    assert [d["id"] for d in delivered] == [event["id"]]
    redelivered = api.call("POST", "/api/workspaces/hook-ws/webhook/deliveries/evt-1/redeliver")
    assert redelivered.status_code == 202 and redelivered.json()["status"] == "pending"
    assert sql("SELECT status, next_attempt_at <= NOW() FROM webhook_deliveries WHERE id = 'evt-1'") == [
        ("pending", True)
    ]
    assert error(api.call("POST", "/api/workspaces/hook-ws/webhook/deliveries/evt-2/redeliver")) == (404, "not_found")

    assert api.call("DELETE", "/api/workspaces/hook-ws/webhook").status_code == 204
    assert api.call("GET", "/api/workspaces/hook-ws/webhook").json() == {
        "workspaceId": "hook-ws",
        "configured": False,
        "webhookUrl": None,
        "secretSet": False,
    }
    assert api.call("POST", "/api/workspaces/hook-ws/webhook/test").json() == {
        "delivered": False,
        "statusCode": None,
        "error": "no webhook configured",
    }


def test_tokens_are_listed_without_secrets_revoked_and_expire(api):
    api.create_workspace("tok-ws")
    first = api.call("POST", "/api/workspaces/tok-ws/tokens", json={"name": "ci"}).json()
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    second = api.call("POST", "/api/workspaces/tok-ws/tokens", json={"name": "cron", "expiresAt": later}).json()
    assert api.as_token(first["token"]).call("GET", "/api/workspaces/tok-ws").status_code == 200
    listed = api.call("GET", "/api/workspaces/tok-ws/tokens").json()
    assert [set(t) for t in listed["tokens"]] == [
        {"id", "workspaceId", "name", "createdAt", "expiresAt", "lastUsedAt"}
    ] * 2
    assert [(t["id"], t["name"]) for t in listed["tokens"]] == [(first["id"], "ci"), (second["id"], "cron")]
    assert listed["tokens"][0]["lastUsedAt"] is not None and listed["tokens"][1]["lastUsedAt"] is None
    assert listed["tokens"][1]["expiresAt"] is not None
    assert first["token"] not in json.dumps(listed) and second["token"] not in json.dumps(listed)
    # Only the admin manages tokens; another workspace's token sees no such workspace.
    assert error(api.as_token(first["token"]).call("GET", "/api/workspaces/tok-ws/tokens")) == (403, "forbidden")

    assert api.call("DELETE", f"/api/workspaces/tok-ws/tokens/{first['id']}").status_code == 204
    assert error(api.as_token(first["token"]).call("GET", "/api/workspaces/tok-ws")) == (401, "unauthorized")
    assert error(api.call("DELETE", f"/api/workspaces/tok-ws/tokens/{first['id']}")) == (404, "not_found")
    sql("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = :i", i=second["id"])
    assert error(api.as_token(second["token"]).call("GET", "/api/workspaces/tok-ws")) == (401, "unauthorized")
    past = {"name": "x", "expiresAt": "2020-01-01T00:00:00Z"}
    assert error(api.call("POST", "/api/workspaces/tok-ws/tokens", json=past)) == (400, "invalid_request")


def test_a_connection_cannot_name_an_endpoint_or_an_unservable_rate_limit(api, e2e):
    api.create_workspace("cfg-ws")
    offered = e2e.sandbox.connections()
    tenant = api.as_token(api.token_for("cfg-ws"))
    for key in ("base_url", "token_url"):
        refused = tenant.connect("cfg-ws", "google_drive", offered, **{key: "http://169.254.169.254/latest"})
        assert error(refused) == (400, "invalid_request")
        assert refused.json()["error"]["message"] == (
            f"config: Value error, config.{key}: vendor endpoints are platform settings; a connection cannot set them"
        )
    slow = tenant.connect("cfg-ws", "google_drive", offered, rate_limit={"requests": 1, "per_seconds": 2592000})
    assert error(slow) == (400, "invalid_request")
    assert tenant.connect("cfg-ws", "google_drive", offered, rate_limit={"requests": 10, "per_seconds": 60}).ok
    assert sql("SELECT config FROM connections WHERE workspace_id = 'cfg-ws'") == [
        ({"rate_limit": {"requests": 10, "per_seconds": 60}},)
    ]


def raw_request(api: Api, head: str, body_parts: list[bytes]) -> tuple[int, bytes]:
    """Send a request's head and then ``body_parts`` over a socket, and read the answer that comes back
    (the API may answer before the body is complete). Returns (status, bytes of the body the client sent)."""
    host, port = api.url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:  # the server answered and closed: it stopped reading
                break
            sent += len(part)
        answer = sock.recv(65536).decode(errors="replace")
    return int(answer.split(" ", 2)[1]), sent


def test_an_unauthenticated_64_mib_body_is_refused_without_being_read(api):
    declared = 64 * 1024 * 1024
    head = (
        "PUT /api/workspaces/x/connections/hubspot HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    status, sent = raw_request(api, head, [])  # no byte of the body sent: the answer cannot wait for it
    assert status == 413
    # Chunked, no length declared: refused once it passes 1 MiB, long before 64 MiB were sent.
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    head = head.replace(f"Content-Length: {declared}", "Transfer-Encoding: chunked")
    status, sent = raw_request(api, head, [framed] * 24)  # 1.5 MiB, then the answer
    assert status == 413
    response = api.call("PUT", "/api/workspaces/x/connections/hubspot", token=None, data=b"x" * (1024 * 1024 + 1))
    assert error(response) == (413, "payload_too_large")
    assert response.json()["error"]["message"] == "the request body exceeds 1048576 bytes"


def test_test_webhooks_are_rate_limited_per_workspace(api):
    for ws in ("rl-a", "rl-b"):
        api.create_workspace(ws)
        body = {"webhookUrl": "http://127.0.0.1:9/hook", "webhookSecret": "s"}
        assert api.call("PUT", f"/api/workspaces/{ws}/webhook", json=body).status_code == 200
    answers = [api.call("POST", "/api/workspaces/rl-a/webhook/test") for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert error(answers[5]) == (429, "rate_limited") and int(answers[5].headers["Retry-After"]) > 0
    assert api.call("POST", "/api/workspaces/rl-b/webhook/test").status_code == 200  # its own allowance


def test_a_recreated_workspace_starts_clean(api, e2e):
    offered = e2e.sandbox.connections()
    api.create_workspace("reborn")
    assert api.connect("reborn", "hubspot", offered).status_code == 201
    body = {"webhookUrl": "http://127.0.0.1:9/hook", "webhookSecret": "s"}  # nothing listens: stays pending
    assert api.call("PUT", "/api/workspaces/reborn/webhook", json=body).status_code == 200
    job = api.call("POST", "/api/workspaces/reborn/sync").json()
    e2e.wait_for_run(e2e.launched(job["jobId"]).run_id, timeout_s=RUN_TIMEOUT_S)
    wait_until(lambda: sql("SELECT count(*) FROM webhook_deliveries WHERE workspace_id = 'reborn'")[0][0], 60)
    owned = {t: f"SELECT count(*) FROM {t} WHERE workspace_id = 'reborn'" for t in ("sync_log", "deals")}
    assert all(sql(q)[0][0] > 0 for q in owned.values())
    sql("INSERT INTO sync_errors (workspace_id, connector, entity, error) VALUES ('reborn', 'hubspot', 'deals', 'x')")

    assert api.call("DELETE", "/api/workspaces/reborn").status_code == 204
    api.create_workspace("reborn")
    tables = ("sync_log", "sync_errors", "webhook_deliveries", "deals", "contacts", "accounts", "tasks", "connections")
    for table in tables:
        assert sql(f"SELECT count(*) FROM {table} WHERE workspace_id = 'reborn'") == [(0,)], table
    assert api.call("GET", "/api/workspaces/reborn/sync/jobs").json()["jobs"] == []
    assert api.call("GET", "/api/workspaces/reborn/sync/history").json()["history"] == []
    assert api.call("GET", "/api/workspaces/reborn/webhook/deliveries").json()["deliveries"] == []
    assert not e2e.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(["hubspot", "deals"]), asset_partitions=["reborn"]), limit=1
    ).records
    # Its first sync is a full one.
    assert api.connect("reborn", "hubspot", offered).status_code == 201
    job = api.call("POST", "/api/workspaces/reborn/sync").json()
    e2e.wait_for_run(e2e.launched(job["jobId"]).run_id, timeout_s=RUN_TIMEOUT_S)
    assert sql("SELECT DISTINCT mode FROM sync_log WHERE workspace_id = 'reborn'") == [("full",)]


def test_secrets_never_appear_in_responses_or_logs(api, e2e, seen):
    """Runs last in this module: it checks every response the module saw and the processes' logs."""
    offered = e2e.sandbox.connections()
    secrets = {v for c in ("hubspot", "salesforce") for v in offered[c]["credentials"].values() if len(str(v)) >= 8}
    api.create_workspace("secret-ws")
    webhook_secret = "whsec-" + uuid.uuid4().hex
    api.connect("secret-ws", "hubspot", offered)
    api.call(
        "PUT",
        "/api/workspaces/secret-ws/webhook",
        json={"webhookUrl": "https://example.com/h", "webhookSecret": webhook_secret},
    )
    api.call("GET", "/api/workspaces/secret-ws/connections")
    api.call("GET", "/api/workspaces/secret-ws/webhook")
    api.call(
        "PUT", "/api/workspaces/secret-ws/connections/hubspot", json={"credentials": {"k": webhook_secret}, "config": 1}
    )
    secrets |= {webhook_secret, "whsec-"}  # every webhook secret of this module starts so
    assert len(seen) > 100
    logs = "".join(service_output(e2e, name) for name in LOGGED_SERVICES)
    assert "accepted sync_salesforce for workspace qw1-ws: job" in logs  # the API's log is captured
    for secret in secrets:
        assert not any(secret in body for body in seen), "a secret came back in a response"
        assert secret not in logs, "a secret was logged"
