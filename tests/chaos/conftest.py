"""A dedicated production-like stack whose Dagster processes reach the warehouse through a TCP proxy, so the
chaos suite can stage a real warehouse outage; the test process itself keeps the direct URL."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from sync_assets import CONNECTORS_BY_NAME
from tests.stack import Stack, start_stack, stop_stack
from tests.tcp_proxy import TcpProxy

# The lease must outlast the outage the suite stages (20 s): heartbeats cannot be written while the
# warehouse is away, and a shorter lease would have the reaper fail a run that is only waiting.
LEASE_S = 40
# The sandbox is this stack's alone: no platform rate limit (as tests/conftest.py's `unlimited`).
NO_PLATFORM_LIMITS = {**dict.fromkeys(CONNECTORS_BY_NAME, False), "hubspot:search": False}


@pytest.fixture(scope="module")
def warehouse_proxy(pg_url: str) -> Iterator[TcpProxy]:
    url = make_url(pg_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def chaos_stack(pg_url: str, warehouse_proxy: TcpProxy) -> Iterator[Stack]:
    proxied = make_url(pg_url).set(host="127.0.0.1", port=warehouse_proxy.port)
    env = {"SYNC_RATE_LIMITS": json.dumps(NO_PLATFORM_LIMITS), "SYNC_LEASE_SECONDS": str(LEASE_S)}
    running = start_stack(proxied.render_as_string(hide_password=False), with_api=False, extra_env=env)
    yield running
    stop_stack(running)
