"""Revision 0008: the alias directory: addresses as keyed hashes only (store/aliases.py), and the hashes of
the senders that have written to each alias; the screener for first-time senders (store/screener.py)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("public_id", sa.Text(), nullable=False),
        sa.Column("address_hash", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("senders", sa.Text(), nullable=False, server_default="any"),
        sa.Column("sealed_address", sa.LargeBinary(), nullable=True),
        sa.Column("label", sa.LargeBinary(), nullable=True),
        sa.Column("received", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_used_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_aliases_user_id_users", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_aliases"),
        sa.UniqueConstraint("address_hash", name="uq_aliases_address_hash"),
        sa.UniqueConstraint("public_id", name="uq_aliases_public_id"),
    )
    op.create_index("ix_aliases_user_id_created_ms", "aliases", ["user_id", "created_ms"])
    op.create_table(
        "alias_senders",
        sa.Column("alias_id", sa.Integer(), nullable=False),
        sa.Column("sender_hash", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alias_id"], ["aliases.id"], name="fk_alias_senders_alias_id_aliases", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("alias_id", "sender_hash", name="pk_alias_senders"),
    )
    op.add_column("users", sa.Column("screener", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "screened_senders",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("sender_hash", sa.LargeBinary(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_screened_senders_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "sender_hash", name="pk_screened_senders"),
    )
    op.create_table(
        "spent_stamps",
        sa.Column("stamp_hash", sa.LargeBinary(), nullable=False),
        sa.Column("spent_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stamp_hash", name="pk_spent_stamps"),
    )
    op.create_index("ix_spent_stamps_spent_ms", "spent_stamps", ["spent_ms"])


def downgrade() -> None:
    op.drop_index("ix_spent_stamps_spent_ms", table_name="spent_stamps")
    op.drop_table("spent_stamps")
    op.drop_table("screened_senders")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("screener")
    op.drop_table("alias_senders")
    op.drop_index("ix_aliases_user_id_created_ms", table_name="aliases")
    op.drop_table("aliases")
