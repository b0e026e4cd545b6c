"""Set-based statements for applying many ``order.paid`` events at once (``order_batch``).

Each function reads or writes the rows of many members with one statement (an ``executemany``
becomes multi-row ``INSERT … VALUES`` on both databases), so a batch of 500 orders costs a
handful of round trips instead of thousands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    String,
    bindparam,
    func,
    select,
    text,
    tuple_,
    update,
    values,
)
from sqlalchemy import column as sql_column

from huiyuan.db.tables import (
    enrollments,
    events,
    member_tiers,
    members,
    order_items,
    orders,
    point_accounts,
    point_entries,
    point_lots,
    point_txns,
    subscriptions,
)
from huiyuan.db.upsert import insert_ignore

_INSERT_TXNS = point_txns.insert().returning(point_txns.c.id, sort_by_parameter_order=True)
_INSERT_LOTS = point_lots.insert().returning(point_lots.c.id, sort_by_parameter_order=True)
_MOVE_PENDING = (
    update(point_accounts)
    .where(
        point_accounts.c.program_id == bindparam("p_program"),
        point_accounts.c.member_id == bindparam("p_member"),
    )
    .values(pending=point_accounts.c.pending + bindparam("d_pending"), updated_at=bindparam("p_at"))
)


def seen_events(conn: Connection, sender: str, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids the sender has used already (those replay, elsewhere)."""
    if not event_ids:
        return set()
    query = select(events.c.event_id).where(
        events.c.sender == sender, events.c.event_id.in_(list(event_ids))
    )
    return set(conn.scalars(query))


def lock_members(conn: Connection, member_ids: Iterable[str]) -> set[str]:
    """Lock the members' rows in id order (so two batches never wait for each other in a
    cycle); returns the ids that exist."""
    ids = sorted(set(member_ids))
    if not ids:
        return set()
    query = (
        select(members.c.member_id)
        .where(members.c.member_id.in_(ids))
        .order_by(members.c.member_id)
        .with_for_update()
    )
    return set(conn.scalars(query))


def enrollments_of(conn: Connection, member_ids: Iterable[str]) -> dict[str, set[str]]:
    ids = sorted(set(member_ids))
    found: dict[str, set[str]] = {}
    if ids:
        query = select(enrollments.c.member_id, enrollments.c.program_id).where(
            enrollments.c.member_id.in_(ids)
        )
        for member_id, program_id in conn.execute(query):
            found.setdefault(member_id, set()).add(program_id)
    return found


def existing_orders(conn: Connection, order_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(order_ids))
    if not ids:
        return set()
    return set(conn.scalars(select(orders.c.order_id).where(orders.c.order_id.in_(ids))))


def lock_waiting_keys(conn: Connection, keys: Iterable[str]) -> None:
    """The advisory locks of ``events_repo.lock_waiting_key``, for many keys in one statement
    (in key order). SQLite runs one writer at a time and needs none."""
    ordered = sorted(set(keys))
    if ordered and conn.dialect.name == "postgresql":
        conn.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) "
                "FROM (SELECT unnest(CAST(:keys AS text[])) AS k ORDER BY 1) AS ordered_keys"
            ),
            {"keys": ordered},
        )


def keys_waited_on(conn: Connection, keys: Iterable[str]) -> set[str]:
    """Which of these keys deferred events wait on."""
    ordered = sorted(set(keys))
    if not ordered:
        return set()
    query = select(events.c.waiting_on).where(
        events.c.status == "deferred", events.c.waiting_on.in_(ordered)
    )
    return {key for key in conn.scalars(query) if key is not None}


def lock_accounts(
    conn: Connection, pairs: Iterable[tuple[str, str]], at: datetime
) -> dict[tuple[str, str], int]:
    """Lock (creating empty ones first) the balance rows of these (program, member) pairs;
    returns what each has reserved."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    insert_ignore(
        conn,
        point_accounts,
        [
            {
                "program_id": program_id,
                "member_id": member_id,
                "available": 0,
                "pending": 0,
                "reserved": 0,
                "debt": 0,
                "updated_at": at,
            }
            for program_id, member_id in wanted
        ],
        ["program_id", "member_id"],
    )
    query = (
        select(point_accounts.c.program_id, point_accounts.c.member_id, point_accounts.c.reserved)
        .where(tuple_(point_accounts.c.program_id, point_accounts.c.member_id).in_(wanted))
        .order_by(point_accounts.c.program_id, point_accounts.c.member_id)
        .with_for_update()
    )
    return {(p, m): int(r) for p, m, r in conn.execute(query)}


def tiers_of(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    query = select(
        member_tiers.c.program_id, member_tiers.c.member_id, member_tiers.c.tier_id
    ).where(tuple_(member_tiers.c.program_id, member_tiers.c.member_id).in_(wanted))
    return {(p, m): str(t) for p, m, t in conn.execute(query) if t is not None}


def orders_before(conn: Connection, asks: Sequence[tuple[str, datetime]]) -> list[int]:
    """For each (member, moment): how many of the member's orders were paid before it."""
    if not asks:
        return []
    if conn.dialect.name != "postgresql":  # SQLite cannot name a VALUES list's columns
        return [
            int(
                conn.execute(
                    select(func.count()).where(orders.c.member_id == m, orders.c.paid_at < at)
                ).scalar_one()
            )
            for m, at in asks
        ]
    asked = values(
        sql_column("ask", Integer),
        sql_column("member_id", String),
        sql_column("at", DateTime(timezone=True)),
        name="asked",
    ).data([(i, m, at) for i, (m, at) in enumerate(asks)])
    count = (
        select(func.count())
        .where(orders.c.member_id == asked.c.member_id, orders.c.paid_at < asked.c.at)
        .scalar_subquery()
    )
    found = dict(conn.execute(select(asked.c.ask, count)).tuples().all())
    return [int(found[i]) for i in range(len(asks))]


def running_terms(conn: Connection, member_ids: Iterable[str]) -> Sequence[Any]:
    """Active, not yet used subscription terms of these members (``mark_used`` picks those in
    force at each order's time)."""
    ids = sorted(set(member_ids))
    if not ids:
        return []
    query = (
        select(
            subscriptions.c.id,
            subscriptions.c.member_id,
            subscriptions.c.program_id,
            subscriptions.c.plan_id,
            subscriptions.c.purchase_id,
            subscriptions.c.starts_at,
            subscriptions.c.ends_at,
        )
        .where(
            subscriptions.c.member_id.in_(ids),
            subscriptions.c.status == "active",
            subscriptions.c.benefit_used.is_(False),
        )
        .order_by(subscriptions.c.program_id, subscriptions.c.id)
    )
    return conn.execute(query).all()


def mark_terms_used(conn: Connection, term_ids: Iterable[int]) -> None:
    ids = sorted(set(term_ids))
    if ids:
        conn.execute(
            update(subscriptions).where(subscriptions.c.id.in_(ids)).values(benefit_used=True)
        )


def insert_txns(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert transactions; their ids in the order of ``rows``."""
    if not rows:
        return []
    return [int(i) for i in conn.scalars(_INSERT_TXNS, rows)]


def insert_lots(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    if not rows:
        return []
    return [int(i) for i in conn.scalars(_INSERT_LOTS, rows)]


def insert_entries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(point_entries.insert(), rows)


def add_pending(conn: Connection, moves: dict[tuple[str, str], int], at: datetime) -> None:
    if moves:
        conn.execute(
            _MOVE_PENDING,
            [
                {"p_program": p, "p_member": m, "d_pending": d, "p_at": at}
                for (p, m), d in sorted(moves.items())
            ],
        )


def insert_orders(
    conn: Connection, order_rows: list[dict[str, Any]], item_rows: list[dict[str, Any]]
) -> None:
    if order_rows:
        conn.execute(orders.insert(), order_rows)
    if item_rows:
        conn.execute(order_items.insert(), item_rows)


def insert_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Inbox rows with their final response. A duplicate id in flight makes this fail with a
    unique violation, and the batch is retried (``run_with_retry``), then replays it."""
    if rows:
        conn.execute(events.insert(), rows)
