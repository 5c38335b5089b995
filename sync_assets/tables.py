"""The warehouse tables as assets: ``warehouse/<table>``, downstream of every connector asset that writes the
table, so the lineage graph shows which vendors feed it. One subsettable multi_asset (one step, after its
writers in the same run) records each table's size for the workspace and whether its sources are fresh.

Which warehouse this is (Postgres or SQLite) is read from WAREHOUSE_URL when the definitions load: it
names the assets' kind and qualifies their table names.

No `from __future__ import annotations` here: Dagster inspects the `context` annotation at runtime.
"""

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
    multi_asset,
)

# Not exported at the top level in Dagster 1.13 (docs/dagster.md, "Pinned APIs").
from dagster._core.definitions.metadata import TableMetadataSet
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url

from resources import schema
from resources.settings import warehouse_url
from resources.warehouse import WarehouseResource, utcnow
from sync_assets.health import FRESHNESS_CHECK, freshness_result, last_syncs, max_sync_age
from sync_assets.partitions import workspace_partitions
from sync_assets.recipe import Connector

WAREHOUSE_GROUP = "warehouse"
WAREHOUSE_POOL = "warehouse"
SYNC_ERRORS = "sync_errors"
# Where unqualified names resolve: Postgres's default search_path, SQLite's main database.
SCHEMA_OF = {"postgresql": "public", "sqlite": "main"}
KIND_OF = {"postgresql": "postgres", "sqlite": "sqlite"}
DIALECTS: dict[str, Dialect] = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}


def warehouse_backend() -> str:
    """ "postgresql" or "sqlite": the configured warehouse."""
    backend = make_url(warehouse_url()).get_backend_name()
    if backend not in SCHEMA_OF:
        raise ValueError(f"WAREHOUSE_URL must be a Postgres or SQLite URL, not a {backend!r} one")
    return backend


def warehouse_kind() -> str:
    return KIND_OF[warehouse_backend()]


def table_asset_key(table: str) -> AssetKey:
    return AssetKey([WAREHOUSE_GROUP, table])


def qualified_table_name(table: str) -> str:
    return f"{SCHEMA_OF[warehouse_backend()]}.{table}"


def warehouse_table(table: str) -> Table:
    return schema.ENTITY_TABLES[table] if table != SYNC_ERRORS else schema.sync_errors


def column_schema(table: Table) -> TableSchema:
    """The table's columns as this warehouse types them (JSONB on Postgres, JSON on SQLite, …)."""
    dialect = DIALECTS[warehouse_backend()]
    return TableSchema(
        columns=[
            TableColumn(
                name=column.name,
                type=column.type.compile(dialect=dialect),
                description=column.doc,
                constraints=TableColumnConstraints(nullable=column.nullable, unique=column.primary_key),
            )
            for column in table.columns
        ]
    )


def table_metadata(table: str) -> dict[str, Any]:
    """The definition metadata of every asset that is, or writes, ``table``."""
    return dict(
        TableMetadataSet(table_name=qualified_table_name(table), column_schema=column_schema(warehouse_table(table)))
    )


def writers_by_table(connectors: tuple[Connector, ...]) -> dict[str, list[AssetKey]]:
    """Each table -> the connector assets that write it; every entity dead-letters into sync_errors."""
    writers: dict[str, list[AssetKey]] = {table: [] for table in (*schema.ENTITY_TABLES, SYNC_ERRORS)}
    for connector in connectors:
        for entity in connector.entities:
            key = AssetKey([connector.name, entity.name])
            writers[entity.name].append(key)
            writers[SYNC_ERRORS].append(key)
    return writers


def tables_written_by(connector: Connector) -> list[AssetKey]:
    return [table_asset_key(table) for table in dict.fromkeys(e.name for e in connector.entities)] + [
        table_asset_key(SYNC_ERRORS)
    ]


def table_specs(connectors: tuple[Connector, ...]) -> list[AssetSpec]:
    kind = warehouse_kind()
    specs = []
    for table, writers in writers_by_table(connectors).items():
        feeds = ", ".join(sorted({key.path[0] for key in writers}))
        what = "Records that failed to transform or load" if table == SYNC_ERRORS else f"The unified `{table}` table"
        specs.append(
            AssetSpec(
                table_asset_key(table),
                group_name=WAREHOUSE_GROUP,
                kinds={kind, "table"},
                deps=writers,
                description=f"{what}, written by {feeds}. Its size per workspace is recorded after each sync.",
                metadata=table_metadata(table),
            )
        )
    return specs


def build_warehouse_assets(connectors: tuple[Connector, ...]) -> AssetsDefinition:
    writers = writers_by_table(connectors)

    @multi_asset(
        name="warehouse_tables",
        specs=table_specs(connectors),
        check_specs=[
            AssetCheckSpec(
                FRESHNESS_CHECK,
                asset=table_asset_key(table),
                partitions_def=workspace_partitions,
                description="Warns when an active connection feeding this table has not completed a sync lately.",
            )
            for table in writers
        ],
        can_subset=True,
        partitions_def=workspace_partitions,
        required_resource_keys={"warehouse"},
        pool=WAREHOUSE_POOL,
    )
    def _tables(context: AssetExecutionContext) -> Iterator[MaterializeResult | AssetCheckResult]:
        warehouse: WarehouseResource = context.resources.warehouse
        workspace_id = context.partition_key
        synced = last_syncs(warehouse.engine, workspace_id)
        now, max_age = utcnow(), max_sync_age()
        for key in sorted(context.selected_asset_keys):
            table = key.path[-1]
            counts = warehouse.row_counts(table, workspace_id)
            live = "unresolved_rows" if table == SYNC_ERRORS else "live_rows"
            yield MaterializeResult(
                asset_key=key,
                metadata={
                    **TableMetadataSet(
                        table_name=qualified_table_name(table), row_count=counts.rows, partition_row_count=counts.rows
                    ),
                    live: counts.live,
                },
            )
            if AssetCheckKey(key, FRESHNESS_CHECK) not in context.selected_asset_check_keys:
                continue
            sources = {k.path[0] for k in writers[table]}
            yield freshness_result(key, {c: at for c, at in synced.items() if c in sources}, now, max_age)

    return _tables
