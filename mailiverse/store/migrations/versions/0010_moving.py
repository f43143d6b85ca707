"""Revision 0010: moving house (store/moving.py, docs/moving.md): the moved state of an account (its new address,
when, until when its mail is forwarded, the log leaf of its moved record), the keys an account brought from the
appliance it moved from, and what of a moved account's mail was copied or forwarded."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("moved_to", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("moved_ms", sa.BigInteger(), nullable=True))
    op.add_column("users", sa.Column("forward_until_ms", sa.BigInteger(), nullable=True))
    op.add_column("users", sa.Column("moved_leaf_index", sa.BigInteger(), nullable=True))
    op.create_table(
        "brought_keys",
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_brought_keys_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key_id", name="pk_brought_keys"),
    )
    op.create_index("ix_brought_keys_user_id", "brought_keys", ["user_id"])
    op.create_table(
        "moved_mail",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_base", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("changed_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_moved_mail_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "key_base", name="pk_moved_mail"),
    )


def downgrade() -> None:
    op.drop_table("moved_mail")
    op.drop_index("ix_brought_keys_user_id", table_name="brought_keys")
    op.drop_table("brought_keys")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("moved_leaf_index")
        batch.drop_column("forward_until_ms")
        batch.drop_column("moved_ms")
        batch.drop_column("moved_to")
