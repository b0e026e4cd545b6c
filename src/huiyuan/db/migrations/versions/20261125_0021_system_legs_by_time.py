"""point_entries: the system legs indexed by program and time, for the points flow

The flow report (``GET /v1/reports/points-flow``, ``huiyuan ledger flow``) sums a program's
system legs over the last months; with no index on time it read every entry of the ledger.
The index holds the system legs only (one per movement), in the order they are written.
Building it on a large ledger takes a while and blocks writes to ``point_entries``.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-25 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("point_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_point_entries_system_time",
            ["program_id", "occurred_at"],
            unique=False,
            postgresql_where=sa.text("member_id IS NULL"),
            sqlite_where=sa.text("member_id IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("point_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_point_entries_system_time")
