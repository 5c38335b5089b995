"""The real platform, started afresh for each end-to-end test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import Stack, start_stack, stop_stack
from tests.support import REPO


# Module scope: each module starts from an empty instance, so runs another module left queued or running
# cannot delay its runs, and the daemon (whose sensors tick against the session's warehouse) is gone
# before the in-process tests that follow run.
@pytest.fixture(scope="module")
def stack(pg_url: str) -> Iterator[Stack]:
    running = start_stack(pg_url, with_api=(REPO / "api" / "app.py").exists())
    yield running
    stop_stack(running)


@pytest.fixture
def e2e(stack: Stack, warehouse):
    """A clean warehouse and sandbox for one end-to-end test; the Dagster instance keeps its history."""
    stack.sandbox.reset()
    return stack
