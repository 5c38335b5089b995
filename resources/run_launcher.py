"""The instance's run launcher (named in dagster.yaml): Dagster's default gRPC launch, off the dequeue path.

The queue daemon marks a run STARTING, then calls ``launch_run``; a threaded dequeue pass waits for every
launch it made. The default launch blocks in the code server's ``StartRun`` until the run's new process
has imported Dagster (seconds each, tens of seconds when twenty start at once on two cores), so a run
queued meanwhile waited for the slowest of them before it was even picked up. Here ``launch_run`` resolves
the code location at once (an unreachable server still fails the launch and the daemon re-queues the run)
and hands the ``StartRun`` call to a thread: the pass ends in milliseconds. A launch that then fails
fails its run with the cause, as a failed synchronous launch would.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from dagster import DefaultRunLauncher
from dagster._core.events import EngineEventData
from dagster._core.launcher import LaunchRunContext
from dagster._core.remote_representation.code_location import GrpcServerCodeLocation
from dagster._core.storage.dagster_run import DagsterRun
from dagster._utils.error import serializable_error_info_from_exc_info

# Launches in flight are bounded by the instance's max_concurrent_runs (a launching run is STARTING).
LAUNCH_THREADS = 32
# terminate() of a run whose launch is still in flight waits for it, so the cancel reaches its process.
PENDING_LAUNCH_WAIT_S = 60.0


class BackgroundRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose ``launch_run`` returns once the launch is handed to a worker thread."""

    def __init__(self, inst_data: Any = None) -> None:
        super().__init__(inst_data=inst_data)
        self._executor = ThreadPoolExecutor(max_workers=LAUNCH_THREADS, thread_name_prefix="run-launch")
        self._pending: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if context.workspace is None:
            raise ValueError("BackgroundRunLauncher needs the workspace in its LaunchRunContext")
        origin = run.remote_job_origin
        if origin is None:
            raise ValueError(f"run {run.run_id} has no code location origin to launch from")
        location = context.workspace.get_code_location(origin.repository_origin.code_location_origin.location_name)
        if not isinstance(location, GrpcServerCodeLocation):
            raise TypeError("BackgroundRunLauncher launches runs of gRPC code locations only")
        client = location.client
        with self._lock:
            self._run_ids.add(run.run_id)
            future = self._executor.submit(self._start, run, client)
            self._pending[run.run_id] = future
        future.add_done_callback(lambda _: self._forget(run.run_id))

    def _start(self, run: DagsterRun, client: Any) -> None:
        try:
            DefaultRunLauncher.launch_run_from_grpc_client(self._instance, run, client)
        except Exception:
            error = serializable_error_info_from_exc_info(sys.exc_info())
            self._instance.report_engine_event(
                f"Launching the run failed: {error.message.strip()}", run, EngineEventData.engine_error(error)
            )
            self._instance.report_run_failed(run)

    def _forget(self, run_id: str) -> None:
        with self._lock:
            self._pending.pop(run_id, None)

    def terminate(self, run_id: str) -> bool:
        with self._lock:
            pending = self._pending.get(run_id)
        if pending is not None:
            wait([pending], timeout=PENDING_LAUNCH_WAIT_S)
        return super().terminate(run_id)

    def join(self, timeout: int = 30) -> None:
        with self._lock:
            pending = list(self._pending.values())
        wait(pending, timeout=timeout)
        super().join(timeout=timeout)

    def dispose(self) -> None:
        # Let handed-over launches finish: a run marked STARTING whose launch is dropped only fails at
        # run monitoring's start timeout.
        self._executor.shutdown(wait=True)
        super().dispose()
