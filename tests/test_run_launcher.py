"""The instance's run launcher: dagster.yaml names it, and a launch that fails on its thread fails the run
with the cause (the queue daemon no longer sees it). Its speed-up is measured in bench/orchestration.py;
every e2e test launches through it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType, DagsterRunStatus, instance_for_test
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._grpc.client import DagsterGrpcClient

from definitions import defs
from resources.run_launcher import BackgroundRunLauncher
from tests.support import REPO, free_port


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/dagster.embedded.yaml"])
def test_both_instance_configs_load_the_background_launcher(path: str):
    launcher = yaml.safe_load((REPO / path).read_text())["run_launcher"]
    with instance_for_test(overrides={"run_launcher": launcher}) as instance:
        assert type(instance.run_launcher) is BackgroundRunLauncher


def test_a_launch_that_fails_on_its_thread_fails_the_run_with_the_cause(tmp_path: Path):
    launcher = {"module": "resources.run_launcher", "class": "BackgroundRunLauncher"}
    with instance_for_test(overrides={"run_launcher": launcher}) as instance:
        port = free_port()  # nothing listens there
        location = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name="sales_sync")
        origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "sync_hubspot")
        run = instance.create_run_for_job(
            defs.resolve_job_def("sync_hubspot"), remote_job_origin=origin, tags={"dagster/partition": "ws"}
        )
        unreachable = DagsterGrpcClient(host="127.0.0.1", port=port)
        instance.run_launcher._start(run, unreachable)

        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        messages = [
            entry.dagster_event.message
            for entry in instance.all_logs(run.run_id)
            if entry.dagster_event and entry.dagster_event.event_type == DagsterEventType.ENGINE_EVENT
        ]
        assert messages[-1] == (
            "Launching the run failed: dagster._core.errors.DagsterUserCodeUnreachableError: "
            "Could not reach user code server. gRPC Error code: UNAVAILABLE"
        )
