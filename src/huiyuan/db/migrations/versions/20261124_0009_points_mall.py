"""points mall: redemptions of catalogue items, and what was sold of limited ones

A program document may list points-mall items (``points.mall``). Each redemption of an item is
kept (member, item, quantity, points, the ``redeem`` transaction that paid for it) so a
member's allowance can be counted; a limited item's sales are counted in one row per item.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from huiyuan.db.types import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mall_redemptions",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("redemption_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("txn_id", sa.BigInteger(), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="redeemed", nullable=False),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("stocked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.CheckConstraint("quantity > 0 and points > 0", name=op.f("ck_mall_redemptions_amounts")),
        sa.CheckConstraint(
            "status in ('redeemed', 'cancelled')", name=op.f("ck_mall_redemptions_status")
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["point_txns.id"], name=op.f("fk_mall_redemptions_txn_id_point_txns")
        ),
        sa.PrimaryKeyConstraint("program_id", "redemption_id", name=op.f("pk_mall_redemptions")),
    )
    op.create_index(
        "ix_mall_redemptions_member_item",
        "mall_redemptions",
        ["program_id", "member_id", "item_id"],
        unique=False,
    )
    op.create_table(
        "mall_stock",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("sold", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("sold >= 0", name=op.f("ck_mall_stock_non_negative")),
        sa.PrimaryKeyConstraint("program_id", "item_id", name=op.f("pk_mall_stock")),
    )


def downgrade() -> None:
    op.drop_table("mall_stock")
    op.drop_index("ix_mall_redemptions_member_item", table_name="mall_redemptions")
    op.drop_table("mall_redemptions")
