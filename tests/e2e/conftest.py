"""The real platform, started once for the end-to-end tests of a session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import Stack, start_stack, stop_stack
from tests.support import REPO


# Package scope: the stack's daemon ticks sensors (webhook delivery, the reaper) against the session's
# warehouse, so it must be gone before the in-process tests that follow run.
@pytest.fixture(scope="package")
def stack(pg_url: str) -> Iterator[Stack]:
    running = start_stack(pg_url, with_api=(REPO / "api" / "app.py").exists())
    yield running
    stop_stack(running)


@pytest.fixture
def e2e(stack: Stack, warehouse):
    """A clean warehouse and sandbox for one end-to-end test; the Dagster instance keeps its history."""
    stack.sandbox.reset()
    return stack
