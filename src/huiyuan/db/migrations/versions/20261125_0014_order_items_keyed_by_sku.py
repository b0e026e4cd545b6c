"""order items: keyed by (order_id, sku), one unique index instead of two

An order's lines were keyed by ``(order_id, line_no)`` and kept unique by ``(order_id,
sku)`` as well: two unique indexes, each checked on every line written. Everything that reads
or changes a line names it by SKU (refunds, reviews, paid-membership benefits); ``line_no``
only orders them. So the SKU is the key, and the ``line_no`` index goes: a paid order's lines
are written with one unique check each instead of two.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-25 06:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.drop_constraint("uq_order_items_order_sku", type_="unique")
        batch_op.drop_constraint("pk_order_items", type_="primary")
        batch_op.create_primary_key("pk_order_items", ["order_id", "sku"])


def downgrade() -> None:
    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.drop_constraint("pk_order_items", type_="primary")
        batch_op.create_primary_key("pk_order_items", ["order_id", "line_no"])
        batch_op.create_unique_constraint("uq_order_items_order_sku", ["order_id", "sku"])
