"""The embedded environment shared by `make demo` and `make dev`: DEMO_DIR, a generated secret key,
an SQLite DAGSTER_HOME and a migrated warehouse."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from alembic import command
from alembic.config import Config

from resources.secrets import generate_key
from resources.settings import REPO_ROOT, demo_dir, warehouse_url


def prepare_embedded_environment() -> Path:
    """Set the env vars the embedded default needs (keeping any the user set) and migrate."""
    root = demo_dir()
    root.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("SYNC_SECRET_KEY"):
        key_file = root / "secret.key"
        if not key_file.exists():
            key_file.write_text(generate_key())
            key_file.chmod(0o600)
        os.environ["SYNC_SECRET_KEY"] = key_file.read_text().strip()
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(root / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "deploy" / "dagster.embedded.yaml", home / "dagster.yaml")
    os.environ.setdefault("WAREHOUSE_URL", warehouse_url())
    migrate()
    return root


def migrate(url: str | None = None) -> None:
    config = Config(str(REPO_ROOT / "migrations" / "alembic.ini"))
    config.cmd_opts = type("Opts", (), {"x": [f"url={url or warehouse_url()}"]})()
    command.upgrade(config, "head")
