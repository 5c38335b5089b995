"""Fail fast, with the fix, when the test Postgres is not reachable."""

import os
import sys

import psycopg

URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres").replace("+psycopg", "")

try:
    psycopg.connect(URL, connect_timeout=5).close()
except psycopg.OperationalError as exc:
    sys.exit(
        f"PostgreSQL is not reachable at {URL}: {exc}\n"
        "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
    )
