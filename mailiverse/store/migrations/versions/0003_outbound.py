"""Revision 0003: the persistent outbound queue (encrypted message bodies, per-recipient status)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbound_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("queue_id", sa.Text(), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("mail_from", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbound_messages"),
        sa.UniqueConstraint("queue_id", name="uq_outbound_messages_queue_id"),
    )
    op.create_table(
        "outbound_recipients",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("status_code", sa.Text(), nullable=True),
        sa.Column("remote_host", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["outbound_messages.id"],
            name="fk_outbound_recipients_message_id_outbound_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_outbound_recipients"),
    )
    op.create_index(
        "ix_outbound_recipients_status_next_attempt_ms",
        "outbound_recipients",
        ["status", "next_attempt_ms"],
        unique=False,
    )
    op.create_index(
        "ix_outbound_recipients_message_id",
        "outbound_recipients",
        ["message_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_outbound_recipients_message_id", table_name="outbound_recipients")
    op.drop_index("ix_outbound_recipients_status_next_attempt_ms", table_name="outbound_recipients")
    op.drop_table("outbound_recipients")
    op.drop_table("outbound_messages")
