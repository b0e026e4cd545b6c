"""The group-commit queue (PostgreSQL): statements of ``services.group_commit``.

Every statement here but ``take`` and ``record`` runs on a connection in autocommit mode, so
each is its own transaction: the enqueued row is durable when ``enqueue`` returns. The
partition's lock is a session lock on (``LOCK_CLASS``, partition), its enqueue lock a
transaction lock on (``LOCK_CLASS`` + 1, partition) (see migration 0007); requesters queue for it
(``lead_or_collect``, first come first served), and the one holding it leads until
``step_down``. The two-key form keeps these locks apart from the one-key waiting-key locks.

A row whose requester does not wait (``waits`` false) is deleted by the batch that applies it;
if the event was refused, the refusal moves to ``event_outcomes`` in the same statement.
``event_queue_parts`` keeps, per partition, the newest id a leader took, so that ``enqueue``
can tell a requester how far behind its event is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, select, update

from huiyuan.db import driver
from huiyuan.db.tables import event_outcomes
from huiyuan.db.tables import event_queue as q
from huiyuan.db.types import as_json

LOCK_CLASS = 0x4859_4743  # "HYGC"

# A row of ``event_queue`` as ``take`` and ``solo_before`` give it (``db.driver``'s named
# tuples): its columns as attributes.
QueueRow = Any

_QUEUED_COLUMNS = ("sender", "event_id", "type", "member_id", "store_id", "occurred_at")
_ENQUEUE = "SELECT o_id, o_behind, o_lead FROM huiyuan_enqueue(%s, %s, %s::jsonb, %s, %s)"
_COLLECT = "SELECT o_state, o_status, o_body, o_replayed FROM huiyuan_collect(%s, %s, %s)"
_LEAD_OR_COLLECT = (
    "SELECT o_state, o_status, o_body, o_replayed FROM huiyuan_lead_or_collect(%s, %s, %s)"
)
_TRY_LEAD = "SELECT pg_try_advisory_lock(%s, %s)"
_STEP_DOWN = "SELECT huiyuan_step_down(%s, %s)"
_RELEASE = "SELECT pg_advisory_unlock(%s, %s)"
_TAKE = (
    select(q)
    .where(q.c.part == bindparam("p_part"), q.c.status == "queued")
    .order_by(q.c.id)
    .limit(bindparam("p_limit"))
    .with_for_update()  # requesters whose rows these are wait on them (``collect``)
)
# Keep the outcome (``id``, ``status``, ``body``) of queued events nobody waits for in
# ``event_outcomes``, decided ``at`` (a resend refused again replaces the first refusal). A
# CTE of the statements below, which delete the same rows from the queue.
_SETTLE = (
    "settled AS (INSERT INTO event_outcomes AS e (sender, event_id, type, member_id, "
    "status, body, received_at, decided_at) "
    "SELECT q.sender, q.event_id, q.type, q.member_id, s.status, s.body, q.queued_at, "
    "CAST(%(at)s AS timestamptz) "
    "FROM event_queue AS q JOIN jsonb_to_recordset(CAST(%(settled)s AS jsonb)) "
    "AS s(id bigint, status int, body jsonb) ON q.id = s.id "
    "ON CONFLICT (sender, event_id) DO UPDATE SET status = EXCLUDED.status, "
    "body = EXCLUDED.body, received_at = EXCLUDED.received_at, "
    "decided_at = EXCLUDED.decided_at)"
)
_GONE = "DELETE FROM event_queue WHERE id = ANY(CAST(%(remove)s AS bigint[]))"
_FAIL = f"WITH {_SETTLE} {_GONE} RETURNING 1"
_RECORD = (
    f"WITH {_SETTLE}, gone AS ({_GONE}), "  # noqa: S608 (constants only)
    "upto AS (INSERT INTO event_queue_parts AS p (part, taken_upto) VALUES (%(part)s, %(upto)s) "
    "ON CONFLICT (part) DO UPDATE SET taken_upto = GREATEST(p.taken_upto, EXCLUDED.taken_upto)) "
    "UPDATE event_queue AS q SET status = 'done', outcome_status = o.status, "
    "outcome_body = o.body, replayed = o.replayed "
    "FROM jsonb_to_recordset(CAST(%(outcomes)s AS jsonb)) "
    "AS o(id bigint, status int, body jsonb, replayed boolean) "
    "WHERE q.id = o.id "
    "RETURNING 1"
)
_SOLO_BEFORE = (
    select(q)
    .where(q.c.status == "solo", q.c.queued_at < bindparam("p_before"))
    .order_by(q.c.id)
    .limit(bindparam("p_limit"))
)
_REMOVE = delete(q).where(q.c.id == bindparam("p_id"))
_SOLO = (
    update(q)
    .where(q.c.id.in_(bindparam("p_ids", expanding=True)), q.c.status == "queued")
    .values(status="solo")
)


def enqueue(
    conn: Connection, inbox: dict[str, Any], part: int, *, waits: bool = True, backlog: int = 0
) -> tuple[int, int, bool]:
    """Queue an event (``inbox``: the columns its inbox row will have, received now), one
    round trip. Returns its queue id; how far behind it is: how many ids were drawn since the
    newest one a leader of the partition took (every partition draws from one sequence, so
    this counts the other partitions' events too: an upper bound); and, for a requester that
    does not wait and is at most ``backlog`` behind, whether it took the partition's lock (it
    leads)."""
    row = {name: inbox[name] for name in _QUEUED_COLUMNS}
    row.update(body_hash=inbox["body_hash"], data=inbox["data"], queued_at=inbox["received_at"])
    found = driver.one(conn, _ENQUEUE, (LOCK_CLASS, part, as_json(row, "jsonb"), waits, backlog))
    return int(found[0]), int(found[1]), bool(found[2])


Outcome = tuple[int, dict[str, Any], bool]


def collect(conn: Connection, part: int, row_id: int) -> tuple[str, Outcome | None]:
    """The first look after queueing; see ``_answer``. Waits only while a leader holds this
    very row; ``"wait"`` means it was queued too late for the running batch."""
    return _answer(driver.one(conn, _COLLECT, (LOCK_CLASS, part, row_id)))


def lead_or_collect(conn: Connection, part: int, row_id: int) -> tuple[str, Outcome | None]:
    """Queue for the partition's lock (first come first served), then see ``_answer``."""
    return _answer(driver.one(conn, _LEAD_OR_COLLECT, (LOCK_CLASS, part, row_id)))


def _answer(found: Any) -> tuple[str, Outcome | None]:
    """``("done", outcome)``: a leader applied the event (the row is deleted);
    ``("lead", outcome or None)``: the caller holds the partition's lock and must lead — its
    own event is still queued, or (with its outcome) events were queued by requests that did
    not wait while it held the lock to collect; ``("solo" | "gone", None)``: the caller
    applies the event alone; ``("wait", None)``: see ``collect``."""
    if found.o_status is None:
        return str(found.o_state), None
    outcome = (int(found.o_status), dict(found.o_body), bool(found.o_replayed))
    return str(found.o_state), outcome


def try_lead(conn: Connection, part: int) -> bool:
    return bool(driver.one(conn, _TRY_LEAD, (LOCK_CLASS, part))[0])


def step_down(conn: Connection, part: int) -> bool:
    """Let the partition's lock go, then look once more: if events are queued (by requests
    that did not wait, having found a leader at work) and nobody took the lock meanwhile, the
    caller holds it again and must lead on (``True``)."""
    return bool(driver.one(conn, _STEP_DOWN, (LOCK_CLASS, part))[0])


def release(conn: Connection, part: int) -> None:
    """Let the partition's lock go without looking (the caller is failing)."""
    driver.one(conn, _RELEASE, (LOCK_CLASS, part))


def take(conn: Connection, part: int, limit: int) -> Sequence[QueueRow]:
    """The partition's queued events, oldest first (the leader's batch)."""
    return driver.rows(conn, _TAKE, {"p_part": part, "p_limit": limit})


def record(
    conn: Connection,
    part: int,
    upto: int,
    outcomes: list[dict[str, Any]],
    remove: list[int],
    settled: list[dict[str, Any]],
    at: datetime,
) -> None:
    """After a batch: store each waiting requester's outcome (``id``, ``status``, ``body``,
    ``replayed``) on its row; keep the refusals of events nobody waits for (``id``,
    ``status``, ``body``) in ``event_outcomes``, decided ``at``; delete the rows in ``remove``
    (the leader's own, and those of requesters that do not wait, these among them); note
    ``upto``, the newest id taken. One statement."""
    params = {
        "part": part,
        "upto": upto,
        "remove": remove,
        "outcomes": as_json(outcomes, "jsonb"),
        "settled": as_json(settled, "jsonb"),
        "at": at,
    }
    driver.rows(conn, _RECORD, params)


def remove(conn: Connection, row_id: int) -> None:
    conn.execute(_REMOVE, {"p_id": row_id})


def fail(conn: Connection, row: QueueRow, body: dict[str, Any], at: datetime) -> None:
    """An event that could not be applied, even alone: its failure (a 5xx problem) is kept
    like a refusal, so that its sender can see it (``find_outcome``), and its row goes — in
    one statement, as the leader's ``record`` does for refusals."""
    settled = [{"id": row.id, "status": int(body["status"]), "body": body}]
    params = {"settled": as_json(settled, "jsonb"), "remove": [row.id], "at": at}
    driver.rows(conn, _FAIL, params)


def find_outcome(conn: Connection, sender: str, event_id: str) -> Row[Any] | None:
    """The kept refusal or failure of an event sent without waiting."""
    return conn.execute(
        select(event_outcomes).where(
            event_outcomes.c.sender == sender, event_outcomes.c.event_id == event_id
        )
    ).first()


def forget_outcomes(conn: Connection, before: datetime) -> int:
    """Refusals kept long enough (``HUIYUAN_EVENT_OUTCOME_RETENTION_DAYS``)."""
    result = conn.execute(delete(event_outcomes).where(event_outcomes.c.decided_at < before))
    return int(result.rowcount or 0)


def set_solo(conn: Connection, row_ids: list[int]) -> None:
    """A batch failed: each of these events is applied alone, by its requester."""
    if row_ids:
        conn.execute(_SOLO, {"p_ids": row_ids})


def find(conn: Connection, sender: str, event_id: str) -> Row[Any] | None:
    """The newest queue row of an event not applied yet (or applied, its outcome waiting for
    a requester to collect it). No index: the queue is short — refusals of events nobody
    waits for leave it (``event_outcomes``, ``find_outcome``)."""
    query = select(q).where(q.c.sender == sender, q.c.event_id == event_id)
    return conn.execute(query.order_by(q.c.id.desc()).limit(1)).first()


def parts_with_work(conn: Connection, queued_before: datetime | None = None) -> list[int]:
    """Partitions with queued events (queued before ``queued_before``, if given)."""
    query = select(q.c.part).where(q.c.status == "queued")
    if queued_before is not None:
        query = query.where(q.c.queued_at < queued_before)
    return [int(p) for p in conn.scalars(query.distinct())]


def solo_before(conn: Connection, before: datetime, limit: int) -> Sequence[QueueRow]:
    """Solo events queued before ``before``, oldest first (``drain``)."""
    return driver.rows(conn, _SOLO_BEFORE, {"p_before": before, "p_limit": limit})


def forget_done(conn: Connection, before: datetime) -> int:
    """Outcomes never collected (the requester went away, or an earlier release's refusals):
    kept a while, then deleted."""
    result = conn.execute(delete(q).where(q.c.status == "done", q.c.queued_at < before))
    return int(result.rowcount or 0)
