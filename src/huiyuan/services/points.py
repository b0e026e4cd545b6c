"""Points use cases called by the API: reservations, redemptions, adjustments and reading.

Each request names an ``id`` that makes it idempotent: the same id with the same content returns
the first result; with other content it is a 409. Which program a call is about, and whether the
key may use it, is decided by ``program_access.program_for_key`` (as for every member endpoint).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select

from huiyuan.db import mall_repo, members_repo, points_repo
from huiyuan.db.audit_repo import record_audit
from huiyuan.db.tables import point_entries, point_lots, point_txns
from huiyuan.db.uow import UnitOfWork
from huiyuan.domain.errors import MemberError, PointsError, conflict, not_found, past_instant
from huiyuan.domain.points import Award, kept_by_holds, max_deduction_points
from huiyuan.schemas.validation import body_hash
from huiyuan.services import points_jobs
from huiyuan.services.context import PLATFORM_OWNER, Services
from huiyuan.services.members import require_visible_member
from huiyuan.services.points_book import ADJUSTMENTS, REDEEMED, PointsBook, Reason
from huiyuan.services.principals import Principal, Scope
from huiyuan.services.program_access import program_for_key


def member_book(
    svc: Services, conn: Connection, program: str, member_id: str, actor: str
) -> PointsBook:
    member, enrolled = members_repo.lock_member_with_programs(conn, member_id)
    if member is None:
        raise not_found(MemberError.NOT_FOUND, f"no member {member_id!r}")
    if program not in enrolled:
        raise not_found(
            PointsError.PROGRAM_NOT_ENROLLED, f"member {member_id!r} is not enrolled in {program!r}"
        )
    now = svc.now()
    config = svc.configs.at(conn, program, now)
    owner = svc.directory.owner_of(conn, program) or PLATFORM_OWNER
    return PointsBook(svc, conn, config, member_id, now, actor=actor, owner_id=owner)


@contextmanager
def book_for_request(
    svc: Services, who: Principal, member_id: str, program_id: str | None
) -> Iterator[tuple[UnitOfWork, PointsBook]]:
    """A transaction, and the member's book (the member locked) in the program the request
    names, or else the one the key's owner means (``program_for_key``)."""
    with svc.uow() as tx:
        program = program_for_key(svc, tx.conn, who, program_id)
        yield tx, member_book(svc, tx.conn, program, member_id, who.actor)


def balance_view(book: PointsBook) -> dict[str, int]:
    """The member's balances in an answer, once lots past their expiry are expired (as the
    summary shows them)."""
    book.expire_due()
    return {
        "available": book.available,
        "pending": book.pending,
        "reserved": book.reserved,
        "spendable": max(book.spendable, 0),
        "debt": book.debt,
    }


def _replay_txn(conn: Connection, program: str, key: str, kind: str, amount: int) -> dict[str, Any]:
    txn = points_repo.find_txn(conn, program, key)
    assert txn is not None
    moved = points_repo.member_moved(conn, txn.id, bucket=None)
    if txn.kind != kind or abs(moved) != abs(amount):
        raise conflict(
            PointsError.ID_REUSED, "this id was used for a different request", field="id"
        )
    return {"transaction_id": txn.id, "replayed": True}


# ---------------------------------------------------------------- reservations


def reserve(
    svc: Services,
    who: Principal,
    member_id: str,
    request_id: str,
    amount: int,
    *,
    order_id: str | None,
    program_id: str | None,
    ttl_seconds: int | None,
    order_amount: int | None = None,
) -> dict[str, Any]:
    """Hold points for a checkout until captured by ``order.paid``, released, or lapsed.

    With ``order_amount`` (the order's value before the deduction) the hold is checked against
    the program's maximum share of an order at once; the capture checks it in any case.
    """
    who.require(Scope.WRITE)
    digest = body_hash(
        {
            "amount": amount,
            "order_id": order_id,
            "member_id": member_id,
            "order_amount": order_amount,
        }
    )
    with book_for_request(svc, who, member_id, program_id) as (tx, book):
        conn, program = tx.conn, book.program_id
        existing = points_repo.get_reservation(conn, program, request_id)
        if existing is not None:
            if existing.body_hash != digest:
                raise conflict(
                    PointsError.ID_REUSED, "reservation id used for another request", field="id"
                )
            return _reservation_view(existing) | {"replayed": True}
        policy = book.config.document.points
        units = policy.redemption.min_unit
        if amount % units:
            raise conflict(
                PointsError.BELOW_MINIMUM_UNIT,
                f"points are used in multiples of {units}",
                field="amount",
            )
        redemption = policy.redemption.to_domain()
        if order_amount is not None and amount > max_deduction_points(redemption, order_amount):
            raise conflict(
                PointsError.DEDUCTION_EXCEEDS_SHARE,
                f"an order of {order_amount} fen may use at most "
                f"{max_deduction_points(redemption, order_amount)} points",
                field="amount",
            )
        book.hold(amount)
        now = svc.now()
        ttl = ttl_seconds or policy.reservation_ttl_seconds
        row = {
            "program_id": program,
            "reservation_id": request_id,
            "member_id": member_id,
            "amount": amount,
            "order_id": order_id,
            "status": "held",
            "expires_at": now + timedelta(seconds=ttl),
            "created_at": now,
            "txn_id": None,
            "body_hash": digest,
        }
        points_repo.insert_reservation(conn, row)
        view = _reservation_view(row) | {"replayed": False, "balance": balance_view(book)}
        tx.commit()
    return view


def release_reservation(
    svc: Services, who: Principal, member_id: str, reservation_id: str, program_id: str | None
) -> dict[str, Any]:
    who.require(Scope.WRITE)
    with book_for_request(svc, who, member_id, program_id) as (tx, book):
        conn, program = tx.conn, book.program_id
        row = points_repo.get_reservation(conn, program, reservation_id)
        if row is None or row.member_id != member_id:
            raise not_found(PointsError.RESERVATION_NOT_FOUND, f"no reservation {reservation_id!r}")
        if row.status == "held":
            book.end_hold(int(row.amount))
            points_repo.set_reservation(conn, program, reservation_id, {"status": "released"})
        elif row.status == "captured":
            raise conflict(
                PointsError.RESERVATION_NOT_HELD,
                "the reservation was captured; refund the order to return points",
            )
        view = _reservation_view(row) | {
            "status": "released" if row.status == "held" else row.status,
            "balance": balance_view(book),
        }
        tx.commit()
    return view


def _reservation_view(row: Any) -> dict[str, Any]:
    def get(key: str) -> Any:
        return row[key] if isinstance(row, dict) else getattr(row, key)

    expires = get("expires_at")
    return {
        "id": get("reservation_id"),
        "program_id": get("program_id"),
        "member_id": get("member_id"),
        "amount": int(get("amount")),
        "order_id": get("order_id"),
        "status": get("status"),
        "expires_at": expires.isoformat() if expires else None,
    }


# ---------------------------------------------------------------- redemptions and adjustments


def redeem(
    svc: Services,
    who: Principal,
    member_id: str,
    request_id: str,
    amount: int,
    reason: str,
    program_id: str | None,
) -> dict[str, Any]:
    """Spend an amount of points the caller priced (an item of the program's own points mall
    is ``points_mall.redeem_item``)."""
    who.require(Scope.WRITE)
    with book_for_request(svc, who, member_id, program_id) as (tx, book):
        conn, program = tx.conn, book.program_id
        key = f"redeem:{request_id}"
        if points_repo.find_txn(conn, program, key) is not None:
            if mall_repo.get_redemption(conn, program, request_id) is not None:
                raise conflict(
                    PointsError.ID_REUSED, "this id was used for a mall item", field="id"
                )
            return _replay_txn(conn, program, key, "redeem", amount) | {
                "balance": balance_view(book)
            }
        txn = book.draw(
            "redeem",
            amount,
            key,
            Reason(f"积分兑换：{reason}", f"redeemed: {reason}"),
            counter_account=REDEEMED,
        )
        result = {
            "transaction_id": txn,
            "replayed": False,
            "points": amount,
            "balance": balance_view(book),
        }
        tx.commit()
    return result


def adjust(
    svc: Services,
    who: Principal,
    member_id: str,
    request_id: str,
    amount: int,
    reason: str,
    program_id: str | None,
) -> dict[str, Any]:
    """An operator's or agent's signed correction, audited with its actor and reason."""
    who.require(Scope.ADMIN)
    with book_for_request(svc, who, member_id, program_id) as (tx, book):
        conn, program = tx.conn, book.program_id
        key = f"adjust:{request_id}"
        if points_repo.find_txn(conn, program, key) is not None:
            return _replay_txn(conn, program, key, "adjust" if amount < 0 else "earn", amount) | {
                "balance": balance_view(book)
            }
        words = Reason(f"人工调整：{reason}", f"manual adjustment: {reason}")
        if amount > 0:
            award = Award(rule_id="manual", points=amount, reason_zh=words.zh, reason_en=words.en)
            book.credit(award, key, pending=False)
        else:
            book.draw("adjust", -amount, key, words, counter_account=ADJUSTMENTS)
        record_audit(
            conn,
            actor=who.actor,
            action="points.adjusted",
            subject=f"member:{member_id}",
            detail={
                "program_id": program,
                "amount": amount,
                "reason": reason,
                "request_id": request_id,
            },
            at=svc.now(),
        )
        result = {"replayed": False, "points": amount, "balance": balance_view(book)}
        tx.commit()
    return result


# ---------------------------------------------------------------- reading


def summary(
    svc: Services,
    who: Principal,
    member_id: str,
    program_id: str | None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Available, pending, reserved, debt and what expires in the next 30 days (or, with
    ``as_of``, the balances at a past instant rebuilt from the entries). Points past their
    expiry are not available, whether or not the expiry job has closed their lots yet."""
    who.require(Scope.READ)
    now = svc.now()
    with svc.engine.connect() as conn:
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id)
        config = svc.configs.at(conn, program, now)
        names = config.document.points.name
        account = points_repo.get_account(conn, program, member_id)
        expiring = _expiring(conn, program, member_id, now + timedelta(days=30))
        if as_of is not None:
            balances = _balances_at(conn, program, member_id, past_instant(as_of, now))
    values = {
        k: int(getattr(account, k)) if account else 0
        for k in ("available", "pending", "reserved", "debt")
    }
    # Lots past their expiry that the job has not closed yet are gone but for what checkout
    # holds keep (their captures' points, oldest first): the next spend or job run expires
    # the rest (``PointsBook.expire_due``), recording it at each lot's expiry.
    lapsed = [(at, points) for at, points in expiring if at <= now]
    kept = kept_by_holds(values["reserved"], [points for _, points in lapsed])
    gone = [(at, points - keep) for (at, points), keep in zip(lapsed, kept, strict=True)]
    if as_of is not None:
        balances["available"] -= sum(points for at, points in gone if at <= as_of)
        return {
            "member_id": member_id,
            "program_id": program,
            "as_of": as_of.isoformat(),
            **balances,
        }
    values["available"] -= sum(points for _, points in gone)
    expiring = [(at, keep) for (at, _), keep in zip(lapsed, kept, strict=True) if keep] + [
        row for row in expiring if row[0] > now
    ]
    return {
        "member_id": member_id,
        "program_id": program,
        "name": {"zh": names.zh, "en": names.en},
        "value_fen_per_point": config.document.points.value_fen,
        **values,
        # what only the holds' captures may take is not spendable (``PointsBook.spendable``)
        "spendable": max(values["available"] - max(values["reserved"], sum(kept)), 0),
        "expiring_30d": {
            "total": sum(p for _, p in expiring),
            "lots": [{"expires_at": at.isoformat(), "points": p} for at, p in expiring],
        },
    }


def _expiring(
    conn: Connection, program: str, member_id: str, until: datetime
) -> list[tuple[datetime, int]]:
    """(expiry, points) of the member's open lots that expire by ``until``, soonest first,
    those past their expiry included."""
    rows = conn.execute(
        select(point_lots.c.expires_at, func.sum(point_lots.c.remaining))
        .where(
            point_lots.c.program_id == program,
            point_lots.c.member_id == member_id,
            point_lots.c.status == "active",
            point_lots.c.remaining > 0,
            point_lots.c.expires_at.is_not(None),
            point_lots.c.expires_at <= until,
        )
        .group_by(point_lots.c.expires_at)
        .order_by(point_lots.c.expires_at)
    ).all()
    return [(at, int(points)) for at, points in rows]


def _balances_at(conn: Connection, program: str, member_id: str, at: datetime) -> dict[str, int]:
    rows = conn.execute(
        select(point_entries.c.bucket, func.sum(point_entries.c.amount))
        .where(
            point_entries.c.program_id == program,
            point_entries.c.member_id == member_id,
            point_entries.c.occurred_at <= at,
        )
        .group_by(point_entries.c.bucket)
    ).all()
    sums = {bucket: int(total) for bucket, total in rows}
    return {
        "available": sums.get("available", 0),
        "pending": sums.get("pending", 0),
        "debt": -sums.get("debt", 0),
    }


def flow(svc: Services, who: Principal, program_id: str | None, months: int) -> dict[str, Any]:
    """``points_jobs.flow`` of a program the key may use (admin scope): the platform's keys
    any program, a store's keys their own."""
    who.require(Scope.ADMIN)
    with svc.engine.connect() as conn:
        program = program_for_key(svc, conn, who, program_id)
    return points_jobs.flow(svc, program, months)


def entries(
    svc: Services,
    who: Principal,
    member_id: str,
    program_id: str | None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """The member's points history, newest first, a page at a time (``before_id`` cursor)."""
    who.require(Scope.READ)
    with svc.engine.connect() as conn:
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id)
        conditions = [point_txns.c.program_id == program, point_txns.c.member_id == member_id]
        if since is not None:
            conditions.append(point_txns.c.occurred_at >= since)
        if until is not None:
            conditions.append(point_txns.c.occurred_at < until)
        if kind is not None:
            conditions.append(point_txns.c.kind == kind)
        if before_id is not None:
            conditions.append(point_txns.c.id < before_id)
        txns = conn.execute(
            select(point_txns)
            .where(and_(*conditions))
            .order_by(point_txns.c.id.desc())
            .limit(limit)
        ).all()
        moves: dict[int, dict[str, int]] = {}
        if txns:
            for txn_id, bucket, amount in conn.execute(
                select(
                    point_entries.c.txn_id, point_entries.c.bucket, func.sum(point_entries.c.amount)
                )
                .where(
                    point_entries.c.txn_id.in_([t.id for t in txns]),
                    points_repo.MEMBER_LEGS,
                )
                .group_by(point_entries.c.txn_id, point_entries.c.bucket)
            ).all():
                moves.setdefault(txn_id, {})[bucket] = int(amount)
    items = [
        {
            "id": t.id,
            "kind": t.kind,
            "occurred_at": t.occurred_at.isoformat(),
            "available": moves.get(t.id, {}).get("available", 0),
            "pending": moves.get(t.id, {}).get("pending", 0),
            "debt": -moves.get(t.id, {}).get("debt", 0),
            "order_id": t.order_id,
            "rule_id": t.rule_id,
            "config_version": t.config_version,
            "reason": {"zh": t.reason_zh, "en": t.reason_en},
            "actor": t.actor,
        }
        for t in txns
    ]
    next_cursor = items[-1]["id"] if len(items) == limit else None
    return {
        "member_id": member_id,
        "program_id": program,
        "entries": items,
        "next_before_id": next_cursor,
    }
