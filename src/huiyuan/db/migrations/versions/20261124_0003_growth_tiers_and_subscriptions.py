"""growth, tiers and subscriptions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 06:55:12.542418
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from huiyuan.db.types import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "growth_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=True),
        sa.Column("config_version", sa.Integer(), nullable=True),
        sa.Column("idem_key", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("reason_zh", sa.String(length=300), nullable=False),
        sa.Column("reason_en", sa.String(length=300), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_growth_entries_non_zero")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_growth_entries")),
        sa.UniqueConstraint("program_id", "idem_key", name="uq_growth_entries_idem"),
    )
    with op.batch_alter_table("growth_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_growth_entries_member", ["program_id", "member_id", "occurred_at"], unique=False
        )
        batch_op.create_index("ix_growth_entries_order", ["program_id", "order_id"], unique=False)

    op.create_table(
        "subscriptions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("purchase_id", sa.String(length=64), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("benefit_used", sa.Boolean(), nullable=False),
        sa.Column("reminded_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status in ('active', 'refunded', 'expired')", name=op.f("ck_subscriptions_status")
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_subscriptions_period")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("program_id", "purchase_id", name="uq_subscriptions_purchase"),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriptions_member", ["program_id", "member_id", "ends_at"], unique=False
        )

    op.create_table(
        "tier_gifts",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("tier_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("granted_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "program_id", "member_id", "tier_id", "period", name=op.f("pk_tier_gifts")
        ),
    )
    op.create_table(
        "tier_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("from_tier", sa.String(length=64), nullable=True),
        sa.Column("to_tier", sa.String(length=64), nullable=False),
        sa.Column("cause", sa.String(length=24), nullable=False),
        sa.Column("metric_value", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_history")),
    )
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tier_history_member", ["program_id", "member_id", "id"], unique=False
        )

    op.create_table(
        "member_tiers",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("tier_id", sa.String(length=64), nullable=False),
        sa.Column("reached_at", UTCDateTime(), nullable=False),
        sa.Column("growth_total", sa.BigInteger(), nullable=False),
        sa.Column("next_check_at", UTCDateTime(), nullable=True),
        sa.Column("override_tier", sa.String(length=64), nullable=True),
        sa.Column("override_mode", sa.String(length=8), nullable=True),
        sa.Column("override_ends_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "override_mode is null or override_mode in ('floor', 'fixed')",
            name=op.f("ck_member_tiers_override_mode"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_member_tiers_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", "member_id", name=op.f("pk_member_tiers")),
    )
    with op.batch_alter_table("member_tiers", schema=None) as batch_op:
        batch_op.create_index("ix_member_tiers_check", ["next_check_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("member_tiers", schema=None) as batch_op:
        batch_op.drop_index("ix_member_tiers_check")

    op.drop_table("member_tiers")
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.drop_index("ix_tier_history_member")

    op.drop_table("tier_history")
    op.drop_table("tier_gifts")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_member")

    op.drop_table("subscriptions")
    with op.batch_alter_table("growth_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_growth_entries_order")
        batch_op.drop_index("ix_growth_entries_member")

    op.drop_table("growth_entries")
