"""reviews: an index of photo reviews by SKU

Rules that reward only a SKU's first N photo reviews count that SKU's photo reviews on every
photo review; with no index on ``sku`` the count read the whole reviews table each time. The
index is partial: text-only reviews never need it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-25 07:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reviews_photos_of_sku",
            ["sku"],
            unique=False,
            postgresql_where=sa.text("has_photos IS true"),
            sqlite_where=sa.text("has_photos IS 1"),
        )


def downgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_reviews_photos_of_sku")
