"""The API's process configuration (environment variables, documented in the README)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine

from resources.db import get_engine
from resources.settings import REPO_ROOT, warehouse_url

# API-triggered runs jump the nightly batch (scheduled runs use priority 0).


def admin_token() -> str | None:
    return os.environ.get("SYNC_ADMIN_TOKEN") or None


def workspace_file() -> Path:
    """The workspace the webserver and daemon read; it finds the code server at CODE_SERVER_HOST and
    CODE_SERVER_PORT (make up's defaults unless set)."""
    os.environ.setdefault("CODE_SERVER_HOST", "127.0.0.1")
    os.environ.setdefault("CODE_SERVER_PORT", "4000")
    return REPO_ROOT / "workspace.yaml"


def engine() -> Engine:
    return get_engine(warehouse_url())


@lru_cache(maxsize=1)
def code_location() -> tuple[str, str]:
    """(location, repository) the jobs are launched in."""
    return os.environ.get("DAGSTER_LOCATION", "sales_sync"), os.environ.get("DAGSTER_REPOSITORY", "__repository__")
