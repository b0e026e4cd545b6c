"""The group-commit queue (PostgreSQL): statements of ``services.group_commit``.

Every statement here but ``take`` and ``record`` runs on a connection in autocommit mode, so
each is its own transaction: the enqueued row is durable when ``enqueue`` returns. The
partition's lock is a session lock on (``LOCK_CLASS``, partition); requesters queue for it
(``lead_or_collect``, first come first served), and the one holding it leads until
``step_down``. The two-key form keeps these locks apart from the one-key waiting-key locks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, insert, select, text, update

from huiyuan.db.tables import event_queue as q

LOCK_CLASS = 0x4859_4743  # "HYGC"

_ENQUEUE = insert(q).returning(q.c.id)
_COLLECT = text(
    "SELECT o_state, o_status, o_body, o_replayed FROM huiyuan_collect(:cls, :part, :id)"
)
_LEAD_OR_COLLECT = text(
    "SELECT o_state, o_status, o_body, o_replayed FROM huiyuan_lead_or_collect(:cls, :part, :id)"
)
_TRY_LEAD = text("SELECT pg_try_advisory_lock(:cls, :part)")
_STEP_DOWN = text("SELECT pg_advisory_unlock(:cls, :part)")
_TAKE = (
    select(q)
    .where(q.c.part == bindparam("p_part"), q.c.status == "queued")
    .order_by(q.c.id)
    .limit(bindparam("p_limit"))
    .with_for_update()  # requesters whose rows these are wait on them (``collect``)
)
_RECORD = text(
    "WITH gone AS (DELETE FROM event_queue WHERE id = :remove) "
    "UPDATE event_queue AS q SET status = 'done', outcome_status = o.status, "
    "outcome_body = o.body, replayed = o.replayed "
    "FROM jsonb_to_recordset(CAST(:outcomes AS jsonb)) "
    "AS o(id bigint, status int, body jsonb, replayed boolean) "
    "WHERE q.id = o.id"
)
_REMOVE = delete(q).where(q.c.id == bindparam("p_id"))
_SOLO = (
    update(q)
    .where(q.c.id.in_(bindparam("p_ids", expanding=True)), q.c.status == "queued")
    .values(status="solo")
)


def enqueue(conn: Connection, inbox: dict[str, Any], part: int) -> int:
    """Queue an event: the columns its inbox row (``inbox``) will have, received now."""
    row = {name: value for name, value in inbox.items() if name in q.c}
    row.update(part=part, queued_at=inbox["received_at"], status="queued")
    return int(conn.execute(_ENQUEUE, row).scalar_one())


Outcome = tuple[int, dict[str, Any], bool]


def collect(conn: Connection, part: int, row_id: int) -> tuple[str, Outcome | None]:
    """The first look after queueing; see ``_answer``. Waits only while a leader holds this
    very row; ``"wait"`` means it was queued too late for the running batch."""
    return _answer(conn.execute(_COLLECT, {"cls": LOCK_CLASS, "part": part, "id": row_id}))


def lead_or_collect(conn: Connection, part: int, row_id: int) -> tuple[str, Outcome | None]:
    """Queue for the partition's lock (first come first served), then see ``_answer``."""
    params = {"cls": LOCK_CLASS, "part": part, "id": row_id}
    return _answer(conn.execute(_LEAD_OR_COLLECT, params))


def _answer(result: Any) -> tuple[str, Outcome | None]:
    """``("done", outcome)``: a leader applied the event (the row is deleted);
    ``("lead", None)``: the caller holds the partition's lock and leads; ``("solo" | "gone",
    None)``: the caller applies the event alone; ``("wait", None)``: see ``collect``."""
    found = result.one()
    if found.o_state == "done":
        return "done", (int(found.o_status), dict(found.o_body), bool(found.o_replayed))
    return str(found.o_state), None


def try_lead(conn: Connection, part: int) -> bool:
    return bool(conn.execute(_TRY_LEAD, {"cls": LOCK_CLASS, "part": part}).scalar_one())


def step_down(conn: Connection, part: int) -> None:
    conn.execute(_STEP_DOWN, {"cls": LOCK_CLASS, "part": part})


def take(conn: Connection, part: int, limit: int) -> Sequence[Row[Any]]:
    """The partition's queued events, oldest first (the leader's batch)."""
    return conn.execute(_TAKE, {"p_part": part, "p_limit": limit}).all()


def record(conn: Connection, outcomes: list[dict[str, Any]], remove: int | None = None) -> None:
    """Store each event's outcome (``id``, ``status``, ``body``, ``replayed``) on its row; the
    leader's own row, ``remove``, is deleted instead: the leader already has its outcome. One
    statement."""
    if outcomes or remove is not None:
        params = {"remove": remove, "outcomes": json.dumps(outcomes, separators=(",", ":"))}
        conn.execute(_RECORD, params)


def remove(conn: Connection, row_id: int) -> None:
    conn.execute(_REMOVE, {"p_id": row_id})


def set_solo(conn: Connection, row_ids: list[int]) -> None:
    """A batch failed: each of these events is applied alone, by its requester."""
    if row_ids:
        conn.execute(_SOLO, {"p_ids": row_ids})


def parts_with_work(conn: Connection) -> list[int]:
    return [int(p) for p in conn.scalars(select(q.c.part).where(q.c.status == "queued").distinct())]


def solo_before(conn: Connection, before: datetime, limit: int) -> Sequence[Row[Any]]:
    query = (
        select(q).where(q.c.status == "solo", q.c.queued_at < before).order_by(q.c.id).limit(limit)
    )
    return conn.execute(query).all()


def forget_done(conn: Connection, before: datetime) -> int:
    """Outcomes never collected (the requester went away): kept a while, then deleted."""
    result = conn.execute(delete(q).where(q.c.status == "done", q.c.queued_at < before))
    return int(result.rowcount or 0)
