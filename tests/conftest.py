"""Shared fixtures: a private Postgres database migrated by Alembic, the sandbox over real HTTP,
and a throwaway Dagster instance per test."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator

import pytest
from dagster import DagsterInstance, instance_for_test
from sqlalchemy import text

from resources import schema
from resources.control_plane import upsert_connection, upsert_workspace
from resources.db import dispose_all, get_engine
from resources.secrets import generate_key
from scripts.databases import create_database, drop_database
from sync_assets import CONNECTORS_BY_NAME
from tests.support import REPO, SANDBOX_URL_ENV, Sandbox


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh database per test session, so parallel sessions and other work never collide."""
    name = f"sync_test_{os.getpid()}_{secrets.token_hex(3)}"
    url = create_database(name)
    previous = {k: os.environ.get(k) for k in ("WAREHOUSE_URL", "SYNC_SECRET_KEY")}
    os.environ["WAREHOUSE_URL"] = url
    os.environ["SYNC_SECRET_KEY"] = generate_key()
    yield url
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    dispose_all()
    drop_database(name)


@pytest.fixture
def warehouse(pg_url: str):
    """The migrated warehouse, emptied before each test."""
    engine = get_engine(pg_url)
    names = ", ".join(t.name for t in reversed(schema.metadata.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    """The sandbox, and the operator setting that points every vendor at it (the syncs of this process
    and of the processes it starts read it)."""
    server = Sandbox.start()
    previous = os.environ.get(SANDBOX_URL_ENV)
    os.environ[SANDBOX_URL_ENV] = server.url
    yield server
    server.stop()
    if previous is None:
        os.environ.pop(SANDBOX_URL_ENV, None)
    else:
        os.environ[SANDBOX_URL_ENV] = previous


@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an operator sets for a sandbox it alone uses: no platform rate limit for any vendor."""
    limits = {**dict.fromkeys(CONNECTORS_BY_NAME, False), "hubspot:search": False}
    monkeypatch.setenv("SYNC_RATE_LIMITS", json.dumps(limits))


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as inst:
        yield inst


def register(
    engine, instance: DagsterInstance, sandbox: Sandbox, workspace: str, connectors: list[str], **config_overrides
) -> None:
    """Register a workspace with sandbox-backed connections and its Dagster partition."""
    upsert_workspace(engine, workspace, workspace.title())
    offered = sandbox.connections()
    for name in connectors:
        config = {**offered[name]["config"], **config_overrides}
        upsert_connection(engine, workspace, name, offered[name]["credentials"], config)
    instance.add_dynamic_partitions("workspace", [workspace])


# What a test needs decides its marker, so `make test-fast` (-m unit) runs exactly what needs nothing
# running: no Postgres, no sandbox, no Dagster instance, no stack of processes.
SERVICE_FIXTURES = frozenset({"pg_url", "warehouse", "sandbox", "sandbox_server", "sandbox_url", "instance", "engine"})
END_TO_END_DIRS = ("e2e", "acceptance", "chaos")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(part in END_TO_END_DIRS for part in item.path.relative_to(REPO / "tests").parts[:-1]):
            item.add_marker(pytest.mark.e2e)
        elif SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
