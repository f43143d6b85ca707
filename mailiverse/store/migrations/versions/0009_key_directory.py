"""Revision 0009: the key directory and its transparency log (store/keylog.py): the log's leaves and signed
heads, each key's latest record and the address hashes it serves, group and organisation keys with their
private halves wrapped to members, and each domain's policies."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_log",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name="pk_key_log"),
    )
    op.create_table(
        "key_log_heads",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name="pk_key_log_heads"),
    )
    op.create_table(
        "key_groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("local", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_key_groups_owner_id_users", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_key_groups"),
        sa.UniqueConstraint("local", name="uq_key_groups_local"),
    )
    op.create_table(
        "key_records",
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_key_records_user_id_users", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["group_id"], ["key_groups.id"], name="fk_key_records_group_id_key_groups", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("key_id", name="pk_key_records"),
    )
    op.create_index("ix_key_records_user_id", "key_records", ["user_id"])
    op.create_table(
        "key_bindings",
        sa.Column("address_hash", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["key_records.key_id"], name="fk_key_bindings_key_id_key_records", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("address_hash", "key_id", name="pk_key_bindings"),
    )
    op.create_table(
        "key_group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["key_groups.id"], name="fk_key_group_members_group_id_key_groups", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_key_group_members_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", "key_id", name="pk_key_group_members"),
    )
    op.create_index("ix_key_group_members_user_id", "key_group_members", ["user_id"])
    op.create_table(
        "domain_policies",
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("officers", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["key_groups.id"], name="fk_domain_policies_group_id_key_groups", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("domain", "seq", name="pk_domain_policies"),
    )


def downgrade() -> None:
    op.drop_table("domain_policies")
    op.drop_index("ix_key_group_members_user_id", table_name="key_group_members")
    op.drop_table("key_group_members")
    op.drop_table("key_bindings")
    op.drop_index("ix_key_records_user_id", table_name="key_records")
    op.drop_table("key_records")
    op.drop_table("key_groups")
    op.drop_table("key_log_heads")
    op.drop_table("key_log")
