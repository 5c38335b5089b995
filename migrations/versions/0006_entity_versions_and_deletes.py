"""entity tables: source_version (upserts never go back to an older version) and soft deletes

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTITY_TABLES = ("deals", "contacts", "accounts", "calls", "documents", "tasks")


def upgrade() -> None:
    for table in ENTITY_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("source_version", sa.BigInteger(), nullable=True))
            batch.add_column(sa.Column("is_deleted", sa.Boolean(), server_default=sa.false(), nullable=False))
            batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
            batch.add_column(sa.Column("merged_into", sa.String(length=255), nullable=True))


def downgrade() -> None:
    for table in ENTITY_TABLES:
        with op.batch_alter_table(table) as batch:
            for column in ("merged_into", "deleted_at", "is_deleted", "source_version"):
                batch.drop_column(column)
