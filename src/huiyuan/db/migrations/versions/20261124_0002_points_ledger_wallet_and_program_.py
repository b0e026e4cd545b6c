"""points ledger, wallet and program versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 06:33:17.699520
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from huiyuan.db.types import UTCDateTime, json_type

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "budget_purchases",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("purchase_id", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("paid_fen", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "points > 0 and paid_fen >= 0", name=op.f("ck_budget_purchases_amounts")
        ),
        sa.PrimaryKeyConstraint("program_id", "purchase_id", name=op.f("pk_budget_purchases")),
    )
    with op.batch_alter_table("budget_purchases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_budget_purchases_store_id"), ["store_id"], unique=False
        )

    op.create_table(
        "budget_slices",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("slice", sa.Integer(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("remaining >= 0", name=op.f("ck_budget_slices_non_negative")),
        sa.PrimaryKeyConstraint("program_id", "store_id", "slice", name=op.f("pk_budget_slices")),
    )
    op.create_table(
        "point_lots",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("clawed", sa.BigInteger(), nullable=False),
        sa.Column("absorbed", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("rule_id", sa.String(length=64), nullable=True),
        sa.Column("txn_id", sa.BigInteger(), nullable=False),
        sa.Column("earned_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("release_due_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("reminded_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status in ('pending', 'active', 'cancelled', 'expired', 'closed')",
            name=op.f("ck_point_lots_status"),
        ),
        sa.CheckConstraint(
            "amount > 0 and remaining >= 0 and remaining <= amount",
            name=op.f("ck_point_lots_bounds"),
        ),
        sa.CheckConstraint(
            "clawed >= 0 and clawed <= amount and absorbed >= 0 and absorbed <= clawed",
            name=op.f("ck_point_lots_clawed"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_lots")),
    )
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.create_index("ix_point_lots_expiry", ["status", "expires_at"], unique=False)
        batch_op.create_index(
            "ix_point_lots_member",
            ["program_id", "member_id", "status", "expires_at"],
            unique=False,
        )
        batch_op.create_index("ix_point_lots_order", ["order_id"], unique=False)

    op.create_table(
        "point_reservations",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("reservation_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("txn_id", sa.BigInteger(), nullable=True),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "status in ('held', 'captured', 'released', 'expired')",
            name=op.f("ck_point_reservations_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_point_reservations_amount")),
        sa.PrimaryKeyConstraint("program_id", "reservation_id", name=op.f("pk_point_reservations")),
    )
    with op.batch_alter_table("point_reservations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_point_reservations_expiry", ["status", "expires_at"], unique=False
        )
        batch_op.create_index(
            "ix_point_reservations_order", ["program_id", "order_id"], unique=False
        )

    op.create_table(
        "point_txns",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("idem_key", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("rule_id", sa.String(length=64), nullable=True),
        sa.Column("config_version", sa.Integer(), nullable=True),
        sa.Column("reason_zh", sa.String(length=300), nullable=False),
        sa.Column("reason_en", sa.String(length=300), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_txns")),
        sa.UniqueConstraint("program_id", "idem_key", name="uq_point_txns_idem"),
    )
    with op.batch_alter_table("point_txns", schema=None) as batch_op:
        batch_op.create_index(
            "ix_point_txns_member", ["program_id", "member_id", "id"], unique=False
        )

    op.create_table(
        "signins",
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("business_day", sa.Date(), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("streak", sa.Integer(), nullable=False),
        sa.CheckConstraint("streak >= 1", name=op.f("ck_signins_streak")),
        sa.PrimaryKeyConstraint("member_id", "business_day", name=op.f("pk_signins")),
    )
    op.create_table(
        "wallet_payments",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("principal", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("refunded_principal", sa.BigInteger(), nullable=False),
        sa.Column("refunded_bonus", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "principal >= 0 and bonus >= 0 and principal + bonus > 0",
            name=op.f("ck_wallet_payments_amounts"),
        ),
        sa.CheckConstraint(
            "refunded_principal between 0 and principal and refunded_bonus between 0 and bonus",
            name=op.f("ck_wallet_payments_refund_bound"),
        ),
        sa.PrimaryKeyConstraint("program_id", "payment_id", name=op.f("pk_wallet_payments")),
    )
    with op.batch_alter_table("wallet_payments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wallet_payments_member_id"), ["member_id"], unique=False
        )

    op.create_table(
        "wallet_recharges",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("recharge_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("bonus_taken_back", sa.BigInteger(), nullable=False),
        sa.Column("recharged_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "principal > 0 and bonus >= 0", name=op.f("ck_wallet_recharges_amounts")
        ),
        sa.CheckConstraint(
            "refunded between 0 and principal and bonus_taken_back between 0 and bonus",
            name=op.f("ck_wallet_recharges_refund_bound"),
        ),
        sa.PrimaryKeyConstraint("program_id", "recharge_id", name=op.f("pk_wallet_recharges")),
    )
    with op.batch_alter_table("wallet_recharges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wallet_recharges_member_id"), ["member_id"], unique=False
        )

    op.create_table(
        "wallet_txns",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("idem_key", sa.String(length=200), nullable=False),
        sa.Column("ref_id", sa.String(length=64), nullable=True),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("principal", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=True),
        sa.Column("reason_zh", sa.String(length=300), nullable=False),
        sa.Column("reason_en", sa.String(length=300), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_txns")),
        sa.UniqueConstraint("program_id", "idem_key", name="uq_wallet_txns_idem"),
    )
    with op.batch_alter_table("wallet_txns", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wallet_txns_member", ["program_id", "member_id", "id"], unique=False
        )

    op.create_table(
        "point_draws",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("txn_id", sa.BigInteger(), nullable=False),
        sa.Column("lot_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("restored", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "amount > 0 and restored >= 0 and restored <= amount",
            name=op.f("ck_point_draws_bounds"),
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["point_lots.id"], name=op.f("fk_point_draws_lot_id_point_lots")
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["point_txns.id"], name=op.f("fk_point_draws_txn_id_point_txns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_draws")),
    )
    with op.batch_alter_table("point_draws", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_point_draws_lot_id"), ["lot_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_point_draws_txn_id"), ["txn_id"], unique=False)

    op.create_table(
        "point_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("txn_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=True),
        sa.Column("account", sa.String(length=80), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("lot_id", sa.BigInteger(), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(account = 'member') = (member_id is not null)",
            name=op.f("ck_point_entries_member_leg"),
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_point_entries_non_zero")),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["point_txns.id"], name=op.f("fk_point_entries_txn_id_point_txns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_entries")),
    )
    with op.batch_alter_table("point_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_point_entries_member", ["program_id", "member_id", "occurred_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_point_entries_txn_id"), ["txn_id"], unique=False)

    op.create_table(
        "wallet_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("txn_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=True),
        sa.Column("account", sa.String(length=80), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(account = 'member') = (member_id is not null)",
            name=op.f("ck_wallet_entries_member_leg"),
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_wallet_entries_non_zero")),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["wallet_txns.id"], name=op.f("fk_wallet_entries_txn_id_wallet_txns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_entries")),
    )
    with op.batch_alter_table("wallet_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wallet_entries_member", ["program_id", "member_id", "occurred_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_wallet_entries_txn_id"), ["txn_id"], unique=False)

    op.create_table(
        "point_accounts",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("debt", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "available >= 0 and pending >= 0 and reserved >= 0 and debt >= 0",
            name=op.f("ck_point_accounts_non_negative"),
        ),
        sa.CheckConstraint(
            "reserved <= available", name=op.f("ck_point_accounts_reserved_covered")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_point_accounts_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", "member_id", name=op.f("pk_point_accounts")),
    )
    op.create_table(
        "program_versions",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", json_type(), nullable=False),
        sa.Column("effective_from", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.CheckConstraint("version > 0", name=op.f("ck_program_versions_version")),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_program_versions_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", "version", name=op.f("pk_program_versions")),
    )
    op.create_table(
        "wallet_accounts",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("recharged_total", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "principal >= 0 and bonus >= 0 and recharged_total >= 0",
            name=op.f("ck_wallet_accounts_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_wallet_accounts_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", "member_id", name=op.f("pk_wallet_accounts")),
    )


def downgrade() -> None:
    op.drop_table("wallet_accounts")
    op.drop_table("program_versions")
    op.drop_table("point_accounts")
    with op.batch_alter_table("wallet_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wallet_entries_txn_id"))
        batch_op.drop_index("ix_wallet_entries_member")

    op.drop_table("wallet_entries")
    with op.batch_alter_table("point_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_point_entries_txn_id"))
        batch_op.drop_index("ix_point_entries_member")

    op.drop_table("point_entries")
    with op.batch_alter_table("point_draws", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_point_draws_txn_id"))
        batch_op.drop_index(batch_op.f("ix_point_draws_lot_id"))

    op.drop_table("point_draws")
    with op.batch_alter_table("wallet_txns", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_txns_member")

    op.drop_table("wallet_txns")
    with op.batch_alter_table("wallet_recharges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wallet_recharges_member_id"))

    op.drop_table("wallet_recharges")
    with op.batch_alter_table("wallet_payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wallet_payments_member_id"))

    op.drop_table("wallet_payments")
    op.drop_table("signins")
    with op.batch_alter_table("point_txns", schema=None) as batch_op:
        batch_op.drop_index("ix_point_txns_member")

    op.drop_table("point_txns")
    with op.batch_alter_table("point_reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_point_reservations_order")
        batch_op.drop_index("ix_point_reservations_expiry")

    op.drop_table("point_reservations")
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.drop_index("ix_point_lots_order")
        batch_op.drop_index("ix_point_lots_member")
        batch_op.drop_index("ix_point_lots_expiry")

    op.drop_table("point_lots")
    op.drop_table("budget_slices")
    with op.batch_alter_table("budget_purchases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_budget_purchases_store_id"))

    op.drop_table("budget_purchases")
