"""purchase growth basis: the money a purchase growth entry was credited for

A refund takes purchase growth back in proportion to what completion actually credited growth
for — the order's paid amount net of the refunds recorded by then — so that a refund that
occurred before completion but arrived after it still takes back its share. Entries written
before this revision are given the basis the old rule assumed (refunds dated up to the
completion counted as known), which is what they were credited for unless a refund came late.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = """
UPDATE growth_entries SET basis_fen = (
    SELECT orders.amount - COALESCE((
        SELECT SUM(refunds.amount) FROM refunds
        WHERE refunds.order_id = orders.order_id AND refunds.refunded_at <= orders.completed_at
    ), 0)
    FROM orders WHERE orders.order_id = growth_entries.order_id
)
WHERE kind = 'purchase'
"""


def upgrade() -> None:
    with op.batch_alter_table("growth_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("basis_fen", sa.BigInteger(), nullable=True))
    op.execute(BACKFILL)
    # A purchase entry whose order is not recorded (Huiyuan never writes one) cannot be refunded:
    # a basis of 0 takes nothing back.
    op.execute(
        "UPDATE growth_entries SET basis_fen = 0 WHERE kind = 'purchase' AND basis_fen IS NULL"
    )
    with op.batch_alter_table("growth_entries", schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f("ck_growth_entries_purchase_basis"),
            "kind <> 'purchase' OR (basis_fen IS NOT NULL AND basis_fen >= 0)",
        )


def downgrade() -> None:
    with op.batch_alter_table("growth_entries", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_growth_entries_purchase_basis"), type_="check")
        batch_op.drop_column("basis_fen")
