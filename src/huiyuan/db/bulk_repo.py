"""Set-based statements for applying many ``order.paid`` events at once (``order_batch``).

Each function reads or writes the rows of many members with one statement, so a batch of 500
orders costs a handful of round trips instead of thousands. On PostgreSQL new rows go in with
``COPY`` (ids drawn from the tables' sequences first), the cheapest way in for both the client
and the server; on SQLite, which runs in-process, with ``executemany``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    DateTime,
    Integer,
    String,
    Table,
    any_,
    bindparam,
    func,
    select,
    text,
    tuple_,
    update,
    values,
)
from sqlalchemy import column as sql_column

from huiyuan.db.points_repo import empty_account
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


def _among(
    conn: Connection, column: ColumnElement[Any], wanted: Sequence[str]
) -> ColumnElement[bool]:
    """``column IN wanted``: on PostgreSQL as ``= ANY(array)``, one statement text whatever
    the length (cached and prepared, not a new statement of 500 placeholders each time)."""
    if _is_pg(conn):
        return column == any_(bindparam(None, list(wanted), type_=ARRAY(String)))
    return column.in_(list(wanted))


def _pairs_among(
    conn: Connection,
    first: ColumnElement[Any],
    second: ColumnElement[Any],
    pairs: Sequence[tuple[str, str]],
) -> ColumnElement[bool]:
    if _is_pg(conn):
        listed = select(
            func.unnest(bindparam(None, [a for a, _ in pairs], type_=ARRAY(String))).label("a"),
            func.unnest(bindparam(None, [b for _, b in pairs], type_=ARRAY(String))).label("b"),
        ).subquery()
        return tuple_(first, second).in_(select(listed.c.a, listed.c.b))
    return tuple_(first, second).in_(list(pairs))


def seen_events(conn: Connection, sender: str, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids the sender has used already (those replay, elsewhere)."""
    if not event_ids:
        return set()
    query = select(events.c.event_id).where(
        events.c.sender == sender, _among(conn, events.c.event_id, event_ids)
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
        .where(_among(conn, members.c.member_id, ids))
        .order_by(members.c.member_id)
        .with_for_update()
    )
    return set(conn.scalars(query))


def enrollments_of(conn: Connection, member_ids: Iterable[str]) -> dict[str, set[str]]:
    ids = sorted(set(member_ids))
    found: dict[str, set[str]] = {}
    if ids:
        query = select(enrollments.c.member_id, enrollments.c.program_id).where(
            _among(conn, enrollments.c.member_id, ids)
        )
        for member_id, program_id in conn.execute(query):
            found.setdefault(member_id, set()).add(program_id)
    return found


def existing_orders(conn: Connection, order_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(order_ids))
    if not ids:
        return set()
    return set(conn.scalars(select(orders.c.order_id).where(_among(conn, orders.c.order_id, ids))))


def keys_waited_on(conn: Connection, keys: Iterable[str]) -> set[str]:
    """Which of these keys deferred events wait on (``events_repo.lock_waiting_keys`` first)."""
    ordered = sorted(set(keys))
    if not ordered:
        return set()
    query = select(events.c.waiting_on).where(
        events.c.status == "deferred", _among(conn, events.c.waiting_on, ordered)
    )
    return {key for key in conn.scalars(query) if key is not None}


def lock_accounts(
    conn: Connection, pairs: Iterable[tuple[str, str]], at: datetime
) -> dict[tuple[str, str], int]:
    """Lock (creating empty ones first) the balance rows of these (program, member) pairs;
    returns what each has reserved."""
    wanted = sorted(set(pairs))
    found = _lock_accounts(conn, wanted)
    missing = [pair for pair in wanted if pair not in found]
    if missing:
        insert_ignore(
            conn,
            point_accounts,
            [empty_account(program_id, member_id, at) for program_id, member_id in missing],
            ["program_id", "member_id"],
        )
        found.update(_lock_accounts(conn, missing))
    return found


def _lock_accounts(conn: Connection, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    if not pairs:
        return {}
    query = (
        select(point_accounts.c.program_id, point_accounts.c.member_id, point_accounts.c.reserved)
        .where(_pairs_among(conn, point_accounts.c.program_id, point_accounts.c.member_id, pairs))
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
    ).where(_pairs_among(conn, member_tiers.c.program_id, member_tiers.c.member_id, wanted))
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
    found = {ask: number for ask, number in conn.execute(select(asked.c.ask, count))}
    return [int(found[i]) for i in range(len(asks))]


def terms_of(conn: Connection, member_ids: Iterable[str]) -> Sequence[Any]:
    """The members' paid-membership terms that were not refunded, in ``mark_used`` order
    (program, id): the caller picks those in force at each order's time."""
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
            subscriptions.c.status,
            subscriptions.c.benefit_used,
            subscriptions.c.starts_at,
            subscriptions.c.ends_at,
        )
        .where(_among(conn, subscriptions.c.member_id, ids), subscriptions.c.status != "refunded")
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
    if _is_pg(conn):
        return _copy_with_ids(conn, point_txns, rows)
    return [int(i) for i in conn.scalars(_INSERT_TXNS, rows)]


def insert_lots(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    if not rows:
        return []
    if _is_pg(conn):
        return _copy_with_ids(conn, point_lots, rows)
    return [int(i) for i in conn.scalars(_INSERT_LOTS, rows)]


def insert_entries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    _insert(conn, point_entries, rows)


def add_pending(conn: Connection, moves: dict[tuple[str, str], int], at: datetime) -> None:
    if not moves:
        return
    ordered = sorted(moves.items())
    if _is_pg(conn):
        conn.execute(
            text(
                "UPDATE point_accounts AS a SET pending = a.pending + m.d, updated_at = :at "
                "FROM unnest(CAST(:programs AS text[]), CAST(:members AS text[]), "
                "CAST(:deltas AS bigint[])) AS m(p, member, d) "
                "WHERE a.program_id = m.p AND a.member_id = m.member"
            ),
            {
                "at": at,
                "programs": [p for (p, _), _ in ordered],
                "members": [m for (_, m), _ in ordered],
                "deltas": [d for _, d in ordered],
            },
        )
        return
    conn.execute(
        _MOVE_PENDING,
        [{"p_program": p, "p_member": m, "d_pending": d, "p_at": at} for (p, m), d in ordered],
    )


def insert_orders(
    conn: Connection, order_rows: list[dict[str, Any]], item_rows: list[dict[str, Any]]
) -> None:
    _insert(conn, orders, order_rows)
    _insert(conn, order_items, item_rows)


def insert_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Inbox rows with their final response. A duplicate id in flight makes this fail with a
    unique violation, and the batch is retried (``run_with_retry``), then replays it."""
    _insert(conn, events, rows)


# ---------------------------------------------------------------- bulk writing


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if _is_pg(conn):
        _copy(conn, table, rows)
    else:
        conn.execute(table.insert(), rows)


_NEXT_IDS = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")


def _copy_with_ids(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Draw ids from the table's sequence, then COPY the rows with them."""
    ids = [int(i) for i in conn.scalars(_NEXT_IDS, {"table": table.name, "n": len(rows)})]
    _copy(conn, table, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)])
    return ids


def _copy(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """COPY the rows into the table, inside the connection's transaction. Values go as
    PostgreSQL reads them: instants must carry a zone (as ``UTCDateTime`` requires), and JSON
    documents are sent as ``jsonb``."""
    columns = list(rows[0])
    known = set(table.columns.keys())
    unknown = set(columns) - known
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
    for row in rows:
        for column in columns:
            value = row[column]
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError("naive datetime refused: store instants with a zone")
    names = ", ".join(f'"{c}"' for c in columns)
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([_copyable(row[c]) for c in columns])


def _copyable(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict | list) else value
