"""Dagster, as the API sees it: runs are created and queued on the instance (api/launcher.py, with
the job as the code location describes it, as for a UI launch, by the outbox's launcher: api/launches.py),
and read from the instance storage."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import cached_property

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus, RunRecord, RunsFilter

from api import config
from api.errors import ApiError
from api.launcher import CodeLocationUnavailable, RunFactory
from sync_assets import CONNECTORS, runs
from sync_assets.partitions import WORKSPACE_PARTITIONS_NAME
from sync_assets.runs import IN_FLIGHT, PARTITION_TAG

logger = logging.getLogger("api")

ROOT_RUN_TAG = "dagster/root_run_id"
CONNECTOR_ASSET_KEYS = [AssetKey([c.name, e.name]) for c in CONNECTORS for e in c.entities]
# dagster-webserver's defaults for its instance storage connections.
STATEMENT_TIMEOUT_MS = 15_000
POOL_RECYCLE_S = 3600
POOL_MAX_OVERFLOW = 20


class DagsterUnavailable(ApiError):
    def __init__(self, detail: str) -> None:
        super().__init__(503, "dagster_unavailable", f"Dagster could not launch the run: {detail}")


class DagsterGateway:
    @cached_property
    def instance(self) -> DagsterInstance:
        instance = DagsterInstance.get()
        # What dagster-webserver does for its long-lived process: keep a storage connection open
        # rather than connecting per query (a launch makes dozens of queries).
        instance.optimize_for_webserver(
            statement_timeout=STATEMENT_TIMEOUT_MS, pool_recycle=POOL_RECYCLE_S, max_overflow=POOL_MAX_OVERFLOW
        )
        return instance

    @cached_property
    def runs(self) -> RunFactory:
        location, repository = config.code_location()
        return RunFactory(self.instance, config.workspace_file(), location, repository)

    def check_launchable(self, job_name: str, asset_keys: Sequence[str] | None) -> None:
        """503 unless the selection can be launched (it needs the code server until it is planned once)."""
        try:
            self.runs.check(job_name, asset_keys)
        except CodeLocationUnavailable as exc:
            raise DagsterUnavailable(str(exc)) from None

    def ensure_partition(self, workspace_id: str) -> None:
        """Dagster accepts unknown partition keys and fails the run later, so register it first."""
        if not self.instance.has_dynamic_partition(WORKSPACE_PARTITIONS_NAME, workspace_id):
            self.instance.add_dynamic_partitions(WORKSPACE_PARTITIONS_NAME, [workspace_id])

    def purge_partition(self, workspace_id: str) -> None:
        """Forget the workspace in Dagster: its runs with their event logs (the materializations that
        hold its watermarks), then its partition. Runs that materialized the partition without the
        partition tag (a backfill of a range) are found through the materializations themselves."""
        for record in self.instance.get_run_records(RunsFilter(tags={PARTITION_TAG: workspace_id})):
            self.instance.delete_run(record.dagster_run.run_id)
        for key in CONNECTOR_ASSET_KEYS:
            while records := self.instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, asset_partitions=[workspace_id]), limit=100
            ).records:
                for run_id in {r.run_id for r in records}:
                    self.instance.delete_run(run_id)
        if self.instance.has_dynamic_partition(WORKSPACE_PARTITIONS_NAME, workspace_id):
            self.instance.delete_dynamic_partition(WORKSPACE_PARTITIONS_NAME, workspace_id)

    def in_flight(self, workspace_id: str) -> list[RunRecord]:
        return list(self.instance.get_run_records(RunsFilter(statuses=IN_FLIGHT, tags={PARTITION_TAG: workspace_id})))

    def max_runtime_s(self, record: RunRecord) -> float | None:
        return runs.max_runtime_s(self.instance, record)

    def past_max_runtime(self, record: RunRecord, now: float | None = None) -> bool:
        return runs.past_max_runtime(self.instance, record, now)

    def time_out(self, record: RunRecord, message: str) -> None:
        """What run monitoring does when it sees the run first: cancel, terminate, then fail it."""
        run = record.dagster_run
        self.instance.report_run_canceling(run, message=message)
        try:
            self.instance.run_launcher.terminate(run.run_id)
        except Exception as exc:  # the worker may already be gone: failing the run is what matters
            logger.warning("could not terminate run %s: %s", run.run_id, type(exc).__name__)
        current = self.instance.get_run_by_id(run.run_id)
        if current is not None and not current.is_finished:
            self.instance.report_run_failed(current, message)

    def job_runs(self, job_id: str) -> list[RunRecord]:
        """The job's runs, first the launched one, then its automatic retries (oldest first)."""
        root = self.instance.get_run_record_by_id(job_id)
        if root is None:
            return []
        records = [root]
        if root.dagster_run.status == DagsterRunStatus.FAILURE:
            retries = self.instance.get_run_records(RunsFilter(tags={ROOT_RUN_TAG: job_id}), ascending=True)
            records += [r for r in retries if r.dagster_run.run_id != job_id]
        return records

    def recent_jobs(self, workspace_id: str, limit: int) -> list[RunRecord]:
        """The workspace's launched runs, newest first (automatic retries are reported under their job)."""
        found: list[RunRecord] = []
        cursor = None
        while len(found) < limit:
            batch = list(
                self.instance.get_run_records(
                    RunsFilter(tags={PARTITION_TAG: workspace_id}), limit=limit * 2, cursor=cursor
                )
            )
            found += [r for r in batch if ROOT_RUN_TAG not in r.dagster_run.tags]
            if len(batch) < limit * 2:
                break
            cursor = batch[-1].dagster_run.run_id
        return found[:limit]


_gateway: DagsterGateway | None = None
_gateway_lock = threading.Lock()


def gateway() -> DagsterGateway:
    global _gateway
    with _gateway_lock:
        if _gateway is None:
            _gateway = DagsterGateway()
        return _gateway
