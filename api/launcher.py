"""Creating and queueing runs from the API process, as the webserver's ``launchRun`` does, without
its per-launch cost.

A launch needs the job (or its asset subset) as the code location describes it and an execution
plan; both depend only on (job, assets), never on the workspace, so they are fetched from the code
server once per selection and reused. A launch is then a few writes to the instance storage: create
the run (the caller picks the workspace through the ``dagster/partition`` tag) and hand it to the
instance's run coordinator, whose queue the daemon drains.

The code location is read through ``workspace.yaml``, as the webserver and daemon read it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterInstance
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.remote_representation.external import RemoteJob
from dagster._core.snap import ExecutionPlanSnapshot
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

logger = logging.getLogger("api")


@dataclass(frozen=True)
class PlannedJob:
    job: RemoteJob
    plan: ExecutionPlanSnapshot


class CodeLocationUnavailable(Exception):
    """The code location could not describe the job (code server down or the job not loadable)."""


def _asset_selection(asset_keys: Sequence[str] | None) -> frozenset[AssetKey] | None:
    return frozenset(AssetKey(key.split("/")) for key in asset_keys) if asset_keys else None


class RunFactory:
    def __init__(self, instance: DagsterInstance, workspace_file: Path, location: str, repository: str) -> None:
        self.instance = instance
        self.workspace_file = workspace_file
        self.location = location
        self.repository = repository
        self._lock = threading.Lock()
        self._process_context: WorkspaceProcessContext | None = None
        self._request_context: WorkspaceRequestContext | None = None
        self._planned: dict[tuple[str, frozenset[AssetKey] | None], PlannedJob] = {}

    def check(self, job_name: str, asset_keys: Sequence[str] | None = None) -> None:
        """Make sure the selection can be launched: plans it now unless it is cached (raises
        :class:`CodeLocationUnavailable` when the code server cannot describe it)."""
        self._plan(job_name, _asset_selection(asset_keys))

    def launch(
        self,
        run_id: str,
        job_name: str,
        tags: dict[str, str],
        asset_keys: Sequence[str] | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        """Create the run with id ``run_id`` and queue it. Idempotent: a run already created under that
        id (a launch interrupted between the two steps) is only queued if it is not yet. ``run_config``
        (the steps' SyncConfig) does not change the plan, so the cached one serves every config."""
        existing = self.instance.get_run_by_id(run_id)
        assets = _asset_selection(asset_keys)
        context, planned = self._plan(job_name, assets)
        if existing is None:
            self.instance.create_run(
                job_name=job_name,
                run_id=run_id,
                run_config=run_config or {},
                resolved_op_selection=None,
                step_keys_to_execute=planned.plan.step_keys_to_execute,
                status=DagsterRunStatus.NOT_STARTED,
                tags={**planned.job.tags, **tags},
                root_run_id=None,
                parent_run_id=None,
                job_snapshot=planned.job.job_snapshot,
                execution_plan_snapshot=planned.plan,
                parent_job_snapshot=planned.job.parent_job_snapshot,
                asset_selection=assets,
                asset_check_selection=None,
                op_selection=None,
                remote_job_origin=planned.job.get_remote_origin(),
                job_code_origin=planned.job.get_python_origin(),
                asset_graph=context.asset_graph,
            )
        elif existing.status != DagsterRunStatus.NOT_STARTED:
            return
        self.instance.submit_run(run_id, workspace=context)

    def _plan(self, job_name: str, assets: frozenset[AssetKey] | None) -> tuple[WorkspaceRequestContext, PlannedJob]:
        key = (job_name, assets)
        with self._lock:
            if key in self._planned:  # planned entries and the request context are set and reset together
                return self._request_context, self._planned[key]
            try:
                return self._fetch(key)
            except (DagsterUserCodeUnreachableError, CodeLocationUnavailable):
                # The code server restarted, or was not up yet when this process first read it.
                logger.warning("code location %s not reachable; reloading it", self.location)
                self._reload()
                try:
                    return self._fetch(key)
                except DagsterUserCodeUnreachableError as exc:
                    raise CodeLocationUnavailable(f"code location {self.location!r} is unreachable") from exc

    def _fetch(self, key: tuple[str, frozenset[AssetKey] | None]) -> tuple[WorkspaceRequestContext, PlannedJob]:
        if self._process_context is None:
            self._process_context = WorkspaceProcessContext(
                self.instance, WorkspaceFileTarget(paths=[str(self.workspace_file)])
            )
        if self._request_context is None:
            self._request_context = self._process_context.create_request_context()
        context = self._request_context
        if not context.has_code_location(self.location):
            error = context.get_code_location_error(self.location)
            first_line = error.message.strip().split("\n")[0][:300] if error else "not in the workspace"
            raise CodeLocationUnavailable(f"code location {self.location!r} did not load: {first_line}")
        job_name, assets = key
        code_location = context.get_code_location(self.location)
        job = code_location.get_job(
            JobSubsetSelector(
                location_name=self.location,
                repository_name=self.repository,
                job_name=job_name,
                op_selection=None,
                asset_selection=assets,
            )
        )
        plan = code_location.get_execution_plan(job, {}, None, None, self.instance).execution_plan_snapshot
        self._planned[key] = PlannedJob(job, plan)
        return context, self._planned[key]

    def _reload(self) -> None:
        self._planned.clear()
        self._request_context = None
        if self._process_context is not None:
            self._process_context.reload_code_location(self.location)
