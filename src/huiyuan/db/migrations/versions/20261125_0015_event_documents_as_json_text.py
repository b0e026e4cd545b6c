"""events: the body, response and result as ``json`` text instead of ``jsonb`` (PostgreSQL)

The inbox keeps each event's body and the response it got to give them back whole (a replay,
the events API, a deferred event's later application); nothing searches inside them. As
``jsonb`` every write converted both documents to the binary form — about a quarter of the
cost of writing an inbox row of a batch (``bench/README.md``). As ``json`` PostgreSQL only
checks the text. SQLite keeps JSON text either way: nothing to do there.

Upgrading rewrites the table under an exclusive lock: on a large inbox, plan for it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25 07:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("data", "response_body", "result")


def _retype(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    kind = sa.JSON() if to == "json" else postgresql.JSONB()
    before = postgresql.JSONB() if to == "json" else sa.JSON()
    with op.batch_alter_table("events", schema=None) as batch_op:
        for column in _COLUMNS:
            batch_op.alter_column(
                column, type_=kind, existing_type=before, postgresql_using=f"{column}::{to}"
            )


def upgrade() -> None:
    _retype("json")


def downgrade() -> None:
    _retype("jsonb")
