"""the per-statement reference checks always probe the referenced key, row by row (PostgreSQL)

The three checks of migration 0017 (an order's member, an item's order, an entry's
transaction) are one anti-join of a statement's new rows against the referenced table, planned
once per connection and kept. Planned while that table was small, or looked small to the
statistics — a new installation before autovacuum analysed its first orders —, the plan read
the whole referenced table for every new row: a batch of 500 payments spent 30–115 ms on its
items' check against 1,000 orders, and more as orders grew, until the connection ended. Each
check function now plans with hash and merge joins, materialisation and sequential scans off
(for itself only), which leaves one plan: for each new row, one lookup of its key in the
referenced table's primary key, whatever the statistics say.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-25 15:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECKS = (
    "fk_orders_member_id_members",
    "fk_order_items_order_id_orders",
    "fk_point_entries_txn_id_point_txns",
)
_PLANS = ("enable_hashjoin", "enable_mergejoin", "enable_material", "enable_seqscan")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for check in _CHECKS:
        settings = " ".join(f"SET {name} = off" for name in _PLANS)
        op.execute(f"ALTER FUNCTION {check}() {settings}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for check in _CHECKS:
        op.execute(f"ALTER FUNCTION {check}() RESET ALL")
