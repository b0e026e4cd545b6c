"""event queue: events accepted without waiting for their outcome

A request may ask (``Prefer: respond-async``) to be answered once its event is durable, before
it is applied. Its queue row says nobody waits for it (``waits`` false): the leader deletes it
with the batch that applies it instead of storing an outcome to collect.

``event_queue_parts`` holds, per partition, the newest queue id a leader has taken. A request
that queues reads it in the same statement; far behind, it waits like a synchronous request
(back-pressure: events are not accepted faster than they are applied).

``huiyuan_enqueue`` queues an event in one round trip: the row, how far behind it is and, for
a request that does not wait, an attempt at the partition's lock.

Whoever lets the partition's lock go looks once more (``huiyuan_recheck``): events queued by
requests that did not wait (they found the lock taken) would otherwise stay queued. If there
are any and nobody else took the lock, the caller holds it again and leads on. Leaders do this
in ``huiyuan_step_down``; requesters that took the lock only to collect their outcome, in
``huiyuan_look`` (replacing 0006's). The look must see every event whose requester found the
lock taken, though that requester may not have committed yet: so each enqueue holds the
partition's *enqueue lock* (class + 1) shared until it commits, and the look first takes it
exclusively, waiting out the enqueues in flight.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from huiyuan.db.migrate import earlier_migration

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENQUEUE = """
CREATE FUNCTION huiyuan_enqueue(
    p_class integer, p_part integer, p_row jsonb, p_waits boolean, p_backlog bigint
)
RETURNS TABLE (o_id bigint, o_behind bigint, o_lead boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    new_id bigint;
    behind bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(p_class + 1, p_part);
    INSERT INTO event_queue (part, sender, event_id, type, member_id, store_id, occurred_at,
                             body_hash, data, queued_at, status, waits)
    SELECT p_part, r.sender, r.event_id, r.type, r.member_id, r.store_id, r.occurred_at,
           r.body_hash, r.data, r.queued_at, 'queued', p_waits
    FROM jsonb_populate_record(CAST(NULL AS event_queue), p_row) AS r
    RETURNING id INTO new_id;
    behind := new_id - coalesce(
        (SELECT p.taken_upto FROM event_queue_parts AS p WHERE p.part = p_part), 0);
    RETURN QUERY SELECT new_id, behind,
        CASE WHEN NOT p_waits AND behind <= p_backlog
             THEN pg_try_advisory_lock(p_class, p_part) ELSE false END;
END
$$
"""
RECHECK = """
CREATE FUNCTION huiyuan_recheck(p_class integer, p_part integer)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(p_class + 1, p_part);
    IF NOT EXISTS (
        SELECT 1 FROM event_queue AS q WHERE q.part = p_part AND q.status = 'queued'
    ) THEN
        RETURN false;
    END IF;
    RETURN pg_try_advisory_lock(p_class, p_part);
END
$$
"""
STEP_DOWN = """
CREATE FUNCTION huiyuan_step_down(p_class integer, p_part integer)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_unlock(p_class, p_part);
    RETURN huiyuan_recheck(p_class, p_part);
END
$$
"""
# 0006's ``huiyuan_look`` lets the lock go plainly; from 0007 it looks once more
# (``huiyuan_recheck``): if the caller holds the lock again, its state is 'lead' (with its
# outcome, if it was done).
_LOOK_LETS_GO = """
    IF p_locked AND found_state <> 'lead' THEN
        PERFORM pg_advisory_unlock(p_class, p_part);
    END IF;
"""
_LOOK_LOOKS_AGAIN = """
    IF p_locked AND found_state <> 'lead' THEN
        PERFORM pg_advisory_unlock(p_class, p_part);
        IF huiyuan_recheck(p_class, p_part) THEN
            found_state := 'lead';
        END IF;
    END IF;
"""


def _look_of_0006() -> str:
    """0006's ``huiyuan_look``, as ``CREATE OR REPLACE``."""
    module = earlier_migration("20261124_0006_event_queue_for_group_commit.py")
    (look,) = [f for f in module.FUNCTIONS if "FUNCTION huiyuan_look(" in f]
    return str(look).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def _look() -> str:
    """0007's ``huiyuan_look``: 0006's with the second look."""
    before = _look_of_0006()
    assert before.count(_LOOK_LETS_GO) == 1, "0006's huiyuan_look is not the one this amends"
    return before.replace(_LOOK_LETS_GO, _LOOK_LOOKS_AGAIN)


def upgrade() -> None:
    op.add_column(
        "event_queue",
        sa.Column("waits", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    op.create_table(
        "event_queue_parts",
        sa.Column("part", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("taken_upto", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("part", name=op.f("pk_event_queue_parts")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for function in (ENQUEUE, RECHECK, STEP_DOWN, _look()):
            op.execute(function)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_look_of_0006())
        op.execute("DROP FUNCTION huiyuan_step_down(integer, integer)")
        op.execute("DROP FUNCTION huiyuan_recheck(integer, integer)")
        op.execute("DROP FUNCTION huiyuan_enqueue(integer, integer, jsonb, boolean, bigint)")
    op.drop_table("event_queue_parts")
    op.drop_column("event_queue", "waits")
