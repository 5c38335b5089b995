"""The API's process configuration (environment variables, documented in the README)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine

from api.body_limit import DEFAULT_MAX_BODY_BYTES
from resources.db import get_engine
from resources.settings import REPO_ROOT, code_server_address, warehouse_url


def admin_token() -> str | None:
    return os.environ.get("SYNC_ADMIN_TOKEN") or None


def max_body_bytes() -> int:
    """``SYNC_API_MAX_BODY_BYTES`` (default 1 MiB): the largest request body the API reads."""
    return int(os.environ.get("SYNC_API_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES)))


def webhook_test_interval_s() -> float:
    """``SYNC_WEBHOOK_TEST_INTERVAL_SECONDS`` (default 12): one test webhook per this many seconds per
    workspace, after a burst of WEBHOOK_TEST_BURST; a test sends a request to an address the tenant chose."""
    return float(os.environ.get("SYNC_WEBHOOK_TEST_INTERVAL_SECONDS", "12"))


def workspace_file() -> Path:
    """The workspace the webserver and daemon read, which finds the code server at its address."""
    code_server_address()
    return REPO_ROOT / "workspace.yaml"


def engine() -> Engine:
    return get_engine(warehouse_url())


@lru_cache(maxsize=1)
def code_location() -> tuple[str, str]:
    """(location, repository) the jobs are launched in."""
    return os.environ.get("DAGSTER_LOCATION", "sales_sync"), os.environ.get("DAGSTER_REPOSITORY", "__repository__")
