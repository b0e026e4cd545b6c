"""benefit grants: benefits held for a time outside tier and plan (points exchanged for them)

A points-mall item may exchange points for a benefit of the catalog for some days
(``points.mall[].benefit``). Each such grant is a row: the benefit, its member, where it came
from (``mall:<redemption id>``) and its period.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 21:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from huiyuan.db.types import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "benefit_grants",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("benefit_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_benefit_grants_period")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benefit_grants")),
        sa.UniqueConstraint("program_id", "source", "benefit_id", name="uq_benefit_grants_source"),
    )
    op.create_index(
        "ix_benefit_grants_member",
        "benefit_grants",
        ["program_id", "member_id", "ends_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_benefit_grants_member", table_name="benefit_grants")
    op.drop_table("benefit_grants")
