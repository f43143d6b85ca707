"""Revision 0012: a second factor on top of SRP (docs/passkeys.md).

Account-level tables, in the metabase beside ``sessions`` and ``pending_logins``: an account's passkeys
(WebAuthn credentials: the id, the COSE public key, the signature counter), its recovery codes (keyed hashes
only, each usable once) and the logins that passed SRP and wait for their second factor (single-use handles
stored as hashes, with the WebAuthn challenge the browser was given and, for a login, the device and rate-limit
keys its failure was charged to).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "passkey_credentials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("transports", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_used_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_passkey_credentials_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_passkey_credentials"),
        sa.UniqueConstraint("credential_id", name="uq_passkey_credentials_credential_id"),
    )
    op.create_index("ix_passkey_credentials_user_id", "passkey_credentials", ["user_id"])
    op.create_table(
        "recovery_codes",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_recovery_codes_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "code_hash", name="pk_recovery_codes"),
    )
    op.create_table(
        "pending_second_factors",
        sa.Column("handle_hash", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("challenge", sa.LargeBinary(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default="{}"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_pending_second_factors_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("handle_hash", name="pk_pending_second_factors"),
    )
    op.create_index("ix_pending_second_factors_expires_ms", "pending_second_factors", ["expires_ms"])
    op.create_index("ix_pending_second_factors_user_id", "pending_second_factors", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_pending_second_factors_user_id", table_name="pending_second_factors")
    op.drop_index("ix_pending_second_factors_expires_ms", table_name="pending_second_factors")
    op.drop_table("pending_second_factors")
    op.drop_table("recovery_codes")
    op.drop_index("ix_passkey_credentials_user_id", table_name="passkey_credentials")
    op.drop_table("passkey_credentials")
