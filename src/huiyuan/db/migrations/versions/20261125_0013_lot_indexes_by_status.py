"""point lots: the expiry index holds active lots only; pending lots due for release get one

``ix_point_lots_expiry`` was ``(status, expires_at)`` over every lot, and the release job
(``release_due_lots``: pending lots whose return window has passed) had no index of its own:
it read the pending lots of every order not yet completed through that one and filtered them.
Both jobs ask for one status only, so each index now holds the lots of its status:

- ``ix_point_lots_expiry (expires_at) WHERE status = 'active'`` — the expiry and reminder
  jobs; a pending lot no longer gets an entry when an order is paid, nor a closed or expired
  one when it leaves;
- ``ix_point_lots_release (release_due_at) WHERE status = 'pending' AND release_due_at IS NOT
  NULL`` — the lots of completed orders waiting out their return window, the only ones the
  release job can release.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 06:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = sa.text("status = 'active'")
_DUE = sa.text("status = 'pending' AND release_due_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_point_lots_expiry", table_name="point_lots")
    op.create_index(
        "ix_point_lots_expiry",
        "point_lots",
        ["expires_at"],
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )
    op.create_index(
        "ix_point_lots_release",
        "point_lots",
        ["release_due_at"],
        postgresql_where=_DUE,
        sqlite_where=_DUE,
    )


def downgrade() -> None:
    op.drop_index("ix_point_lots_release", table_name="point_lots")
    op.drop_index("ix_point_lots_expiry", table_name="point_lots")
    op.create_index("ix_point_lots_expiry", "point_lots", ["status", "expires_at"])
