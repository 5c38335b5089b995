"""The seed's test plan on the production-like stack: dagster-webserver + dagster-daemon on a Postgres
instance, the REST API, the sandbox and a local webhook receiver. Outcomes are collected per seed ID and,
when ACCEPTANCE_LOG names a file (`make acceptance`), written as the seed's Test Execution Log."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.client import PLATFORM_LIMITS, Acceptance
from tests.acceptance.report import ExecutionLog, seed_id
from tests.receiver import Receiver
from tests.stack import Stack, start_stack, stop_stack

LOG_ENV = "ACCEPTANCE_LOG"
_log = ExecutionLog(started=time.time())


# Module scope, as in tests/e2e: the warehouse is the session's, so this stack's daemon (its sensors) and
# API (its launcher claims pending launches) must be gone before other stacks and in-process tests use it.
# ("package" would mean the whole session here: these test folders are not packages.)
@pytest.fixture(scope="module")
def stack(pg_url: str) -> Iterator[Stack]:
    running = start_stack(pg_url, with_api=True, extra_env={"SYNC_RATE_LIMITS": json.dumps(PLATFORM_LIMITS)})
    warm_up(running)
    yield running
    stop_stack(running)


def warm_up(stack: Stack) -> None:
    """One sync through every process first, so the timed checks (QW-1's 500 ms, INT-1's pickup) measure a
    running service, not the first request's imports and connection set-up."""
    client = Acceptance(stack)
    client.workspace("warm-up", ["hubspot"])
    client.run_sync("warm-up")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def acceptance(stack: Stack, warehouse) -> Acceptance:
    """A clean warehouse and sandbox per test; the Dagster instance keeps its history, so every test uses
    workspace ids of its own (watermarks live in materialization metadata)."""
    stack.sandbox.reset()
    return Acceptance(stack)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    test_id = seed_id(report.nodeid)
    if test_id and report.nodeid.startswith("tests/acceptance/"):
        _log.record(test_id, report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(LOG_ENV)
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_log.render(finished=time.time()))
