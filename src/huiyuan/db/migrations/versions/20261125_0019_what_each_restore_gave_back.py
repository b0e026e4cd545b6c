"""point_restores: what each restore gave back of which draw

A refund or cancellation that gives spent points back counted them on the draw
(``point_draws.restored``) only, so the liability report could price them only at the value
per point of the draw's own time, while the flow prices the give-back when it happened. A row
per give-back (restore transaction, draw, points) lets both price it the same, and
``huiyuan ledger reconcile`` checks that a draw's ``restored`` is the sum of its rows.

Give-backs recorded before this migration did not say which restore made them: each such draw
gets one row for all it gave back, naming the draw's own transaction, so the liability report
keeps pricing those at the draw's time, as it did.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-25 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "point_restores",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("txn_id", sa.BigInteger(), nullable=False),
        sa.Column("draw_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_point_restores_amount")),
        sa.ForeignKeyConstraint(
            ["draw_id"], ["point_draws.id"], name=op.f("fk_point_restores_draw_id_point_draws")
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["point_txns.id"], name=op.f("fk_point_restores_txn_id_point_txns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_restores")),
    )
    with op.batch_alter_table("point_restores", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_point_restores_draw_id"), ["draw_id"], unique=False)
    op.execute(
        "INSERT INTO point_restores (txn_id, draw_id, amount) "
        "SELECT txn_id, id, restored FROM point_draws WHERE restored > 0 ORDER BY id"
    )


def downgrade() -> None:
    with op.batch_alter_table("point_restores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_point_restores_draw_id"))
    op.drop_table("point_restores")
