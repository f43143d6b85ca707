"""Revision 0006: each account's password KDF description (per-account Argon2id salt; docs/auth.md)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for every existing account: the original fixed-salt PBKDF2 rule, until the client upgrades it.
    op.add_column("users", sa.Column("kdf", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("kdf")
