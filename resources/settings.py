"""Process configuration from environment variables (documented in the README)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def demo_dir() -> Path:
    return Path(os.environ.get("DEMO_DIR", REPO_ROOT / ".demo")).resolve()


def warehouse_url() -> str:
    """The warehouse and control plane. Defaults to SQLite under DEMO_DIR (the embedded demo)."""
    url = os.environ.get("WAREHOUSE_URL")
    if url:
        return normalize_postgres_url(url)
    return f"sqlite:///{demo_dir() / 'warehouse.db'}"


def normalize_postgres_url(url: str) -> str:
    """Pin the psycopg 3 driver for bare ``postgresql://`` URLs so the COPY path is always available."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def code_server_address() -> tuple[str, int]:
    """Where the code server listens (make up/dev start it there). workspace.yaml reads the same two
    variables, so the defaults are written into the environment when they are absent."""
    os.environ.setdefault("CODE_SERVER_HOST", "127.0.0.1")
    os.environ.setdefault("CODE_SERVER_PORT", "4000")
    return os.environ["CODE_SERVER_HOST"], int(os.environ["CODE_SERVER_PORT"])


def sandbox_port() -> int:
    return int(os.environ.get("SANDBOX_PORT", "8900"))


def allow_private_webhooks() -> bool:
    return os.environ.get("WEBHOOK_ALLOW_PRIVATE", "") in {"1", "true", "yes"}
