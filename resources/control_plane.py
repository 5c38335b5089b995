"""Workspaces and connections: the control-plane writes shared by the API, the demo and tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from resources import schema
from resources.secrets import encrypt_json
from sync_assets.partitions import validate_workspace_id


def _insert(engine: Engine):
    return pg_insert if engine.dialect.name == "postgresql" else sqlite_insert


def upsert_workspace(engine: Engine, workspace_id: str, name: str) -> None:
    validate_workspace_id(workspace_id)
    ws = schema.workspaces
    stmt = _insert(engine)(ws).values(id=workspace_id, name=name, status="active")
    stmt = stmt.on_conflict_do_update(
        index_elements=[ws.c.id], set_={"name": name, "status": "active", "updated_at": func.now()}
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def upsert_connection(
    engine: Engine, workspace_id: str, connector: str, credentials: dict[str, Any], config: dict[str, Any]
) -> None:
    """Create or replace a workspace's connection; credentials are encrypted before they are stored."""
    c = schema.connections
    values = {
        "workspace_id": workspace_id,
        "connector_name": connector,
        "credentials": encrypt_json(credentials),
        "config": config,
        "status": "active",
    }
    stmt = _insert(engine)(c).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.c.workspace_id, c.c.connector_name],
        set_={
            **{k: v for k, v in values.items() if k not in ("workspace_id", "connector_name")},
            "updated_at": func.now(),
        },
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def set_connection_config(engine: Engine, workspace_id: str, connector: str, config: dict[str, Any]) -> None:
    c = schema.connections
    with engine.begin() as conn:
        conn.execute(
            update(c)
            .where(c.c.workspace_id == workspace_id, c.c.connector_name == connector)
            .values(config=config, updated_at=func.now())
        )


def delete_connection(engine: Engine, workspace_id: str, connector: str) -> bool:
    c = schema.connections
    with engine.begin() as conn:
        result = conn.execute(delete(c).where(c.c.workspace_id == workspace_id, c.c.connector_name == connector))
    return result.rowcount > 0


def active_connectors(engine: Engine, workspace_id: str) -> list[str]:
    c = schema.connections
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(c.c.connector_name)
                .where(c.c.workspace_id == workspace_id, c.c.status == "active")
                .order_by(c.c.connector_name)
            ).scalars()
        )
