"""Set-based statements for applying many ``order.paid`` events at once (``order_batch``).

Each function reads the rows of many members with one statement, and ``write`` writes all a
batch brings in one more, so a batch costs the same dozen round trips whether it holds 3 orders
or 500 — which is what makes group commit (``services.group_commit``) pay off for small
batches too.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    Boolean,
    ColumnElement,
    Connection,
    Date,
    DateTime,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    func,
    literal_column,
    select,
    true,
    tuple_,
    update,
    values,
)
from sqlalchemy import column as sql_column
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

from huiyuan.db import driver
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
from huiyuan.db.types import matrix_literal, refuse_naive
from huiyuan.db.upsert import insert_ignore

_MOVE_PENDING = (
    update(point_accounts)
    .where(
        point_accounts.c.program_id == bindparam("p_program"),
        point_accounts.c.member_id == bindparam("p_member"),
    )
    .values(pending=point_accounts.c.pending + bindparam("d_pending"), updated_at=bindparam("p_at"))
)


def _keyed(
    pg: bool,
    query: Select[Any],
    columns: Sequence[ColumnElement[Any]],
    names: Sequence[str],
    order_by: Sequence[str] = (),
) -> Select[Any]:
    """``query`` restricted to the rows whose ``columns`` are one of the keys listed in the
    parameters ``names`` (a list each, or on SQLite the one parameter ``names[0]`` holding
    the keys: values, or tuples of values); ``order_by``: names of the query's columns the
    rows come in (on PostgreSQL, a lock taken by ``query`` is taken in the lists' order).

    On PostgreSQL the lists are arrays (one statement text whatever their length, prepared
    once) and each key is looked up on its own: the arrays ``unnest``-ed, joined ``LATERAL``
    to ``query``, which ``OFFSET 0`` keeps from being merged into the join — one probe of the
    index per key, a plan that does not depend on what the planner believes of the table.
    (With ``column = ANY(array)`` the event path's plan, made once per connection, read all
    of a sender's events for each batch once it was made while the table was small — a new
    installation whose tables had been analysed with a few rows, before a burst of orders —:
    20,000 rows, 11 ms per lookup instead of 0.07, growing with every batch until the next
    ``ANALYZE``.)"""
    if not pg:
        found = tuple_(*columns) if len(columns) > 1 else columns[0]
        return query.where(found.in_(bindparam(names[0], expanding=True)))
    keys = (
        func.unnest(*(bindparam(name, type_=ARRAY(String)) for name in names))
        .table_valued(*(f"k{i}" for i in range(len(names))))
        .render_derived("k")
    )
    each = (
        query.where(*(column == keys.c[f"k{i}"] for i, column in enumerate(columns)))
        .offset(literal_column("0"))
        .lateral("x")
    )
    return (
        select(*each.c)
        .select_from(keys)
        .join(each, true())
        .order_by(*(each.c[name] for name in order_by))
    )


def _pairs(conn: Connection, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The parameters of ``_keyed`` over ``_PAIRS``: on PostgreSQL an array of each side, on
    SQLite the pairs themselves in the first."""
    if _is_pg(conn):
        return {"firsts": [a for a, _ in pairs], "seconds": [b for _, b in pairs]}
    return {"firsts": list(pairs)}


_PAIRS = ("firsts", "seconds")

# Each statement is built once per dialect: building one costs more than running it does
# when a batch from group commit holds a handful of events.


@cache
def _members_locked(pg: bool, skip_locked: bool) -> Select[Any]:
    m = members.c
    query = select(m.member_id).with_for_update(skip_locked=skip_locked)
    if not pg:
        query = query.order_by(m.member_id)
    return _keyed(pg, query, [m.member_id], ["ids"])


@cache
def _members_existing(pg: bool) -> Select[Any]:
    return _keyed(pg, select(members.c.member_id), [members.c.member_id], ["ids"])


@cache
def _accounts_locked(pg: bool) -> Select[Any]:
    a = point_accounts.c
    query = select(a.program_id, a.member_id, a.reserved).with_for_update()
    if not pg:
        query = query.order_by(a.program_id, a.member_id)
    return _keyed(pg, query, [a.program_id, a.member_id], _PAIRS)


@cache
def _tiers(pg: bool) -> Select[Any]:
    t = member_tiers.c
    return _keyed(
        pg, select(t.program_id, t.member_id, t.tier_id), [t.program_id, t.member_id], _PAIRS
    )


# The columns of a term the set-based path reads; rows as the driver's named tuples.
Term = namedtuple(
    "Term",
    (
        "id",
        "member_id",
        "program_id",
        "plan_id",
        "purchase_id",
        "status",
        "benefit_used",
        "starts_at",
        "ends_at",
    ),
)
_TERM_COLUMNS: tuple[str, ...] = Term._fields


def _terms_among(name: str, pg: bool = True) -> Select[Any]:
    """The paid-membership terms, not refunded, of the members listed in parameter ``name``,
    in ``mark_used`` order (program, id)."""
    s = subscriptions.c
    query = select(*(s[column] for column in _TERM_COLUMNS)).where(s.status != "refunded")
    if not pg:
        query = query.order_by(s.program_id, s.id)
    return _keyed(pg, query, [s.member_id], [name], order_by=("program_id", "id") if pg else ())


@cache
def _terms(pg: bool) -> Select[Any]:
    return _terms_among("ids", pg)


def _term_of_json(term: dict[str, Any]) -> Any:
    """A term read as JSON (``_facts``) as the row ``terms_of`` would give."""
    return Term(
        **{
            **term,
            "starts_at": datetime.fromisoformat(term["starts_at"]),
            "ends_at": datetime.fromisoformat(term["ends_at"]),
        }
    )


def lock_members(
    conn: Connection, member_ids: Iterable[str], held: set[str] | None = None
) -> set[str]:
    """Lock the members' rows in id order (so two batches never wait for each other in a
    cycle); returns the ids that exist. ``held``: members this transaction locked already
    (``lock_free_members``), not asked for again; those locked here are added to it."""
    held = set() if held is None else held
    wanted = set(member_ids)
    locked = _lock_members(conn, sorted(wanted - held), skip_locked=False)
    held |= locked
    return locked | (wanted & held)


def lock_free_members(conn: Connection, member_ids: Iterable[str]) -> tuple[set[str], set[str]]:
    """Lock the rows of those members that no other transaction holds, without waiting
    (``SKIP LOCKED``); returns the ids locked, and those of the *busy* ones: they exist, but
    another transaction holds them. Members that do not exist are neither."""
    ids = sorted(set(member_ids))
    locked = _lock_members(conn, ids, skip_locked=True)
    missing = [i for i in ids if i not in locked]
    if not missing:
        return locked, set()
    found = driver.fetch(conn, _members_existing(_is_pg(conn)), {"ids": missing})
    return locked, {member_id for (member_id,) in found}


def _lock_members(conn: Connection, ids: list[str], *, skip_locked: bool) -> set[str]:
    if not ids:
        return set()
    found = driver.fetch(conn, _members_locked(_is_pg(conn), skip_locked), {"ids": ids})
    return {member_id for (member_id,) in found}


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """What deciding whether payments take the set-based path needs to know."""

    seen: set[str]  # event ids the sender used already (those replay, elsewhere)
    enrolled: dict[str, set[str]]  # each member's programs
    paid: set[str]  # order ids recorded already
    waited: set[str]  # keys deferred events wait on
    terms: Sequence[Any]  # the members' paid-membership terms (``terms_of``)


@cache
def _lookups(pg: bool) -> tuple[Select[Any], Select[Any], Select[Any], Select[Any]]:
    """The reads of ``payment_facts``: event ids the sender used already, the members'
    (member, program) enrollments, order ids recorded already, keys deferred events wait on."""
    e = events.c
    return (
        _keyed(
            pg,
            select(e.event_id).where(e.sender == bindparam("sender")),
            [e.event_id],
            ["event_ids"],
        ),
        _keyed(
            pg,
            select(enrollments.c.member_id, enrollments.c.program_id),
            [enrollments.c.member_id],
            ["member_ids"],
        ),
        _keyed(pg, select(orders.c.order_id), [orders.c.order_id], ["order_ids"]),
        _keyed(pg, select(e.waiting_on).where(e.status == "deferred"), [e.waiting_on], ["keys"]),
    )


@cache
def _facts() -> Select[Any]:
    """PostgreSQL: the four lookups and the members' terms in one statement, each lookup as an
    array (of pairs, for enrollments), the terms as JSON (one round trip less per batch:
    ``bench/README.md``)."""

    def listed(lookup: Select[Any]) -> Any:
        columns = list(lookup.selected_columns)
        value = columns[0] if len(columns) == 1 else postgresql.array(columns)
        empty: Any = literal_column("'{}'")  # an empty array, of the aggregate's type
        return lookup.with_only_columns(
            func.coalesce(func.array_agg(value), empty)
        ).scalar_subquery()

    seen, enrolled, paid, waited = (listed(lookup) for lookup in _lookups(True))
    found = _terms_among("member_ids").subquery("term")
    terms = (
        select(func.coalesce(func.json_agg(literal_column("term")), literal_column("'[]'")))
        .select_from(found)
        .scalar_subquery()
    )
    return select(
        seen.label("seen"),
        enrolled.label("enrolled"),
        paid.label("paid"),
        waited.label("waited"),
        terms.label("terms"),
    )


def payment_facts(
    conn: Connection,
    sender: str,
    event_ids: Iterable[str],
    member_ids: Iterable[str],
    order_ids: Iterable[str],
    keys: Iterable[str],
) -> PaymentFacts:
    """The facts of many payments, read after their members and waiting keys are locked
    (``events_repo.lock_waiting_keys``). On PostgreSQL one statement (a batch from group commit
    holds a handful of events, and a statement costs more than its rows); on SQLite one each."""
    params = {
        "sender": sender,
        "event_ids": sorted(set(event_ids)),
        "member_ids": sorted(set(member_ids)),
        "order_ids": sorted(set(order_ids)),
        "keys": sorted(set(keys)),
    }
    if _is_pg(conn):
        seen, pairs, paid, waited, listed_terms = driver.one(conn, _facts(), params)
        terms: Sequence[Any] = [_term_of_json(term) for term in listed_terms]
    else:
        seen_q, enrolled_q, paid_q, waited_q = _lookups(False)
        seen = conn.scalars(seen_q, params).all()
        pairs = conn.execute(enrolled_q, params).all()
        paid = conn.scalars(paid_q, params).all()
        waited = conn.scalars(waited_q, params).all()
        terms = terms_of(conn, params["member_ids"])
    enrolled: dict[str, set[str]] = {}
    for member_id, program_id in pairs:
        enrolled.setdefault(member_id, set()).add(program_id)
    return PaymentFacts(set(seen), enrolled, set(paid), {key for key in waited if key}, terms)


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
    found = driver.fetch(conn, _accounts_locked(_is_pg(conn)), _pairs(conn, pairs))
    return {(p, m): int(r) for p, m, r in found}


def tiers_of(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    found = driver.fetch(conn, _tiers(_is_pg(conn)), _pairs(conn, wanted))
    return {(p, m): str(t) for p, m, t in found if t is not None}


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
    return driver.fetch(conn, _terms(_is_pg(conn)), {"ids": ids})


def draw_ids(conn: Connection, counts: dict[Table, int]) -> dict[str, list[int]]:
    """Ids for new rows of these tables, by table name, drawn before the rows are built (rows
    of one table name rows of another). PostgreSQL draws them from the tables' sequences in
    one statement; SQLite, one writer at a time, continues from the largest id."""
    wanted = [(table, n) for table, n in counts.items() if n]
    found: dict[str, list[int]] = {table.name: [] for table in counts}
    if not wanted:
        return found
    if _is_pg(conn):
        # The sequence is looked up once per table and ``nextval`` given its oid (``OFFSET 0``
        # keeps the planner from folding the lookup into every call): by name, each call
        # looked the sequence up again, 2.1 µs an id against 0.3.
        columns = ", ".join(
            f"(SELECT array_agg(nextval(q.seq)) FROM (SELECT CAST("  # noqa: S608
            f"pg_get_serial_sequence(%(t{i})s, 'id') AS regclass) AS seq OFFSET 0) AS q, "
            f"generate_series(1, %(n{i})s)) AS t{i}"
            for i in range(len(wanted))
        )
        params: dict[str, Any] = {}
        for i, (table, n) in enumerate(wanted):
            params[f"t{i}"], params[f"n{i}"] = table.name, n
        row = driver.one(conn, "SELECT " + columns, params)
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

    On PostgreSQL this is one statement of data-modifying CTEs, each table's rows sent column
    by column, the columns of one element type as the rows of one two-dimensional array
    (``types.matrix_literal``) that ``unnest`` zips back into rows (``_write_sql``): one
    round trip whatever the batch's size, and on the client an orjson call per group of
    columns instead of a conversion per value. (Rows as one JSON document read
    by ``json_populate_recordset`` cost PostgreSQL two parses of the document, one when the
    parameter arrives and one to read it, and a lookup of every field by name: 12% of a
    batch's CPU, against 5% for the arrays; ``bench/README.md``.) On SQLite, in-process,
    ``executemany``."""
    inserts = [(table, rows) for table, rows in inserts if rows]
    for table, rows in inserts:
        unknown = set(rows[0]) - _column_names(table)
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
        # Rows of one width: one naming other columns then misses one of the first row's,
        # which fails by its name when the columns are gathered.
        width = len(rows[0])
        if any(len(row) != width for row in rows):
            raise ValueError(f"{table.name}: every row must name the same columns")
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
    params: dict[str, Any] = {}
    shape = []
    for n, (table, rows) in enumerate(inserts):
        names = tuple(rows[0])
        # One tuple per row (the columns in order), then one per column: both loops in C.
        columns = (
            list(zip(*map(itemgetter(*names), rows), strict=True))
            if len(names) > 1
            else [[row[names[0]] for row in rows]]
        )
        for g, (element, indexes) in enumerate(_groups(table, names)):
            params[f"r{n}_{g}"] = matrix_literal(
                [columns[i] for i in indexes], documents=element == "json"
            )
        shape.append((table, names))
    if moves:
        params["at"] = at
        params["move_p"] = [p for (p, _), _ in moves]
        params["move_m"] = [m for (_, m), _ in moves]
        params["move_d"] = [d for _, d in moves]
    if terms_used:
        params["terms"] = sorted(terms_used)
    if params:
        driver.one(conn, _write_sql(tuple(shape), bool(moves), bool(terms_used)), params)


@cache
def _write_sql(shape: tuple[tuple[Table, tuple[str, ...]], ...], moves: bool, terms: bool) -> str:
    """The statement of ``write`` for rows of these (table, columns), built once per shape.

    A table's columns of one element type travel as one two-dimensional array, a column to a
    row of it, cast once (``p``) and sliced back into columns for ``unnest``: a parameter a
    column made a statement of some ninety parameters and 5 KB, which psycopg does not cache
    its parsing of (over 50 parameters or 4 KB) — 0.34 ms of the client's CPU on every
    statement, more than all the rest of a four-event batch's write."""
    parts: list[str] = []
    for n, (table, columns) in enumerate(shape):
        # Identifiers only, from the schema (``write`` checked them); every value is a parameter.
        groups = _groups(table, columns)
        casts = ", ".join(
            f"CAST(%(r{n}_{g})s AS {element}[]) AS g{g}" for g, (element, _) in enumerate(groups)
        )
        where = {
            i: (g, k + 1) for g, (_, indexes) in enumerate(groups) for k, i in enumerate(indexes)
        }
        slices = ", ".join(
            f"p.g{where[i][0]}[{where[i][1]}:{where[i][1]}]" for i in range(len(columns))
        )
        names = ", ".join(f'"{c}"' for c in columns)
        parts.append(
            f"i{n} AS (INSERT INTO {table.name} ({names}) SELECT u.* "  # noqa: S608
            f"FROM (SELECT {casts}) AS p, unnest({slices}) AS u)"
        )
    if moves:
        # Arrays, not a JSON document: the planner knows how many rows ``unnest`` gives (or
        # counts 10), while it counts ``jsonb_to_recordset`` as 100 rows; against a program
        # of up to some 20,000 accounts that made every batch a hash join over all of them,
        # a sequential scan (0.4 ms at 5,000 accounts, 1.6 ms at 20,000) where a few
        # primary-key probes do.
        parts.append(
            "moved AS (UPDATE point_accounts AS a SET pending = a.pending + m.d, "
            "updated_at = CAST(%(at)s AS timestamptz) "
            "FROM unnest(CAST(%(move_p)s AS text[]), CAST(%(move_m)s AS text[]), "
            "CAST(%(move_d)s AS bigint[])) AS m(p, member, d) "
            "WHERE a.program_id = m.p AND a.member_id = m.member)"
        )
    if terms:
        parts.append(
            "used AS (UPDATE subscriptions SET benefit_used = true "
            "WHERE id = ANY(CAST(%(terms)s AS bigint[])))"
        )
    return "WITH " + ", ".join(parts) + " SELECT 1"


# ---------------------------------------------------------------- helpers


def _is_pg(conn: Connection) -> bool:
    return driver.is_pg(conn)


@cache
def _column_names(table: Table) -> frozenset[str]:
    return frozenset(table.columns.keys())


# The element type each kind of column travels as; PostgreSQL converts on insert (a text to
# a ``varchar(n)``, checking its length; a ``bigint`` to an ``integer``, checking its range).
_ELEMENTS: tuple[tuple[type[Any], str], ...] = (
    (String, "text"),
    (Integer, "bigint"),  # and BigInteger, a subclass
    (Boolean, "boolean"),
    (DateTime, "timestamptz"),
    (Date, "date"),
    (JSON, "json"),
)


@cache
def _groups(table: Table, columns: tuple[str, ...]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The columns (by position) grouped by the element type they travel as. Only scalar
    columns (and JSON documents) can be sent as ``array_literal`` text."""
    found: dict[str, list[int]] = {}
    for i, column in enumerate(columns):
        type_ = table.c[column].type
        impl = type_.impl if isinstance(type_, TypeDecorator) else type_
        element = next((e for kind, e in _ELEMENTS if isinstance(impl, kind)), None)
        if element is None or (element == "timestamptz" and not getattr(impl, "timezone", False)):
            raise ValueError(f"{table.name}.{column}: {type_!r} cannot be written as an array")
        found.setdefault(element, []).append(i)
    return tuple((element, tuple(indexes)) for element, indexes in found.items())
