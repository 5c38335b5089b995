"""sync_errors: one open dead letter per record (a unique index over the unresolved rows)

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_DEAD_LETTER = "resolved_at IS NULL AND source_id IS NOT NULL"


def upgrade() -> None:
    # Earlier versions wrote a dead letter per failed read: keep the newest open one of each record.
    op.execute(
        f"""
        DELETE FROM sync_errors WHERE {OPEN_DEAD_LETTER} AND id NOT IN (
            SELECT max(id) FROM sync_errors WHERE {OPEN_DEAD_LETTER}
            GROUP BY workspace_id, connector, entity, source_id
        )
        """
    )
    op.create_index(
        "ux_sync_errors_open_record",
        "sync_errors",
        ["workspace_id", "connector", "entity", "source_id"],
        unique=True,
        postgresql_where=sa.text(OPEN_DEAD_LETTER),
        sqlite_where=sa.text(OPEN_DEAD_LETTER),
    )


def downgrade() -> None:
    op.drop_index("ux_sync_errors_open_record", table_name="sync_errors")
