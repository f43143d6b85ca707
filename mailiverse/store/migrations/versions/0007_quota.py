"""Revision 0007: per-account storage quotas: the usage counter (computed here for existing accounts) and the quota."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("used_bytes", sa.BigInteger(), nullable=False, server_default=sa.text("0")))
    # NULL: the appliance default (--default-quota).
    op.add_column("users", sa.Column("quota_bytes", sa.BigInteger(), nullable=True))
    # In the migration's transaction, so no put or delete can come between the count and the column.
    op.execute(
        "UPDATE users SET used_bytes = COALESCE((SELECT SUM(objects.size) FROM objects"
        " WHERE objects.user_id = users.id), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("quota_bytes")
        batch.drop_column("used_bytes")
