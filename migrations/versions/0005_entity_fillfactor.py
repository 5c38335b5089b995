"""entity tables: fill factor 50, so re-synced rows are updated on their own page (HOT)

Revision ID: 0005
Revises: 0004

Applies to pages written from now on; a table's existing pages keep their layout until it is
rewritten (VACUUM FULL or CLUSTER). SQLite has no such setting.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTITY_TABLES = ("deals", "contacts", "accounts", "calls", "documents", "tasks")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ENTITY_TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ENTITY_TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
