"""sync launches: the API's launch outbox

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sync_launches",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=63), nullable=False),
        sa.Column("sync_id", sa.String(length=64), nullable=False),
        sa.Column("job_name", sa.String(length=64), nullable=False),
        sa.Column("asset_keys", JSON, nullable=True),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_sync_launches_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_sync_launches")),
    )
    with op.batch_alter_table("sync_launches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_launches_workspace_id_status"), ["workspace_id", "status"])
        batch_op.create_index(batch_op.f("ix_sync_launches_status_next_attempt_at"), ["status", "next_attempt_at"])


def downgrade() -> None:
    with op.batch_alter_table("sync_launches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_launches_status_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_sync_launches_workspace_id_status"))
    op.drop_table("sync_launches")
