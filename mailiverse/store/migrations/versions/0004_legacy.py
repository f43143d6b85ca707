"""Revision 0004: the legacy Mailiverse protocol's pending sign-ups, mail blocks, MV store credentials
and captcha tokens."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legacy_pending",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("srp_salt", sa.LargeBinary(), nullable=False),
        sa.Column("srp_verifier", sa.LargeBinary(), nullable=False),
        sa.Column("key_block", sa.LargeBinary(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_legacy_pending"),
    )
    op.create_table(
        "legacy_mail_blocks",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("block", sa.Text(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_legacy_mail_blocks_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_legacy_mail_blocks"),
    )
    op.create_table(
        "legacy_store_credentials",
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_legacy_store_credentials_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key_id", name="pk_legacy_store_credentials"),
    )
    op.create_index("ix_legacy_store_credentials_name", "legacy_store_credentials", ["name"])
    op.create_index("ix_legacy_store_credentials_user_id", "legacy_store_credentials", ["user_id"])
    op.create_table(
        "legacy_captcha_tokens",
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("signup_used_ms", sa.BigInteger(), nullable=True),
        sa.Column("store_used_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_legacy_captcha_tokens"),
    )


def downgrade() -> None:
    op.drop_table("legacy_captcha_tokens")
    op.drop_index("ix_legacy_store_credentials_user_id", table_name="legacy_store_credentials")
    op.drop_index("ix_legacy_store_credentials_name", table_name="legacy_store_credentials")
    op.drop_table("legacy_store_credentials")
    op.drop_table("legacy_mail_blocks")
    op.drop_table("legacy_pending")
