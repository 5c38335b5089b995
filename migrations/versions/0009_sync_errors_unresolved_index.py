"""sync_errors: index on (workspace_id, resolved_at), for a workspace's unresolved dead letters

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_errors") as batch:
        batch.create_index("ix_sync_errors_workspace_id_resolved_at", ["workspace_id", "resolved_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sync_errors") as batch:
        batch.drop_index("ix_sync_errors_workspace_id_resolved_at")
