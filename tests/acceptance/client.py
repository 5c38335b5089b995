"""How the acceptance tests act as users: the REST API with the admin token, Dagster's GraphQL API, and
the sandbox's control API; waits poll job status, never sleep blindly."""

from __future__ import annotations

from typing import Any, TypeVar

import requests
from dagster import DagsterEventType

from tests.stack import LOCATION, Stack
from tests.support import wait_until

ADMIN_TOKEN = "test-admin-token"
FINAL = {"completed", "completed_with_errors", "failed", "canceled"}
# Salesforce's default limit (100k/day) spaces calls 0.9 s apart; the rate limit is not what these tests check,
# so the stack's operator switches it off (PLATFORM_LIMITS).
PLATFORM_LIMITS = {"salesforce": False}
SF_FAST = {"bulk_poll_interval_s": 0.05}
TINY_HUBSPOT = {"deals": 20, "contacts": 20, "companies": 10, "tasks": 10}
TINY = {
    "hubspot": TINY_HUBSPOT,
    "salesforce": {"Opportunity": 20, "Contact": 20, "Account": 10, "Task": 10},
    "gong": {"calls": 30},
    "fireflies": {"transcripts": 30},
    "monday": {"boards": 1, "items": 30},
    "google_drive": {"files": 30},
}
ALL_CONNECTORS = {name: SF_FAST if name == "salesforce" else {} for name in TINY}
T = TypeVar("T")

SCHEDULE_DRY_RUN = """
mutation DryRun($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult {
        skipReason
        error { message }
        runRequests { runKey jobName tags { key value } assetSelection { path } }
      }
    }
    ... on PythonError { message }
  }
}
"""

RUN_STATUS = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status jobName tags { key value } }
  }
}
"""


class Acceptance:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.sandbox = stack.sandbox
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"

    # --- REST API --------------------------------------------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.stack.api_url}{path}", timeout=60, **kwargs)

    def workspace(self, workspace_id: str, connectors: dict[str, dict[str, Any]] | list[str]) -> None:
        """Create a workspace and its sandbox-backed connections through the management endpoints."""
        created = self.call("POST", "/api/workspaces", json={"id": workspace_id, "name": workspace_id.title()})
        assert created.status_code == 201, created.text
        overrides = connectors if isinstance(connectors, dict) else {name: {} for name in connectors}
        offered = self.sandbox.connections()
        for name, config in overrides.items():
            body = {"credentials": offered[name]["credentials"], "config": {**offered[name]["config"], **config}}
            put = self.call("PUT", f"/api/workspaces/{workspace_id}/connections/{name}", json=body)
            assert put.status_code == 201, put.text

    def set_webhook(self, workspace_id: str, url: str, secret: str) -> requests.Response:
        return self.call(
            "PUT", f"/api/workspaces/{workspace_id}/webhook", json={"webhookUrl": url, "webhookSecret": secret}
        )

    def sync(self, workspace_id: str, connector: str | None = None, **body: Any) -> requests.Response:
        path = f"/api/workspaces/{workspace_id}" + (f"/connectors/{connector}/sync" if connector else "/sync")
        return self.call("POST", path, json=body or None)

    def start(self, workspace_id: str, connector: str | None = None, **body: Any) -> str:
        response = self.sync(workspace_id, connector, **body)
        assert response.status_code == 202, response.text
        return response.json()["jobId"]

    def job(self, workspace_id: str, job_id: str) -> dict[str, Any]:
        response = self.call("GET", f"/api/workspaces/{workspace_id}/sync/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_job(self, workspace_id: str, job_id: str, timeout_s: float = 180) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            # Finished, and its sync_log rows settled too: after run monitoring fails a run, the step
            # process still records the failure in sync_log a moment later.
            job = self.job(workspace_id, job_id)
            settled = all(r["status"] not in ("pending", "running") for r in job["results"])
            return job if job["status"] in FINAL and settled else None

        job = wait_until(finished, timeout_s, f"job {job_id} finished")
        print(f"job {job_id} of {workspace_id}: {job['status']} {job.get('error') or ''}\n{self.timeline(job_id)}")
        return job

    def run_sync(self, workspace_id: str, connector: str | None = None, **body: Any) -> dict[str, Any]:
        return self.wait_job(workspace_id, self.start(workspace_id, connector, **body))

    # --- Dagster ---------------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.stack.dagster_port}/graphql"
        response = requests.post(url, json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def run_status(self, run_id: str) -> str:
        return self.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]

    def schedule_dry_run(self, timestamp: float) -> dict[str, Any]:
        """The UI's "Test schedule": evaluate daily_sync in the code location, launching nothing."""
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "scheduleName": "daily_sync",
        }
        data = self.graphql(SCHEDULE_DRY_RUN, {"selector": selector, "timestamp": timestamp})["scheduleDryRun"]
        assert data["__typename"] == "DryRunInstigationTick", data
        return data["evaluationResult"]

    def code_server_log(self) -> str:
        """What the webserver and its code server printed (schedule evaluations log there)."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.stack.logs.glob("*.log")))

    def timeline(self, run_id: str) -> str:
        """The run's events, seconds after its creation: shown when a test fails."""
        events = self.stack.instance.all_logs(run_id)
        if not events:
            return ""
        origin = events[0].timestamp
        return "\n".join(
            f"  +{e.timestamp - origin:7.2f}s {e.dagster_event.event_type_value if e.dagster_event else 'log'} "
            f"{e.step_key or ''} {(e.user_message or '')[:160]}"
            for e in events
        )

    def run_messages(self, run_id: str) -> list[str]:
        return [e.user_message for e in self.stack.instance.all_logs(run_id)]

    def event_times(self, run_id: str, event_type: DagsterEventType) -> list[tuple[str | None, float]]:
        """(step key, timestamp) of the run's events of one type."""
        return [
            (e.step_key, e.timestamp)
            for e in self.stack.instance.all_logs(run_id, of_type=event_type)
            if e.dagster_event is not None
        ]
