"""A real platform for end-to-end tests: the code server, dagster-webserver and dagster-daemon on a
Postgres instance (its own database), the sandbox, and (when it exists) the REST API, all as separate processes."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.tags import ROOT_RUN_ID_TAG
from dagster_graphql import DagsterGraphQLClient

from scripts import stack as processes
from scripts.databases import create_database, drop_database
from tests.support import REPO, SANDBOX_URL_ENV, Sandbox, free_port

LOCATION = "sales_sync"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@dataclass
class Stack:
    home: Path
    dagster_port: int
    api_port: int
    sandbox: Sandbox
    services: list[processes.Service]
    env: dict[str, str]
    instance_db: str

    @property
    def logs(self) -> Path:
        """Where the processes write stdout/stderr. Not DAGSTER_HOME/logs: Dagster's telemetry uploader
        moves the files there away and deletes them."""
        return self.home / "process-logs"

    @property
    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))

    @property
    def graphql(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.dagster_port, timeout=60)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def launch(
        self, job: str, workspace: str, tags: dict[str, str] | None = None, assets: list[str] | None = None
    ) -> str:
        return self.graphql.submit_job_execution(
            job,
            repository_location_name=LOCATION,
            repository_name="__repository__",
            tags={"dagster/partition": workspace, **(tags or {})},
            asset_selection=[a.split("/") for a in assets] if assets else None,
        )

    def wait_for_run(self, run_id: str, statuses: Iterable[DagsterRunStatus] = FINISHED, timeout_s: float = 120):
        wanted = set(statuses)
        deadline = time.monotonic() + timeout_s
        instance = self.instance
        while True:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.status in wanted:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is {run.status if run else 'missing'} after {timeout_s}s")
            time.sleep(0.25)

    def launched(self, run_id: str, timeout_s: float = 60) -> Any:
        """The run the API's launcher created and queued for an accepted job (a moment after the 202)."""
        return self.wait_for_run(
            run_id, statuses=set(DagsterRunStatus) - {DagsterRunStatus.NOT_STARTED}, timeout_s=timeout_s
        )

    def run_record(self, run_id: str) -> Any:
        return self.instance.get_run_record_by_id(run_id)

    def retry_of(self, run_id: str) -> DagsterRun | None:
        """The latest run Dagster launched to retry ``run_id`` (run retries, dagster.yaml), once one exists."""
        retries = self.instance.get_runs(RunsFilter(tags={ROOT_RUN_ID_TAG: run_id}))  # newest first
        return retries[0] if retries else None


def start_stack(warehouse_url: str, *, with_api: bool, extra_env: dict[str, str] | None = None) -> Stack:
    db = f"dagster_test_{os.getpid()}_{secrets.token_hex(3)}"
    instance_url = create_database(db, migrated=False)  # Dagster creates its own schema
    home = Path(tempfile.mkdtemp(prefix="dagster_home_"))
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    dagster_port, api_port, sandbox_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": instance_url.replace("+psycopg:", "+psycopg2:"),
        "WAREHOUSE_URL": warehouse_url,
        "WEBHOOK_ALLOW_PRIVATE": "1",
        # The operator's setting every process that runs syncs reads: vendors are called at the sandbox.
        SANDBOX_URL_ENV: f"http://127.0.0.1:{sandbox_port}",
        "SYNC_LEASE_SECONDS": "12",
        "SYNC_HEARTBEAT_SECONDS": "2",
        "SYNC_REAPER_INTERVAL_SECONDS": "5",
        "SYNC_ADMIN_TOKEN": os.environ.get("SYNC_ADMIN_TOKEN", "test-admin-token"),
        "CODE_SERVER_HOST": "127.0.0.1",
        "CODE_SERVER_PORT": str(free_port()),
        **(extra_env or {}),
    }
    # This test process reads the same instance (run status, event logs).
    os.environ["DAGSTER_PG_URL"] = env["DAGSTER_PG_URL"]
    found = processes.services(
        env, dagster_port=dagster_port, api_port=api_port, sandbox_port=sandbox_port, with_api=with_api
    )
    sandbox = Sandbox(f"http://127.0.0.1:{sandbox_port}")
    stack = Stack(home, dagster_port, api_port, sandbox, found, env, db)
    processes.start(found, env, stack.logs)
    return stack


def stop_stack(stack: Stack) -> None:
    processes.stop(stack.services)
    drop_database(stack.instance_db)
    shutil.rmtree(stack.home, ignore_errors=True)
