"""lighter event and order indexes: what every order.paid writes, less of it

Every event writes an inbox row and every payment an order row; each index on them is written
with them. ``ix_orders_member_id`` repeats the first column of ``ix_orders_member_paid``
(member_id, paid_at), which serves every lookup by member, so it goes. ``ix_events_waiting_on``
only ever looks up deferred events (``waiting_on`` is set), so it becomes a partial index of
those: applied events, nearly all of them, no longer enter it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = sa.text("waiting_on IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_member_id"))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_waiting_on")
        batch_op.create_index(
            "ix_events_waiting_on",
            ["waiting_on", "occurred_at"],
            unique=False,
            postgresql_where=WAITING,
            sqlite_where=WAITING,
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_waiting_on")
        batch_op.create_index("ix_events_waiting_on", ["waiting_on", "occurred_at"], unique=False)
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_member_id"), ["member_id"], unique=False)
