"""SQL of the points ledger: accounts, transactions, entries, lots, draws, reservations, budgets.

Balances change in SQL (``available = available + :d``) on the member's own row, locked by the
caller; system accounts have entries only. Statements on the hot path are built once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from huiyuan.db import driver
from huiyuan.db.tables import (
    budget_purchases,
    budget_slices,
    orders,
    point_accounts,
    point_draws,
    point_entries,
    point_lots,
    point_reservations,
    point_restores,
    point_txns,
)
from huiyuan.db.types import UTCDateTime, as_json, refuse_naive
from huiyuan.db.upsert import insert_ignore
from huiyuan.domain import points as dp

SPENDABLE = ("active",)

# Whether any of the member's open lots is past its expiry at ``p_now``: if none is, a spend
# skips the expiry statement (the heaviest of a redemption). Lots only become due as time
# passes, never by another transaction's write, so a snapshot older than the lock can only
# say yes where there is nothing left to do.
_LAPSED = (
    exists()
    .where(
        point_lots.c.program_id == bindparam("p_program"),
        point_lots.c.member_id == bindparam("p_member"),
        point_lots.c.status == "active",
        point_lots.c.remaining > 0,
        point_lots.c.expires_at <= bindparam("p_now", type_=UTCDateTime()),
    )
    .label("lapsed")
)
_LOCK_ACCOUNT = (
    select(point_accounts, _LAPSED)
    .where(
        point_accounts.c.program_id == bindparam("p_program"),
        point_accounts.c.member_id == bindparam("p_member"),
    )
    .with_for_update(of=point_accounts)
)
_MOVE = (
    update(point_accounts)
    .where(
        point_accounts.c.program_id == bindparam("p_program"),
        point_accounts.c.member_id == bindparam("p_member"),
    )
    .values(
        available=point_accounts.c.available + bindparam("d_available"),
        pending=point_accounts.c.pending + bindparam("d_pending"),
        reserved=point_accounts.c.reserved + bindparam("d_reserved"),
        debt=point_accounts.c.debt + bindparam("d_debt"),
        updated_at=bindparam("p_at"),
    )
)
_TXN = {
    name: dialect.insert(point_txns)
    .on_conflict_do_nothing(index_elements=["program_id", "idem_key"])
    .returning(point_txns.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_INSERT_ENTRIES = point_entries.insert()
_INSERT_LOT = point_lots.insert().returning(point_lots.c.id)
_INSERT_DRAWS = point_draws.insert()
_TAKE = (
    update(point_lots)
    .where(point_lots.c.id == bindparam("p_lot"))
    .values(remaining=point_lots.c.remaining - bindparam("p_take"))
)
_SPENDABLE_LOTS = (
    select(point_lots.c.id, point_lots.c.remaining, point_lots.c.expires_at, point_lots.c.issuer)
    .where(
        point_lots.c.program_id == bindparam("p_program"),
        point_lots.c.member_id == bindparam("p_member"),
        point_lots.c.status == "active",
        point_lots.c.remaining > 0,
    )
    .order_by(point_lots.c.expires_at.is_(None), point_lots.c.expires_at, point_lots.c.id)
    .with_for_update()
)
_ORDER_LOTS = (
    select(point_lots)
    .where(
        point_lots.c.program_id == bindparam("p_program"),
        point_lots.c.order_id == bindparam("p_order"),
    )
    .order_by(point_lots.c.id)
    .with_for_update()
)


def _dialect(conn: Connection) -> str:
    return "postgresql" if conn.dialect.name == "postgresql" else "sqlite"


def empty_account(program_id: str, member_id: str, at: datetime) -> dict[str, Any]:
    """A new member's balance row in a program: nothing in any bucket."""
    return {
        "program_id": program_id,
        "member_id": member_id,
        "available": 0,
        "pending": 0,
        "reserved": 0,
        "debt": 0,
        "updated_at": at,
    }


def lock_account(conn: Connection, program_id: str, member_id: str, at: datetime) -> Row[Any]:
    """The member's balance row in a program, created empty if need be, locked until commit;
    its ``lapsed`` says whether any of the member's open lots is past its expiry at ``at``."""
    params = {"p_program": program_id, "p_member": member_id, "p_now": at}
    found = driver.fetch(conn, _LOCK_ACCOUNT, params)
    if not found:
        insert_ignore(
            conn,
            point_accounts,
            empty_account(program_id, member_id, at),
            ["program_id", "member_id"],
        )
        found = driver.fetch(conn, _LOCK_ACCOUNT, params)
    assert found
    return found[0]  # type: ignore[no-any-return]


def get_account(conn: Connection, program_id: str, member_id: str) -> Row[Any] | None:
    query = select(point_accounts).where(
        point_accounts.c.program_id == program_id, point_accounts.c.member_id == member_id
    )
    return conn.execute(query).first()


def move_balances(
    conn: Connection,
    program_id: str,
    member_id: str,
    at: datetime,
    *,
    available: int = 0,
    pending: int = 0,
    reserved: int = 0,
    debt: int = 0,
) -> None:
    driver.change(
        conn,
        _MOVE,
        {
            "p_program": program_id,
            "p_member": member_id,
            "d_available": available,
            "d_pending": pending,
            "d_reserved": reserved,
            "d_debt": debt,
            "p_at": at,
        },
    )


def insert_txn(conn: Connection, row: dict[str, Any]) -> int | None:
    """The new transaction's id, or None if its idempotency key was used already."""
    found = conn.execute(_TXN[_dialect(conn)], row).first()
    return None if found is None else int(found[0])


_FIND_TXN = select(point_txns).where(
    point_txns.c.program_id == bindparam("p_program"), point_txns.c.idem_key == bindparam("p_key")
)


def find_txn(conn: Connection, program_id: str, idem_key: str) -> Row[Any] | None:
    found = driver.fetch(conn, _FIND_TXN, {"p_program": program_id, "p_key": idem_key})
    return found[0] if found else None


def insert_entries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_INSERT_ENTRIES, rows)


def write_movement(
    conn: Connection,
    entries: list[dict[str, Any]],
    program_id: str,
    member_id: str,
    at: datetime,
    *,
    available: int = 0,
    pending: int = 0,
    debt: int = 0,
    takes: Sequence[tuple[int, int]] = (),
    txn_id: int | None = None,
    draw_kind: str | None = None,
) -> None:
    """A transaction's entries, its member's balances moved (``debt``: what is owed), and — a
    spend — what it takes from lots (``takes``: lot, points) with the draws that say so. On
    PostgreSQL one statement (a redemption's three writes were three round trips); SQLite
    runs the same writes one by one."""
    if not driver.is_pg(conn):
        insert_entries(conn, entries)
        take_from_lots(conn, list(takes))
        insert_draws(
            conn,
            [
                {"txn_id": txn_id, "lot_id": lot, "kind": draw_kind, "amount": n, "restored": 0}
                for lot, n in takes
            ],
        )
        if available or pending or debt:
            move_balances(
                conn, program_id, member_id, at, available=available, pending=pending, debt=debt
            )
        return
    refuse_naive(point_entries, entries)
    moves = bool(available or pending or debt)
    params: dict[str, Any] = {"entries": as_json(entries)}
    if takes:
        params.update(
            lots=[lot for lot, _ in takes], takes=[n for _, n in takes], txn=txn_id, kind=draw_kind
        )
    if moves:
        params.update(
            d_available=available,
            d_pending=pending,
            d_debt=debt,
            at=at,
            program=program_id,
            member=member_id,
        )
    driver.one(conn, _movement_sql(bool(takes), moves), params)


@cache
def _movement_sql(takes: bool, moves: bool) -> str:
    parts = [
        "entries AS (INSERT INTO point_entries (txn_id, program_id, member_id, account, bucket, "
        "amount, lot_id, occurred_at) SELECT txn_id, program_id, member_id, account, bucket, "
        "amount, lot_id, occurred_at FROM json_populate_recordset(CAST(NULL AS point_entries), "
        "CAST(%(entries)s AS json)))"
    ]
    if takes:
        parts += [
            "taken AS (UPDATE point_lots AS l SET remaining = l.remaining - t.n "
            "FROM unnest(CAST(%(lots)s AS bigint[]), CAST(%(takes)s AS bigint[])) AS t(id, n) "
            "WHERE l.id = t.id)",
            "drawn AS (INSERT INTO point_draws (txn_id, lot_id, kind, amount, restored) "
            "SELECT CAST(%(txn)s AS bigint), t.id, %(kind)s, t.n, 0 "
            "FROM unnest(CAST(%(lots)s AS bigint[]), CAST(%(takes)s AS bigint[])) AS t(id, n))",
        ]
    if moves:
        parts.append(
            "moved AS (UPDATE point_accounts SET available = available + %(d_available)s, "
            "pending = pending + %(d_pending)s, debt = debt + %(d_debt)s, "
            "updated_at = CAST(%(at)s AS timestamptz) "
            "WHERE program_id = %(program)s AND member_id = %(member)s)"
        )
    return "WITH " + ", ".join(parts) + " SELECT 1"


def insert_lot(conn: Connection, row: dict[str, Any]) -> int:
    return int(conn.execute(_INSERT_LOT, row).scalar_one())


def spendable_lots(conn: Connection, program_id: str, member_id: str) -> Sequence[Any]:
    return driver.fetch(conn, _SPENDABLE_LOTS, {"p_program": program_id, "p_member": member_id})


# The spend path's constant statements run on PostgreSQL on the driver's own connection,
# prepared, without SQLAlchemy's per-statement work (``driver.fetch``, ``driver.change``): a
# redemption sends six statements in all, and each such saves about 0.1 ms of client CPU.


def unrestored_draws(conn: Connection, txn_id: int) -> int:
    """What a spend drew from lots and has not given back yet."""
    found = conn.execute(
        select(func.coalesce(func.sum(point_draws.c.amount - point_draws.c.restored), 0)).where(
            point_draws.c.txn_id == txn_id
        )
    ).scalar_one()
    return int(found)


# A member's legs of the ledger (``account = 'member'``, which ``ck_point_entries_member_leg``
# makes the same), said as the partial indexes of member legs say it, so the planner uses them.
MEMBER_LEGS = point_entries.c.member_id.is_not(None)


def member_moved(conn: Connection, txn_id: int, bucket: str | None = "available") -> int:
    """What a transaction moved in the member's ``bucket`` (``None``: all buckets)."""
    query = select(func.coalesce(func.sum(point_entries.c.amount), 0)).where(
        point_entries.c.txn_id == txn_id, MEMBER_LEGS
    )
    if bucket is not None:
        query = query.where(point_entries.c.bucket == bucket)
    return int(conn.execute(query).scalar_one())


def lapsed_points(conn: Connection, program_id: str, member_id: str, now: datetime) -> int:
    """Points of the member's lots past their expiry that are still open (a hold keeps them)."""
    found = conn.execute(
        select(func.coalesce(func.sum(point_lots.c.remaining), 0)).where(
            point_lots.c.program_id == program_id,
            point_lots.c.member_id == member_id,
            point_lots.c.status == "active",
            point_lots.c.remaining > 0,
            point_lots.c.expires_at <= now,
        )
    ).scalar_one()
    return int(found)


def order_lots(conn: Connection, program_id: str, order_id: str) -> Sequence[Row[Any]]:
    return conn.execute(_ORDER_LOTS, {"p_program": program_id, "p_order": order_id}).all()


def take_from_lots(conn: Connection, takes: list[tuple[int, int]]) -> None:
    if takes:
        conn.execute(_TAKE, [{"p_lot": lot, "p_take": take} for lot, take in takes])


_RELEASE_LOT = (
    update(point_lots)
    .where(point_lots.c.id == bindparam("p_lot"))
    .values(status="active", released_at=bindparam("p_at"), expires_at=bindparam("p_expires"))
)


def release_lot(conn: Connection, lot_id: int, at: datetime, expires: datetime | None) -> None:
    conn.execute(_RELEASE_LOT, {"p_lot": lot_id, "p_at": at, "p_expires": expires})


def update_lot(conn: Connection, lot_id: int, values: dict[str, Any]) -> None:
    conn.execute(update(point_lots).where(point_lots.c.id == lot_id).values(**values))


def insert_draws(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_INSERT_DRAWS, rows)


def restorable_draws(conn: Connection, txn_ids: Sequence[int]) -> Sequence[Any]:
    """Draws of these spends not yet given back, with their lot, in the order they were made."""
    query = (
        select(
            point_draws.c.id,
            point_draws.c.lot_id,
            point_draws.c.amount,
            point_draws.c.restored,
            point_lots.c.status.label("lot_status"),
            point_lots.c.expires_at,
            point_lots.c.issuer,
        )
        .join(point_lots, point_lots.c.id == point_draws.c.lot_id)
        .where(point_draws.c.txn_id.in_(txn_ids), point_draws.c.restored < point_draws.c.amount)
        .order_by(point_draws.c.id)
        .with_for_update()
    )
    return conn.execute(query).all()


def mark_restored(conn: Connection, draw_id: int, amount: int, txn_id: int) -> None:
    """Transaction ``txn_id`` gave back ``amount`` of a draw: counted on the draw, and recorded
    as its own row (when, at what value: the liability report)."""
    conn.execute(
        update(point_draws)
        .where(point_draws.c.id == draw_id)
        .values(restored=point_draws.c.restored + amount)
    )
    conn.execute(insert(point_restores).values(txn_id=txn_id, draw_id=draw_id, amount=amount))


def give_back_to_lot(conn: Connection, lot_id: int, amount: int) -> None:
    conn.execute(
        update(point_lots)
        .where(point_lots.c.id == lot_id)
        .values(remaining=point_lots.c.remaining + amount)
    )


# A member's transactions of one order. The member narrows the search to that member's
# transactions (``ix_point_txns_member``): by program and order alone, nothing indexed
# would, and every refund would read the program's whole ledger.


def txns_of_order(
    conn: Connection, program_id: str, member_id: str, order_id: str, kind: str
) -> list[int]:
    query = select(point_txns.c.id).where(
        point_txns.c.program_id == program_id,
        point_txns.c.member_id == member_id,
        point_txns.c.order_id == order_id,
        point_txns.c.kind == kind,
    )
    return [int(i) for i in conn.execute(query).scalars()]


def redeemed_for_order(
    conn: Connection, program_id: str, member_id: str, order_id: str
) -> tuple[int, int]:
    """(points the member's checkout holds captured for the order, points already given
    back)."""
    query = (
        select(
            func.coalesce(func.sum(point_draws.c.amount), 0),
            func.coalesce(func.sum(point_draws.c.restored), 0),
        )
        .join(point_txns, point_txns.c.id == point_draws.c.txn_id)
        .where(
            point_txns.c.program_id == program_id,
            point_txns.c.member_id == member_id,
            point_txns.c.order_id == order_id,
            point_txns.c.kind == "capture",
        )
    )
    spent, restored = conn.execute(query).one()
    return int(spent), int(restored)


_EARNED = (
    select(
        point_lots.c.rule_id,
        func.sum(
            case((point_lots.c.earned_at >= bindparam("p_day"), point_lots.c.amount), else_=0)
        ),
        func.sum(point_lots.c.amount),
    )
    .where(
        point_lots.c.program_id == bindparam("p_program"),
        point_lots.c.member_id == bindparam("p_member"),
        point_lots.c.earned_at >= bindparam("p_month"),
        point_lots.c.rule_id.is_not(None),
    )
    .group_by(point_lots.c.rule_id)
)


def earned_today_and_month(
    conn: Connection, program_id: str, member_id: str, day: datetime, month: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    """Points credited per rule since the start of the business day and of the month."""
    today: dict[str, int] = {}
    this_month: dict[str, int] = {}
    params = {"p_program": program_id, "p_member": member_id, "p_day": day, "p_month": month}
    for rule, on_day, in_month in conn.execute(_EARNED, params).all():
        today[rule] = int(on_day)
        this_month[rule] = int(in_month)
    return today, this_month


def orders_before(conn: Connection, member_id: str, paid_at: datetime) -> int:
    query = select(func.count()).where(
        and_(orders.c.member_id == member_id, orders.c.paid_at < paid_at)
    )
    return int(conn.execute(query).scalar_one())


# ---------------------------------------------------------------- reservations


def get_reservation(conn: Connection, program_id: str, reservation_id: str) -> Row[Any] | None:
    query = (
        select(point_reservations)
        .where(
            point_reservations.c.program_id == program_id,
            point_reservations.c.reservation_id == reservation_id,
        )
        .with_for_update()
    )
    return conn.execute(query).first()


def held_reservation_for_order(conn: Connection, program_id: str, order_id: str) -> Row[Any] | None:
    query = (
        select(point_reservations)
        .where(
            point_reservations.c.program_id == program_id,
            point_reservations.c.order_id == order_id,
            point_reservations.c.status == "held",
        )
        .with_for_update()
    )
    return conn.execute(query).first()


def insert_reservation(conn: Connection, row: dict[str, Any]) -> bool:
    return insert_ignore(conn, point_reservations, row, ["program_id", "reservation_id"]) == 1


def set_reservation(
    conn: Connection, program_id: str, reservation_id: str, values: dict[str, Any]
) -> None:
    conn.execute(
        update(point_reservations)
        .where(
            point_reservations.c.program_id == program_id,
            point_reservations.c.reservation_id == reservation_id,
        )
        .values(**values)
    )


def lapsed_reservations(conn: Connection, now: datetime, limit: int) -> Sequence[Row[Any]]:
    query = (
        select(point_reservations)
        .where(point_reservations.c.status == "held", point_reservations.c.expires_at <= now)
        .order_by(point_reservations.c.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return conn.execute(query).all()


# ---------------------------------------------------------------- budgets


def add_budget_purchase(conn: Connection, row: dict[str, Any]) -> bool:
    return insert_ignore(conn, budget_purchases, row, ["program_id", "purchase_id"]) == 1


def get_budget_purchase(conn: Connection, program_id: str, purchase_id: str) -> Row[Any] | None:
    query = select(budget_purchases).where(
        budget_purchases.c.program_id == program_id,
        budget_purchases.c.purchase_id == purchase_id,
    )
    return conn.execute(query).first()


def ensure_budget_slices(conn: Connection, program_id: str, store_id: str, slices: int) -> None:
    rows = [
        {"program_id": program_id, "store_id": store_id, "slice": i, "remaining": 0}
        for i in range(slices)
    ]
    insert_ignore(conn, budget_slices, rows, ["program_id", "store_id", "slice"])


def fund_slices(conn: Connection, program_id: str, store_id: str, amounts: list[int]) -> None:
    for index, amount in enumerate(amounts):
        if amount:
            conn.execute(
                update(budget_slices)
                .where(
                    budget_slices.c.program_id == program_id,
                    budget_slices.c.store_id == store_id,
                    budget_slices.c.slice == index,
                )
                .values(remaining=budget_slices.c.remaining + amount)
            )


def take_from_slice(
    conn: Connection, program_id: str, store_id: str, index: int, amount: int
) -> bool:
    """Take ``amount`` from one slice if it holds that much (a single-row conditional update)."""
    result = conn.execute(
        update(budget_slices)
        .where(
            budget_slices.c.program_id == program_id,
            budget_slices.c.store_id == store_id,
            budget_slices.c.slice == index,
            budget_slices.c.remaining >= amount,
        )
        .values(remaining=budget_slices.c.remaining - amount)
    )
    return result.rowcount == 1


def take_from_free_slice(
    conn: Connection, program_id: str, store_id: str, index: int, amount: int
) -> bool:
    """Take ``amount`` from one slice if it holds that much and no one else has it locked.

    A plain conditional update that waits for a busy slice keeps the slice locked even when
    it then finds too little there; the caller, going on to lock every slice in order, would
    hold one out of order and could deadlock. Skipping a busy slice leaves nothing locked.
    """
    free = (
        select(budget_slices.c.slice)
        .where(
            budget_slices.c.program_id == program_id,
            budget_slices.c.store_id == store_id,
            budget_slices.c.slice == index,
            budget_slices.c.remaining >= amount,
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = conn.execute(
        update(budget_slices)
        .where(
            budget_slices.c.program_id == program_id,
            budget_slices.c.store_id == store_id,
            budget_slices.c.slice == free,
        )
        .values(remaining=budget_slices.c.remaining - amount)
    )
    return result.rowcount == 1


_LOCK_BUDGET = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


def lock_budget(conn: Connection, program_id: str, store_id: str) -> None:
    """A store budget's own lock, held until the transaction ends (``budgets.many_grants``).
    SQLite runs one writer at a time and needs none."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_BUDGET, {"key": f"budget:{program_id}:{store_id}"})


def lock_all_slices(conn: Connection, program_id: str, store_id: str) -> Sequence[Row[Any]]:
    query = (
        select(budget_slices)
        .where(budget_slices.c.program_id == program_id, budget_slices.c.store_id == store_id)
        .order_by(budget_slices.c.slice)
        .with_for_update()
    )
    return conn.execute(query).all()


def budget_remaining(conn: Connection, program_id: str, store_id: str) -> int:
    query = select(func.coalesce(func.sum(budget_slices.c.remaining), 0)).where(
        budget_slices.c.program_id == program_id, budget_slices.c.store_id == store_id
    )
    return int(conn.execute(query).scalar_one())


def drawn_from_lot(conn: Connection, lot_id: int, kind: str) -> int:
    query = select(func.coalesce(func.sum(point_draws.c.amount), 0)).where(
        point_draws.c.lot_id == lot_id, point_draws.c.kind == kind
    )
    return int(conn.execute(query).scalar_one())


def spendable_or_pending(conn: Connection, lot_ids: Sequence[int]) -> Sequence[Row[Any]]:
    """These lots, locked, in id order."""
    query = (
        select(point_lots)
        .where(point_lots.c.id.in_(lot_ids))
        .order_by(point_lots.c.id)
        .with_for_update()
    )
    return conn.execute(query).all()


def lots_of_subject(
    conn: Connection, program_id: str, member_id: str, subject: str
) -> Sequence[Row[Any]]:
    """Lots credited for a subject (``review:<id>``, ``recharge:<id>``), locked."""
    query = (
        select(point_lots)
        .join(point_txns, point_txns.c.id == point_lots.c.txn_id)
        .where(
            # The lots' own program and member: their index (``ix_point_lots_member``) finds
            # the member's few lots; the transactions are then read by key.
            point_lots.c.program_id == program_id,
            point_lots.c.member_id == member_id,
            point_txns.c.idem_key.like(f"{subject}:%"),
        )
        .order_by(point_lots.c.id)
        .with_for_update(of=point_lots)
    )
    return conn.execute(query).all()


# ---------------------------------------------------------------- expiry


class ExpiredChunk(NamedTuple):
    """What one chunk of the expiry job did.

    ``scanned`` due lots were looked at, in id order, up to ``last_id``; ``expired`` of them
    lost points (all of them, or — for a member's checkout hold — what the hold does not keep;
    locked lots wait for the next run). Fewer scanned than asked for means no due lot is left
    after ``last_id``.
    """

    expired: int
    scanned: int
    last_id: int


@dataclass(frozen=True)
class ExpiryLabels:
    """What an expiry transaction says: who did it, why, and the system account it credits."""

    actor: str
    reason_zh: str
    reason_en: str
    expired_account: str


def expire_due_lots(
    conn: Connection,
    *,
    after: int,
    limit: int,
    now: datetime,
    at: datetime,
    labels: ExpiryLabels,
    member: tuple[str, str] | None = None,
    dated_at: datetime | None = None,
) -> ExpiredChunk:
    """Expire the next ``limit`` due lots with an id above ``after``, set-based, in the caller's
    transaction: take what expires out of each lot, write its ``expire`` transaction, its two
    entries and its draw, and move each member's balance once. With ``member`` (program id,
    member id), only that member's lots: a spend expires its member's due lots first, having
    locked the account (``PointsBook``).

    A lot is due when it is active, has points left and its expiry has passed. Its member's
    points account is locked before the lot. A member's checkout holds keep the points their
    captures will take (``domain.points.kept_by_holds``): the first ``reserved`` points of the
    member's due lots in drawing order — over all of the member's due lots, whatever the
    chunks — stay in their lots, which stay open; the rest expire. A lot emptied is closed
    (``expired``, idempotency key ``expire:<lot>``); a lot a hold keeps some of stays active
    with what is kept (``expire:<lot>:<kept>``: a due lot only ever shrinks, so the key is
    unique). A hold is never left uncovered. Nothing here waits for a lock: an account or lot
    another transaction holds is skipped, so the job can never deadlock with a redemption
    (which locks the account, then the lots).

    Each expiry is dated at its lot's expiry — or, given ``dated_at`` (a member's, when a
    hold ended: ``PointsBook.end_hold``), at that moment (never before the lot's expiry):
    points a hold kept until then were the member's until then, and a balance asked as of any
    earlier instant must not lose them afterwards.
    """
    params = {
        "after": after,
        "limit": limit,
        "now": now,
        "at": at,
        "actor": labels.actor,
        "reason_zh": labels.reason_zh,
        "reason_en": labels.reason_en,
        "expired_account": labels.expired_account,
    }
    if member is not None:
        params["program"], params["member"] = member
    elif dated_at is not None:
        raise ValueError("dated_at expires one member's lots, when one of their holds ended")
    params["dated_at"] = dated_at
    if conn.dialect.name == "postgresql":
        if member is None:
            statement = _EXPIRE_CHUNK_PG
        else:
            statement = _EXPIRE_MEMBER_PG if dated_at is None else _EXPIRE_MEMBER_DATED_PG
        expired, scanned, last_id = conn.execute(statement, params).one()
        return ExpiredChunk(int(expired), int(scanned), int(last_id or after))
    return _expire_due_lots_portable(conn, params)


# One statement per chunk: every lot's transaction id is drawn from the sequence as the lot is
# closed, so transactions, entries and draws are written from the closed lots without a join.
# ``keep``: ``kept_by_holds`` — the member's reserved points less those of the due lots ahead
# of this one in drawing order (expiry, id), within 0 and the lot's points; looked up only for
# members holding a reservation.
_EXPIRE_PG = """
    WITH candidates AS MATERIALIZED (
        SELECT l.id, l.program_id, l.member_id
        FROM point_lots l
        WHERE {scope} l.id > :after AND l.status = 'active' AND l.remaining > 0
          AND l.expires_at <= :now
        ORDER BY l.id
        LIMIT :limit
    ), accounts AS MATERIALIZED (
        SELECT a.program_id, a.member_id, a.reserved
        FROM point_accounts a
        WHERE (a.program_id, a.member_id) IN (SELECT program_id, member_id FROM candidates)
        FOR UPDATE OF a SKIP LOCKED
    ), due AS MATERIALIZED (
        SELECT l.id, l.program_id, l.member_id, l.remaining, l.expires_at,
               CASE WHEN a.reserved <= 0 THEN 0 ELSE least(l.remaining, greatest(0,
                   a.reserved - (
                       SELECT coalesce(sum(x.remaining), 0) FROM point_lots x
                       WHERE x.program_id = l.program_id AND x.member_id = l.member_id
                         AND x.status = 'active' AND x.remaining > 0 AND x.expires_at <= :now
                         AND (x.expires_at, x.id) < (l.expires_at, l.id)
                   ))) END AS keep
        FROM candidates c
        JOIN accounts a ON a.program_id = c.program_id AND a.member_id = c.member_id
        JOIN point_lots l ON l.id = c.id
        WHERE l.status = 'active' AND l.remaining > 0 AND l.expires_at <= :now
        FOR UPDATE OF l SKIP LOCKED
    ), closed AS (
        UPDATE point_lots l
        SET status = CASE WHEN due.keep = 0 THEN 'expired' ELSE 'active' END,
            remaining = due.keep
        FROM due WHERE l.id = due.id AND due.remaining > due.keep
        RETURNING due.id, due.program_id, due.member_id, due.remaining - due.keep AS gone,
                  due.keep, {dated} AS dated_at,
                  nextval(pg_get_serial_sequence('point_txns', 'id')) AS txn_id
    ), txns AS (
        INSERT INTO point_txns (id, program_id, member_id, kind, idem_key, reason_zh,
                                reason_en, actor, occurred_at, created_at)
        SELECT txn_id, program_id, member_id, 'expire',
               'expire:' || id || CASE WHEN keep > 0 THEN ':' || keep ELSE '' END,
               :reason_zh, :reason_en, :actor, dated_at, :at
        FROM closed
    ), entries AS (
        INSERT INTO point_entries (txn_id, program_id, member_id, account, bucket, amount,
                                   lot_id, occurred_at)
        SELECT c.txn_id, c.program_id,
               CASE WHEN leg.member THEN c.member_id END,
               CASE WHEN leg.member THEN 'member' ELSE :expired_account END,
               CASE WHEN leg.member THEN 'available' ELSE 'total' END,
               CASE WHEN leg.member THEN -c.gone ELSE c.gone END,
               c.id, c.dated_at
        FROM closed c CROSS JOIN (VALUES (true), (false)) AS leg (member)
    ), draws AS (
        INSERT INTO point_draws (txn_id, lot_id, kind, amount, restored)
        SELECT txn_id, id, 'expire', gone, 0 FROM closed
    ), balances AS (
        UPDATE point_accounts a
        SET available = a.available - s.points, updated_at = :at
        FROM (SELECT program_id, member_id, sum(gone) AS points
              FROM closed GROUP BY program_id, member_id) s
        WHERE a.program_id = s.program_id AND a.member_id = s.member_id
    )
    SELECT (SELECT count(*) FROM closed),
           (SELECT count(*) FROM candidates),
           (SELECT max(id) FROM candidates)
"""
_MEMBER_SCOPE = "l.program_id = :program AND l.member_id = :member AND"


def _expire_statement(scope: str, *, dated: bool) -> Any:
    """``_EXPIRE_PG`` for this scope, its expiries dated at each lot's expiry or (``dated``) at
    ``:dated_at`` if that is later (``_dated``)."""
    when = "greatest(due.expires_at, CAST(:dated_at AS timestamptz))" if dated else None
    instants = ("now", "at", "dated_at") if dated else ("now", "at")
    return text(_EXPIRE_PG.format(scope=scope, dated=when or "due.expires_at")).bindparams(
        *(bindparam(name, type_=UTCDateTime()) for name in instants)
    )


_EXPIRE_CHUNK_PG = _expire_statement("", dated=False)
_EXPIRE_MEMBER_PG = _expire_statement(_MEMBER_SCOPE, dated=False)
_EXPIRE_MEMBER_DATED_PG = _expire_statement(_MEMBER_SCOPE, dated=True)


def _expire_due_lots_portable(conn: Connection, params: dict[str, Any]) -> ExpiredChunk:
    """The same work for SQLite, a few statements a chunk, the holds' rule in Python: its
    writers take the database lock (``BEGIN IMMEDIATE``), so nothing changes under it."""
    after, now = params["after"], params["now"]
    lots = point_lots.c
    due: tuple[Any, ...] = (lots.status == "active", lots.remaining > 0, lots.expires_at <= now)
    if "member" in params:
        due += (lots.program_id == params["program"], lots.member_id == params["member"])
    chunk = conn.execute(
        select(lots.id, lots.program_id, lots.member_id, lots.remaining, lots.expires_at)
        .where(lots.id > after, *due)
        .order_by(lots.id)
        .limit(params["limit"])
    ).all()
    if not chunk:
        return ExpiredChunk(0, 0, after)
    keep = _kept_by_holds(conn, {(lot.program_id, lot.member_id) for lot in chunk}, now)
    going = [
        (lot, lot.remaining - keep.get(lot.id, 0))
        for lot in chunk
        if lot.remaining > keep.get(lot.id, 0)
    ]
    if going:
        _write_expiry(conn, params, going, keep)
    return ExpiredChunk(len(going), len(chunk), int(chunk[-1].id))


def _dated(expires_at: datetime, dated_at: datetime | None) -> datetime:
    return expires_at if dated_at is None else max(expires_at, dated_at)


def _kept_by_holds(conn: Connection, pairs: set[tuple[str, str]], now: datetime) -> dict[int, int]:
    """What ``kept_by_holds`` keeps of each due lot of those of these members who hold a
    reservation: lot id -> points kept."""
    a, lots = point_accounts.c, point_lots.c
    holding = conn.execute(
        select(a.program_id, a.member_id, a.reserved).where(
            tuple_(a.program_id, a.member_id).in_(sorted(pairs)), a.reserved > 0
        )
    ).all()
    keep: dict[int, int] = {}
    for program_id, member_id, reserved in holding:
        due = conn.execute(
            select(lots.id, lots.remaining)
            .where(
                lots.program_id == program_id,
                lots.member_id == member_id,
                lots.status == "active",
                lots.remaining > 0,
                lots.expires_at <= now,
            )
            .order_by(lots.expires_at, lots.id)
        ).all()
        kept = dp.kept_by_holds(int(reserved), [int(lot.remaining) for lot in due])
        keep.update({lot.id: points for lot, points in zip(due, kept, strict=True)})
    return keep


def _write_expiry(
    conn: Connection, params: dict[str, Any], going: list[tuple[Any, int]], keep: dict[int, int]
) -> None:
    """``_expire_due_lots_portable``'s writes: per lot, what goes (``going``: lot, points)."""
    txn_ids = (
        conn.execute(
            insert(point_txns).returning(point_txns.c.id, sort_by_parameter_order=True),
            [
                {
                    "program_id": lot.program_id,
                    "member_id": lot.member_id,
                    "kind": "expire",
                    "idem_key": f"expire:{lot.id}"
                    + (f":{keep[lot.id]}" if keep.get(lot.id) else ""),
                    "reason_zh": params["reason_zh"],
                    "reason_en": params["reason_en"],
                    "actor": params["actor"],
                    "occurred_at": _dated(lot.expires_at, params["dated_at"]),
                    "created_at": params["at"],
                }
                for lot, _ in going
            ],
        )
        .scalars()
        .all()
    )
    entries: list[dict[str, Any]] = []
    draws: list[dict[str, Any]] = []
    lost: dict[tuple[str, str], int] = {}
    for (lot, gone), txn_id in zip(going, txn_ids, strict=True):
        for member_id, account, bucket, amount in (
            (lot.member_id, "member", "available", -gone),
            (None, params["expired_account"], "total", gone),
        ):
            entries.append(
                {
                    "txn_id": txn_id,
                    "program_id": lot.program_id,
                    "member_id": member_id,
                    "account": account,
                    "bucket": bucket,
                    "amount": amount,
                    "lot_id": lot.id,
                    "occurred_at": _dated(lot.expires_at, params["dated_at"]),
                }
            )
        draws.append(
            {"txn_id": txn_id, "lot_id": lot.id, "kind": "expire", "amount": gone, "restored": 0}
        )
        pair = (lot.program_id, lot.member_id)
        lost[pair] = lost.get(pair, 0) + gone
    conn.execute(insert(point_entries), entries)
    conn.execute(insert(point_draws), draws)
    conn.execute(
        update(point_lots)
        .where(point_lots.c.id == bindparam("p_lot"))
        .values(status=bindparam("p_status"), remaining=bindparam("p_keep")),
        [
            {
                "p_lot": lot.id,
                "p_status": "active" if keep.get(lot.id) else "expired",
                "p_keep": keep.get(lot.id, 0),
            }
            for lot, _ in going
        ],
    )
    conn.execute(
        update(point_accounts)
        .where(
            point_accounts.c.program_id == bindparam("p_program"),
            point_accounts.c.member_id == bindparam("p_member"),
        )
        .values(
            available=point_accounts.c.available - bindparam("p_lost"),
            updated_at=params["at"],
        ),
        [{"p_program": p, "p_member": m, "p_lost": n} for (p, m), n in sorted(lost.items())],
    )
