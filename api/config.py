"""The API's process configuration (environment variables, documented in the README)."""

from __future__ import annotations

import os
from functools import lru_cache

from sqlalchemy import Engine

from resources.db import get_engine
from resources.settings import warehouse_url

# API-triggered runs jump the nightly batch (scheduled runs use priority 0).


def admin_token() -> str | None:
    return os.environ.get("SYNC_ADMIN_TOKEN") or None


def graphql_url() -> str:
    return os.environ.get("DAGSTER_GRAPHQL_URL") or f"http://127.0.0.1:{os.environ.get('DAGSTER_PORT', '3001')}/graphql"


def engine() -> Engine:
    return get_engine(warehouse_url())


@lru_cache(maxsize=1)
def code_location() -> tuple[str, str]:
    """(location, repository) the jobs are launched in."""
    return os.environ.get("DAGSTER_LOCATION", "sales_sync"), os.environ.get("DAGSTER_REPOSITORY", "__repository__")
