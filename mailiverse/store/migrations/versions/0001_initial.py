"""Revision 0001: users, objects and object chunks."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _path_type() -> sa.types.TypeEngine[str]:
    # Frozen copy of schema.path_type(): byte-order comparison on PostgreSQL for prefix ranges.
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("envelope_format", sa.Text(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("legacy", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("srp_salt", sa.LargeBinary(), nullable=True),
        sa.Column("srp_verifier", sa.LargeBinary(), nullable=True),
        sa.Column("srp_group", sa.Text(), nullable=True),
        sa.Column("key_block", sa.LargeBinary(), nullable=True),
        sa.Column(
            "key_block_version",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "objects",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("path", _path_type(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_objects_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_objects"),
    )
    op.create_index("ix_objects_user_id_path", "objects", ["user_id", "path"], unique=True)
    op.create_index(
        "ix_objects_user_id_modified_ms_path",
        "objects",
        ["user_id", "modified_ms", "path"],
        unique=False,
    )
    op.create_table(
        "object_chunks",
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["objects.id"],
            name="fk_object_chunks_object_id_objects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("object_id", "seq", name="pk_object_chunks"),
    )


def downgrade() -> None:
    op.drop_table("object_chunks")
    op.drop_index("ix_objects_user_id_modified_ms_path", table_name="objects")
    op.drop_index("ix_objects_user_id_path", table_name="objects")
    op.drop_table("objects")
    op.drop_table("users")
