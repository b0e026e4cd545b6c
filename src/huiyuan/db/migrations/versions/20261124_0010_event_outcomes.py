"""event outcomes: refusals of events sent without waiting, kept apart from the queue

An event sent with ``Prefer: respond-async`` and refused (or failed) when a leader applied it
leaves nothing in the inbox; its refusal used to stay on its ``event_queue`` row for an hour.
It now moves to ``event_outcomes``, kept ``HUIYUAN_EVENT_OUTCOME_RETENTION_DAYS``: the queue a
leader scans stays small however long refusals are kept. Rows left on the queue by an earlier
release are moved too.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 21:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from huiyuan.db.types import UTCDateTime, json_type

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_outcomes",
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", json_type(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("status >= 400", name=op.f("ck_event_outcomes_status")),
        sa.PrimaryKeyConstraint("sender", "event_id", name=op.f("pk_event_outcomes")),
    )
    op.create_index("ix_event_outcomes_decided", "event_outcomes", ["decided_at"], unique=False)
    if op.get_bind().dialect.name != "postgresql":
        return  # the queue is PostgreSQL's only (group commit)
    # Refusals of events nobody waits for, kept on the queue by the previous release (the
    # latest of each event's, should it have been refused twice).
    op.execute(
        "INSERT INTO event_outcomes (sender, event_id, type, member_id, status, body, "
        "received_at, decided_at) "
        "SELECT DISTINCT ON (sender, event_id) sender, event_id, type, member_id, "
        "outcome_status, outcome_body, queued_at, queued_at FROM event_queue "
        "WHERE status = 'done' AND NOT waits AND outcome_status >= 400 "
        "ORDER BY sender, event_id, id DESC"
    )
    op.execute(
        "DELETE FROM event_queue WHERE status = 'done' AND NOT waits AND outcome_status >= 400"
    )


def downgrade() -> None:
    op.drop_index("ix_event_outcomes_decided", table_name="event_outcomes")
    op.drop_table("event_outcomes")
