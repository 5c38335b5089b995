"""The Alembic migrations build exactly the schema the code declares (resources/schema.py)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from resources import schema


def test_migrated_database_matches_the_declared_schema(warehouse):
    with warehouse.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert differences == []


def test_entity_tables_are_migrated_with_the_declared_fill_factor(warehouse):
    with warehouse.connect() as conn:
        options = dict(
            conn.execute(
                text("SELECT relname, reloptions FROM pg_class WHERE relkind = 'r' AND relname = ANY(:names)"),
                {"names": list(schema.ENTITY_TABLES)},
            ).all()
        )
    expected = [f"fillfactor={schema.ENTITY_FILLFACTOR}"]
    assert options == {name: expected for name in schema.ENTITY_TABLES}
