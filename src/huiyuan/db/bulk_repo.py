"""Set-based statements for applying many ``order.paid`` events at once (``order_batch``).

Each function reads the rows of many members with one statement, and ``write`` writes all a
batch brings in one more, so a batch costs the same dozen round trips whether it holds 3 orders
or 500 — which is what makes group commit (``services.group_commit``) pay off for small
batches too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

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
    orders,
    point_accounts,
    subscriptions,
)
from huiyuan.db.types import UTCDateTime, as_json
from huiyuan.db.upsert import insert_ignore

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
    return _lock_members(conn, sorted(set(member_ids)), skip_locked=False)


def lock_free_members(conn: Connection, member_ids: Iterable[str]) -> set[str]:
    """Lock the rows of those members that no other transaction holds, without waiting
    (``SKIP LOCKED``); returns the ids of the *busy* ones: they exist, but another transaction
    holds them. Members that do not exist are neither."""
    ids = sorted(set(member_ids))
    locked = _lock_members(conn, ids, skip_locked=True)
    missing = [i for i in ids if i not in locked]
    if not missing:
        return set()
    return set(
        conn.scalars(select(members.c.member_id).where(_among(conn, members.c.member_id, missing)))
    )


def _lock_members(conn: Connection, ids: list[str], *, skip_locked: bool) -> set[str]:
    if not ids:
        return set()
    query = (
        select(members.c.member_id)
        .where(_among(conn, members.c.member_id, ids))
        .order_by(members.c.member_id)
        .with_for_update(skip_locked=skip_locked)
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


def draw_ids(conn: Connection, counts: dict[Table, int]) -> dict[str, list[int]]:
    """Ids for new rows of these tables, by table name, drawn before the rows are built (rows
    of one table name rows of another). PostgreSQL draws them from the tables' sequences in
    one statement; SQLite, one writer at a time, continues from the largest id."""
    wanted = [(table, n) for table, n in counts.items() if n]
    found: dict[str, list[int]] = {table.name: [] for table in counts}
    if not wanted:
        return found
    if _is_pg(conn):
        columns = ", ".join(
            f"(SELECT array_agg(nextval(pg_get_serial_sequence(:t{i}, 'id'))) "  # noqa: S608
            f"FROM generate_series(1, :n{i}))"
            for i in range(len(wanted))
        )
        params: dict[str, Any] = {}
        for i, (table, n) in enumerate(wanted):
            params[f"t{i}"], params[f"n{i}"] = table.name, n
        row = conn.execute(text("SELECT " + columns), params).one()
        for (table, _), drawn in zip(wanted, row, strict=True):
            found[table.name] = [int(i) for i in drawn]
        return found
    for table, n in wanted:
        top = int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())
        found[table.name] = list(range(top + 1, top + 1 + n))
    return found


def write(
    conn: Connection,
    inserts: list[tuple[Table, list[dict[str, Any]]]],
    *,
    pending: dict[tuple[str, str], int],
    at: datetime,
    terms_used: set[int],
) -> None:
    """Everything a batch writes: new rows (tables in an order their references allow), the
    pending part of balances grown, paid-membership terms marked used.

    On PostgreSQL this is one statement of data-modifying CTEs, each table's rows sent as one
    JSON document and read with ``jsonb_populate_recordset`` (the table's own column types do
    the conversion): one round trip whatever the batch's size, and on the client one
    ``as_json`` instead of a conversion per value. On SQLite, in-process, ``executemany``."""
    inserts = [(table, rows) for table, rows in inserts if rows]
    for table, rows in inserts:
        unknown = set(rows[0]) - set(table.columns.keys())
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
        refuse_naive(table, rows)
    moves = sorted(pending.items())
    if not _is_pg(conn):
        for table, rows in inserts:
            conn.execute(table.insert(), rows)
        if moves:
            conn.execute(
                _MOVE_PENDING,
                [
                    {"p_program": p, "p_member": m, "d_pending": d, "p_at": at}
                    for (p, m), d in moves
                ],
            )
        if terms_used:
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id.in_(sorted(terms_used)))
                .values(benefit_used=True)
            )
        return
    parts: list[str] = []
    params: dict[str, Any] = {}
    for n, (table, rows) in enumerate(inserts):
        # Identifiers only, from the schema (checked above); every value is a parameter.
        names = ", ".join(f'"{c}"' for c in rows[0])
        parts.append(
            f"i{n} AS (INSERT INTO {table.name} ({names}) SELECT {names} "  # noqa: S608
            f"FROM jsonb_populate_recordset(CAST(NULL AS {table.name}), CAST(:r{n} AS jsonb)))"
        )
        params[f"r{n}"] = as_json(rows)
    if moves:
        parts.append(
            "moved AS (UPDATE point_accounts AS a SET pending = a.pending + m.d, "
            "updated_at = CAST(:at AS timestamptz) "
            "FROM jsonb_to_recordset(CAST(:moves AS jsonb)) AS m(p text, member text, d bigint) "
            "WHERE a.program_id = m.p AND a.member_id = m.member)"
        )
        params["at"] = at
        params["moves"] = as_json([{"p": p, "member": m, "d": d} for (p, m), d in moves])
    if terms_used:
        parts.append(
            "used AS (UPDATE subscriptions SET benefit_used = true "
            "WHERE id = ANY(CAST(:terms AS bigint[])))"
        )
        params["terms"] = sorted(terms_used)
    if parts:
        conn.execute(text("WITH " + ", ".join(parts) + " SELECT 1"), params)


# ---------------------------------------------------------------- helpers


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def refuse_naive(table: Table, rows: list[dict[str, Any]]) -> None:
    """As ``UTCDateTime`` refuses a naive instant when bound, for rows sent as JSON."""
    for column in table.columns:
        if isinstance(column.type, UTCDateTime) and column.name in rows[0]:
            name = column.name
            if any(r[name] is not None and r[name].tzinfo is None for r in rows):
                raise ValueError(f"{table.name}.{name}: naive datetime refused")
