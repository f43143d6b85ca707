"""Revision 0011: homes (store/homes.py, docs/homes.md).

In the metabase: which home each account lives in (``user_homes``), and the state front ends share (rate-limit
buckets, ACME challenges and certificates, service leases). In every database: whether its copy of an account takes
writes (``users.home_state``), and the keyed digests of mail received, so a sender's retry after a lost reply is
stored once (``received_digests``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("home_state", sa.Text(), nullable=False, server_default="active"))
    op.create_table(
        "user_homes",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("home", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default="active"),
        sa.Column("changed_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_user_homes_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_homes"),
    )
    op.create_index("ix_user_homes_home", "user_homes", ["home"])
    op.create_table(
        "rate_buckets",
        sa.Column("bucket", sa.LargeBinary(), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name="pk_rate_buckets"),
    )
    op.create_index("ix_rate_buckets_updated", "rate_buckets", ["updated"])
    op.create_table(
        "acme_challenges",
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("key_authorization", sa.Text(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token", name="pk_acme_challenges"),
    )
    op.create_table(
        "acme_certificates",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("chain_pem", sa.LargeBinary(), nullable=False),
        sa.Column("key_pem", sa.LargeBinary(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_acme_certificates"),
    )
    op.create_table(
        "service_leases",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("until_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_service_leases"),
    )
    op.create_table(
        "received_digests",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("key_base", sa.Text(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_received_digests_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "digest", name="pk_received_digests"),
    )
    op.create_index("ix_received_digests_received_ms", "received_digests", ["received_ms"])


def downgrade() -> None:
    op.drop_index("ix_received_digests_received_ms", table_name="received_digests")
    op.drop_table("received_digests")
    op.drop_table("service_leases")
    op.drop_table("acme_certificates")
    op.drop_table("acme_challenges")
    op.drop_index("ix_rate_buckets_updated", table_name="rate_buckets")
    op.drop_table("rate_buckets")
    op.drop_index("ix_user_homes_home", table_name="user_homes")
    op.drop_table("user_homes")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("home_state")
