"""Shared fixtures: a private Postgres database migrated by Alembic, the sandbox over real HTTP,
and a throwaway Dagster instance per test."""

from __future__ import annotations

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
from tests.support import Sandbox


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
    server = Sandbox.start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    sandbox_server.reset()
    return sandbox_server


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
