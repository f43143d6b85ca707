"""Revision 0005: pending SRP logins in the database, so any front end can finish a login another started."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_logins",
        sa.Column("handle_hash", sa.LargeBinary(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("sealed_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("handle_hash", name="pk_pending_logins"),
    )
    op.create_index("ix_pending_logins_expires_ms", "pending_logins", ["expires_ms"])


def downgrade() -> None:
    op.drop_index("ix_pending_logins_expires_ms", table_name="pending_logins")
    op.drop_table("pending_logins")
