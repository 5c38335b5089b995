"""Workspaces and connections: the control-plane writes shared by the API, the demo and tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from resources import schema
from resources.connection_config import validate_connection_config
from resources.rate_limit import connection_key, webhook_test_key
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
    """Create or replace a workspace's connection; credentials are encrypted before they are stored.
    Raises InvalidConnectionConfig for a config a connection may not have."""
    c = schema.connections
    values = {
        "workspace_id": workspace_id,
        "connector_name": connector,
        "credentials": encrypt_json(credentials),
        "config": validate_connection_config(config),
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
    validate_connection_config(config)
    c = schema.connections
    with engine.begin() as conn:
        conn.execute(
            update(c)
            .where(c.c.workspace_id == workspace_id, c.c.connector_name == connector)
            .values(config=config, updated_at=func.now())
        )


def purge_workspace(conn: Connection, workspace_id: str) -> None:
    """Delete everything the warehouse holds for a workspace id: the workspace and its connections,
    tokens and pending launches, its sync history, dead letters, webhook deliveries, synced rows and its
    rate-limit slots. A deleted workspace leaves nothing behind for a later workspace of the same id."""
    for table in (schema.sync_log, schema.sync_errors, schema.webhook_deliveries, *schema.ENTITY_TABLES.values()):
        conn.execute(delete(table).where(table.c.workspace_id == workspace_id))
    slots = schema.rate_limit_slots.c.key
    conn.execute(
        delete(schema.rate_limit_slots).where(
            slots.startswith(connection_key(workspace_id, ""), autoescape=True)
            | (slots == webhook_test_key(workspace_id))
        )
    )
    # Connections, tokens and launches go with the workspace row (ON DELETE CASCADE).
    conn.execute(delete(schema.workspaces).where(schema.workspaces.c.id == workspace_id))


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
