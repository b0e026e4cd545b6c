"""The event inbox: one row per (sender, event id), holding the first response for replays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.dialects import postgresql, sqlite

from huiyuan.db.tables import events


def claim_event(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert the event row; False if the (sender, id) is already there.

    On PostgreSQL a concurrent claim of the same id waits here until the first transaction ends,
    so a duplicate in flight never applies twice.
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(events)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["sender", "event_id"])
        .returning(events.c.event_id)
    )
    return conn.execute(stmt).first() is not None


def get_event(conn: Connection, sender: str, event_id: str) -> Row[Any] | None:
    query = select(events).where(events.c.sender == sender, events.c.event_id == event_id)
    return conn.execute(query).first()


def finish_event(conn: Connection, sender: str, event_id: str, values: dict[str, Any]) -> None:
    conn.execute(
        update(events)
        .where(events.c.sender == sender, events.c.event_id == event_id)
        .values(**values)
    )


def waiting_on(conn: Connection, keys: Sequence[str]) -> Sequence[Row[Any]]:
    """Deferred events waiting for any of these causes, oldest first, locked for applying."""
    query = (
        select(events)
        .where(events.c.status == "deferred", events.c.waiting_on.in_(keys))
        .order_by(events.c.occurred_at, events.c.received_at, events.c.event_id)
        .with_for_update()
    )
    return conn.execute(query).all()


def deferred_before(conn: Connection, received_before: Any, limit: int) -> Sequence[Row[Any]]:
    query = (
        select(events)
        .where(events.c.status == "deferred", events.c.received_at < received_before)
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
