"""The standalone code server on a real stack: the REST API answers a clear 503 while it is down,
records nothing for the refused trigger, and launches again once it is back; the daemon runs the
launched job on the restarted server."""

from __future__ import annotations

from dagster import DagsterRunStatus

from scripts import stack as processes
from tests.e2e.api_client import ADMIN, Api, sql

SMALL = {"hubspot": {"deals": 5, "contacts": 5, "companies": 5, "tasks": 5}, "gong": {"calls": 7}}


def test_a_trigger_while_the_code_server_is_down_is_a_503_and_works_once_it_is_back(e2e):
    stack = e2e
    stack.sandbox.reset(sizes=SMALL)
    api = Api(stack.api_url, ADMIN)
    offered = stack.sandbox.connections()
    api.create_workspace("before")
    assert api.connect("before", "hubspot", offered).status_code == 201
    warm = api.call("POST", "/api/workspaces/before/sync")
    assert warm.status_code == 202, warm.text
    assert stack.wait_for_run(warm.json()["jobId"], timeout_s=300).status == DagsterRunStatus.SUCCESS

    api.create_workspace("during")
    assert api.connect("during", "gong", offered).status_code == 201
    [code_server] = [s for s in stack.services if s.name == "code-server"]
    processes.stop([code_server])

    # A selection the API has not planned before needs the code server.
    refused = api.call("POST", "/api/workspaces/during/sync")
    assert refused.status_code == 503, refused.text
    body = refused.json()["error"]
    assert body["code"] == "dagster_unavailable"
    assert body["message"].startswith("Dagster could not launch the run: code location 'sales_sync'")
    assert [r for r in stack.instance.get_runs() if r.tags.get("dagster/partition") == "during"] == []
    assert sql("SELECT count(*) FROM sync_log WHERE workspace_id = 'during'") == [(0,)]

    processes.start([code_server], stack.env, stack.logs)
    accepted = api.call("POST", "/api/workspaces/during/sync")  # not a 409: the refused trigger left nothing
    assert accepted.status_code == 202, accepted.text
    run = stack.wait_for_run(accepted.json()["jobId"], timeout_s=300)
    assert run.status == DagsterRunStatus.SUCCESS
    assert (run.job_name, run.tags["dagster/partition"]) == ("sync_workspace", "during")
    assert sql("SELECT workspace_id, source, count(*) FROM calls GROUP BY 1, 2") == [("during", "gong", 7)]
