"""point_entries: the index of a transaction's entries holds its member legs only

A transaction's entries are looked up (a replayed request's check, a history page, a refund's
restore) for the member's legs only; the other leg of every movement, the system account's,
was indexed for nothing. With the foreign key to ``point_txns`` checked per statement
(migration 0017), nothing else used it. Half the index, one index entry fewer per movement.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-25 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("point_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_point_entries_txn_member",
            ["txn_id"],
            unique=False,
            postgresql_where=sa.text("member_id IS NOT NULL"),
            sqlite_where=sa.text("member_id IS NOT NULL"),
        )
        batch_op.drop_index("ix_point_entries_txn_id")


def downgrade() -> None:
    with op.batch_alter_table("point_entries", schema=None) as batch_op:
        batch_op.create_index("ix_point_entries_txn_id", ["txn_id"], unique=False)
        batch_op.drop_index("ix_point_entries_txn_member")
