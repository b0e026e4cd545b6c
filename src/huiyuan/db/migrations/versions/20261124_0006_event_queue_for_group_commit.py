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
# huiyuan_settle: with the partition's lock held, collect the row if a leader applied it (and
# let the lock go), keep the lock if it is still queued (the caller leads), or let the lock go
# and say why not (solo, gone).
# huiyuan_collect: the first look after queueing. With no leader at work, settle. Else wait
# while the leader holds this very row (it took it for its batch), then collect it; or, if the
# row was queued too late for that batch, answer 'wait'.
# huiyuan_lead_or_collect: queue for the partition's lock, then settle.
FUNCTIONS = [
    """
CREATE FUNCTION huiyuan_settle(p_class integer, p_part integer, p_id bigint)
RETURNS TABLE (o_state text, o_status integer, o_body jsonb, o_replayed boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    done_row record;
    found_state text;
BEGIN
    DELETE FROM event_queue AS q WHERE q.id = p_id AND q.status = 'done'
        RETURNING q.outcome_status, q.outcome_body, q.replayed INTO done_row;
    IF FOUND THEN
        PERFORM pg_advisory_unlock(p_class, p_part);
        RETURN QUERY SELECT 'done'::text, done_row.outcome_status, done_row.outcome_body,
            done_row.replayed;
        RETURN;
    END IF;
    SELECT q.status INTO found_state FROM event_queue AS q WHERE q.id = p_id;
    IF found_state = 'queued' THEN
        RETURN QUERY SELECT 'lead'::text, NULL::integer, NULL::jsonb, NULL::boolean;
        RETURN;
    END IF;
    PERFORM pg_advisory_unlock(p_class, p_part);
    RETURN QUERY SELECT coalesce(found_state, 'gone'), NULL::integer, NULL::jsonb,
        NULL::boolean;
END
$$
""",
    """
CREATE FUNCTION huiyuan_collect(p_class integer, p_part integer, p_id bigint)
RETURNS TABLE (o_state text, o_status integer, o_body jsonb, o_replayed boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    done_row record;
    found_state text;
BEGIN
    IF pg_try_advisory_lock(p_class, p_part) THEN
        RETURN QUERY SELECT * FROM huiyuan_settle(p_class, p_part, p_id);
        RETURN;
    END IF;
    PERFORM 1 FROM event_queue AS q WHERE q.id = p_id FOR SHARE;
    DELETE FROM event_queue AS q WHERE q.id = p_id AND q.status = 'done'
        RETURNING q.outcome_status, q.outcome_body, q.replayed INTO done_row;
    IF FOUND THEN
        RETURN QUERY SELECT 'done'::text, done_row.outcome_status, done_row.outcome_body,
            done_row.replayed;
        RETURN;
    END IF;
    SELECT q.status INTO found_state FROM event_queue AS q WHERE q.id = p_id;
    RETURN QUERY SELECT CASE coalesce(found_state, 'gone') WHEN 'queued' THEN 'wait'
        ELSE coalesce(found_state, 'gone') END, NULL::integer, NULL::jsonb, NULL::boolean;
END
$$
""",
    """
CREATE FUNCTION huiyuan_lead_or_collect(p_class integer, p_part integer, p_id bigint)
RETURNS TABLE (o_state text, o_status integer, o_body jsonb, o_replayed boolean)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_lock(p_class, p_part);
    RETURN QUERY SELECT * FROM huiyuan_settle(p_class, p_part, p_id);
END
$$
""",
]
SIGNATURES = [
    "huiyuan_lead_or_collect(integer, integer, bigint)",
    "huiyuan_collect(integer, integer, bigint)",
    "huiyuan_settle(integer, integer, bigint)",
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
