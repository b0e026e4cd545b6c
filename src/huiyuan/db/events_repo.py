"""The event inbox: one row per (sender, event id), holding the first response for replays."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from huiyuan.db import driver
from huiyuan.db.tables import events

# Built once: the hot path executes these with parameters instead of building statements.
_CLAIM = {
    name: dialect.insert(events)
    .on_conflict_do_nothing(index_elements=["sender", "event_id"])
    .returning(events.c.event_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_GET = select(events).where(
    events.c.sender == bindparam("p_sender"), events.c.event_id == bindparam("p_event_id")
)
_FINISH = (
    update(events)
    .where(events.c.sender == bindparam("p_sender"), events.c.event_id == bindparam("p_event_id"))
    .values(
        status=bindparam("status"),
        waiting_on=bindparam("waiting_on"),
        response_status=bindparam("response_status"),
        response_body=bindparam("response_body"),
        applied_at=bindparam("applied_at"),
    )
)


def claim_event(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert the event row; False if the (sender, id) is already there.

    On PostgreSQL a concurrent claim of the same id waits here until the first transaction ends,
    so a duplicate in flight never applies twice.
    """
    stmt = _CLAIM["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    return conn.execute(stmt, row).first() is not None


def get_event(conn: Connection, sender: str, event_id: str) -> Row[Any] | None:
    return conn.execute(_GET, {"p_sender": sender, "p_event_id": event_id}).first()


_SETTLE = (
    update(events)
    .where(events.c.sender == bindparam("p_sender"), events.c.event_id == bindparam("p_event_id"))
    .values(
        status=bindparam("status"),
        waiting_on=bindparam("waiting_on"),
        result=bindparam("result"),
        applied_at=bindparam("applied_at"),
    )
)


def settle_event(
    conn: Connection,
    sender: str,
    event_id: str,
    status: str,
    result: dict[str, Any],
    applied_at: Any = None,
    waiting_on: str | None = None,
) -> None:
    """Record what became of a deferred event. Its first response stays as it was, so a replay
    of the same id keeps answering what the first call answered."""
    conn.execute(
        _SETTLE,
        {
            "status": status,
            "waiting_on": waiting_on,
            "result": result,
            "applied_at": applied_at,
            "p_sender": sender,
            "p_event_id": event_id,
        },
    )


def finish_event(conn: Connection, sender: str, event_id: str, values: dict[str, Any]) -> None:
    """Record the event's status and response (every one of status, waiting_on,
    response_status, response_body and applied_at must be given)."""
    params = {"applied_at": None, **values, "p_sender": sender, "p_event_id": event_id}
    conn.execute(_FINISH, params)


_WAITING = (
    select(events)
    .where(
        events.c.waiting_on.in_(bindparam("p_keys", expanding=True)),
        events.c.status == "deferred",
    )
    .order_by(events.c.occurred_at, events.c.received_at, events.c.event_id)
    .with_for_update()
)


def waiting_on(conn: Connection, keys: Sequence[str]) -> Sequence[Row[Any]]:
    """Deferred events waiting for any of these causes, oldest first, locked for applying."""
    return conn.execute(_WAITING, {"p_keys": list(keys)}).all()


def deferred_before(conn: Connection, received_before: Any, limit: int) -> Sequence[Row[Any]]:
    query = (
        select(events)
        .where(
            events.c.status == "deferred",
            # Says the same (``ck_events_waiting``) in words the planner matches to the partial
            # index of deferred events; without it, every run read the whole inbox.
            events.c.waiting_on.is_not(None),
            events.c.received_at < received_before,
        )
        .order_by(events.c.received_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return conn.execute(query).all()


def events_of_member(conn: Connection, member_id: str, limit: int = 50) -> Sequence[Row[Any]]:
    query = (
        select(events)
        .where(events.c.member_id == member_id)
        .order_by(events.c.occurred_at.desc())
        .limit(limit)
    )
    return conn.execute(query).all()


_LOCK_KEYS = text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) "
    "FROM (SELECT unnest(CAST(:keys AS text[])) AS k ORDER BY 1) AS ordered_keys"
)


def lock_waiting_keys(conn: Connection, keys: Iterable[str]) -> None:
    """Hold a lock on each waiting key (``order:o1``) until the transaction ends, taken in key
    order so two transactions never wait for each other in a cycle.

    An event deferring on a key and the event satisfying it both take this lock, so the one that
    commits second always sees the other. SQLite runs one writer at a time and needs none.
    """
    ordered = sorted(set(keys))
    if ordered and conn.dialect.name == "postgresql":
        driver.one(conn, _LOCK_KEYS, {"keys": ordered})
