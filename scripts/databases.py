"""Throwaway Postgres databases for tests and benchmarks: created (optionally migrated) and dropped
through one admin connection URL."""

from __future__ import annotations

import os

import sqlalchemy as sa

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    return os.environ.get("TEST_PG_ADMIN_URL", DEFAULT_ADMIN_URL)


def database_url(name: str, admin: str | None = None) -> str:
    return (admin or admin_url()).rsplit("/", 1)[0] + f"/{name}"


def _run(statement: str, admin: str | None) -> None:
    engine = sa.create_engine(admin or admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def create_database(name: str, *, migrated: bool = True, admin: str | None = None) -> str:
    """(Re)create database ``name`` empty, migrate it to head unless told not to, return its URL."""
    drop_database(name, admin=admin)
    _run(f'CREATE DATABASE "{name}"', admin)
    url = database_url(name, admin)
    if migrated:
        from scripts.environment import migrate

        migrate(url)
    return url


def drop_database(name: str, *, admin: str | None = None) -> None:
    _run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin)
