"""member-leg entry indexes: the system leg of a ledger entry is not looked up by member

Every points or wallet transaction writes two entries, the member's leg and a system account's
leg (``member_id`` null). ``ix_point_entries_member`` and ``ix_wallet_entries_member`` serve
lookups by (program, member, time) — a member's history and balance as of a moment — which
never ask for a null member. They become partial indexes of member legs: half the entries no
longer enter them, and every earning writes one index entry fewer.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 18:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MEMBER_LEG = sa.text("member_id IS NOT NULL")
INDEXES = (
    ("point_entries", "ix_point_entries_member"),
    ("wallet_entries", "ix_wallet_entries_member"),
)
COLUMNS = ["program_id", "member_id", "occurred_at"]


def upgrade() -> None:
    for table, index in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(index)
            batch_op.create_index(
                index, COLUMNS, unique=False, postgresql_where=MEMBER_LEG, sqlite_where=MEMBER_LEG
            )


def downgrade() -> None:
    for table, index in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(index)
            batch_op.create_index(index, COLUMNS, unique=False)
