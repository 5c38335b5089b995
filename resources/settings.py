"""Process configuration from environment variables (documented in the README)."""

from __future__ import annotations

import json
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


def vendor_sandbox_url() -> str | None:
    """``SYNC_VENDOR_SANDBOX_URL``: the operator points every vendor at the sandbox (``http://host:port``,
    each vendor under ``/<vendor>``). Unset in production: vendors are called at their real hosts."""
    url = os.environ.get("SYNC_VENDOR_SANDBOX_URL", "").strip().rstrip("/")
    return url or None


def egress_allowed_hosts() -> list[str]:
    """``SYNC_EGRESS_ALLOWED_HOSTS``: comma-separated hosts (``host`` or ``host:port``) and IP networks that
    vendor calls may reach although they are not public (a private proxy, an on-premises vendor host)."""
    return [item for item in os.environ.get("SYNC_EGRESS_ALLOWED_HOSTS", "").split(",") if item.strip()]


def webhook_allowed_hosts() -> list[str]:
    """``WEBHOOK_ALLOWED_HOSTS``: host names and IP networks webhooks may reach although not public."""
    return [item for item in os.environ.get("WEBHOOK_ALLOWED_HOSTS", "").split(",") if item.strip()]


def rate_limit_overrides() -> dict[str, object]:
    """``SYNC_RATE_LIMITS``: the operator's platform limits per vendor (and ``vendor:scope``), as JSON,
    e.g. ``{"salesforce": {"requests": 1000, "per_seconds": 60}, "hubspot:search": false}``. They replace
    the vendors' documented defaults; connections can only add a tighter limit of their own."""
    raw = os.environ.get("SYNC_RATE_LIMITS", "").strip()
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("SYNC_RATE_LIMITS must be a JSON object of vendor -> limit")
    return value


def rate_limit_max_wait_s() -> float:
    """``SYNC_RATE_LIMIT_MAX_WAIT_SECONDS`` (default 120): the longest a call waits for its rate-limit
    slot; a slot booked further ahead fails the call at once."""
    return float(os.environ.get("SYNC_RATE_LIMIT_MAX_WAIT_SECONDS", "120"))
