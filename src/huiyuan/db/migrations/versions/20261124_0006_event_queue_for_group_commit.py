"""event queue for group commit: concurrent single events applied together

On PostgreSQL a single event is first written here (durable), then applied by its partition's
leader together with the events that arrived meanwhile (``services.group_commit``). Rows live
for milliseconds. The index on (part, id) leaves ``status`` out so that recording an outcome
is a heap-only update, and a low fill factor leaves room on each page for it.

On PostgreSQL, three small functions make the requester's waiting one round trip each (see
``FUNCTIONS`` and ``services.group_commit``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from huiyuan.db.types import UTCDateTime, json_type

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Each statement of a VOLATILE PL/pgSQL function takes a new snapshot, so what a function reads
# after waiting for a lock includes what the lock's holder committed.
#
# huiyuan_look: a requester's look at its row. Done — a leader applied it: delete the row and
# return the outcome. Still queued: 'lead' if the caller holds the partition's lock (it leads),
# else 'wait'. Solo or gone: say so. A caller holding the lock lets it go unless it leads.
# huiyuan_collect: the first look after queueing. With no leader at work, take the lock and look.
# Else wait while the leader holds this very row (it took it for its batch), then look.
# huiyuan_lead_or_collect: queue for the partition's lock, then look.
FUNCTIONS = [
    """
CREATE FUNCTION huiyuan_look(p_class integer, p_part integer, p_id bigint, p_locked boolean)
RETURNS TABLE (o_state text, o_status integer, o_body jsonb, o_replayed boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    done_status integer;
    done_body jsonb;
    done_replayed boolean;
    found_state text;
BEGIN
    DELETE FROM event_queue AS q WHERE q.id = p_id AND q.status = 'done'
        RETURNING q.outcome_status, q.outcome_body, q.replayed
        INTO done_status, done_body, done_replayed;
    IF FOUND THEN
        found_state := 'done';
    ELSE
        SELECT q.status INTO found_state FROM event_queue AS q WHERE q.id = p_id;
        found_state := coalesce(found_state, 'gone');
        IF found_state = 'queued' THEN
            found_state := CASE WHEN p_locked THEN 'lead' ELSE 'wait' END;
        END IF;
    END IF;
    IF p_locked AND found_state <> 'lead' THEN
        PERFORM pg_advisory_unlock(p_class, p_part);
    END IF;
    RETURN QUERY SELECT found_state, done_status, done_body, done_replayed;
END
$$
""",
    """
CREATE FUNCTION huiyuan_collect(p_class integer, p_part integer, p_id bigint)
RETURNS TABLE (o_state text, o_status integer, o_body jsonb, o_replayed boolean)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF pg_try_advisory_lock(p_class, p_part) THEN
        RETURN QUERY SELECT * FROM huiyuan_look(p_class, p_part, p_id, true);
        RETURN;
    END IF;
    PERFORM 1 FROM event_queue AS q WHERE q.id = p_id FOR SHARE;
    RETURN QUERY SELECT * FROM huiyuan_look(p_class, p_part, p_id, false);
END
$$
""",
    """
CREATE FUNCTION huiyuan_lead_or_collect(p_class integer, p_part integer, p_id bigint)
RETURNS TABLE (o_state text, o_status integer, o_body jsonb, o_replayed boolean)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_lock(p_class, p_part);
    RETURN QUERY SELECT * FROM huiyuan_look(p_class, p_part, p_id, true);
END
$$
""",
]
SIGNATURES = [
    "huiyuan_lead_or_collect(integer, integer, bigint)",
    "huiyuan_collect(integer, integer, bigint)",
    "huiyuan_look(integer, integer, bigint, boolean)",
]


def upgrade() -> None:
    op.create_table(
        "event_queue",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("data", json_type(), nullable=False),
        sa.Column("queued_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("outcome_status", sa.Integer(), nullable=True),
        sa.Column("outcome_body", json_type(), nullable=True),
        sa.Column("replayed", sa.Boolean(), nullable=True),
        sa.CheckConstraint(
            "status in ('queued', 'done', 'solo')", name=op.f("ck_event_queue_status")
        ),
        sa.CheckConstraint(
            "(status = 'done') = (outcome_status is not null)",
            name=op.f("ck_event_queue_outcome"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_queue")),
        postgresql_with={"fillfactor": 50},
    )
    op.create_index("ix_event_queue_part", "event_queue", ["part", "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for function in FUNCTIONS:
            op.execute(function)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for signature in SIGNATURES:
            op.execute(f"DROP FUNCTION {signature}")
    op.drop_index("ix_event_queue_part", table_name="event_queue")
    op.drop_table("event_queue")
