"""Revision 0013: the store's change sequence (store/changes.py, docs/api.md "Changes since"), so a client that
has synced asks only for what changed since.

Every write to an account's objects takes the next number of ``users.store_seq`` and stamps it on the object
(``objects.seq``); a delete leaves a tombstone with its number (``object_tombstones``), kept for 30 days.
``users.tombstone_floor`` is the newest number of a forgotten tombstone: a client behind it lists everything again.
Existing objects are numbered here, per account, in the order they were created.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("store_seq", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("users", sa.Column("tombstone_floor", sa.BigInteger(), nullable=False, server_default="0"))
    # A plain ADD COLUMN with a default: a batch (table copy) on SQLite would drop ``objects``, and with foreign
    # keys on, every chunk by cascade. The code sets the number on every write; 0 is never one it gives.
    op.add_column("objects", sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE objects SET seq = (SELECT numbered.n FROM (SELECT id, ROW_NUMBER() OVER "
        "(PARTITION BY user_id ORDER BY id) AS n FROM objects) AS numbered WHERE numbered.id = objects.id)"
    )
    op.execute("UPDATE users SET store_seq = (SELECT COUNT(*) FROM objects WHERE objects.user_id = users.id)")
    op.create_index("ix_objects_user_id_seq", "objects", ["user_id", "seq"])
    op.create_table(
        "object_tombstones",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("deleted_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_object_tombstones_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "seq", name="pk_object_tombstones"),
    )
    op.create_index("ix_object_tombstones_deleted_ms", "object_tombstones", ["deleted_ms"])


def downgrade() -> None:
    op.drop_index("ix_object_tombstones_deleted_ms", table_name="object_tombstones")
    op.drop_table("object_tombstones")
    op.drop_index("ix_objects_user_id_seq", table_name="objects")
    op.drop_column("objects", "seq")
    op.drop_column("users", "tombstone_floor")
    op.drop_column("users", "store_seq")
