"""Points jobs: expiry, delayed release, expiry reminders, lapsed reservations, reconciliation
and the liability report.

Expiry is set-based and resumable: it walks the expired lots once, in id order, a chunk at a
time, each chunk one transaction (one statement on PostgreSQL) that closes the lots, writes one
balanced transaction per lot (idempotency key ``expire:<lot>``) and moves each member's balance
once. A crash loses at most the chunk in progress, which the next run picks up; running it twice
changes nothing the second time. Lots of members holding a reservation wait for the next run, so
a hold is never left uncovered; so do lots and accounts another transaction has locked, so a
chunk never waits for a lock.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, case, func, literal, select, update

from huiyuan.db import points_repo
from huiyuan.db.audit_repo import enqueue
from huiyuan.db.tables import (
    mall_redemptions,
    mall_stock,
    point_accounts,
    point_draws,
    point_entries,
    point_lots,
    point_reservations,
    point_restores,
    point_txns,
    wallet_accounts,
    wallet_entries,
    wallet_recharges,
    wallet_txns,
)
from huiyuan.domain.business_time import month_starts
from huiyuan.services.context import PLATFORM_OWNER, Services
from huiyuan.services.points_book import (
    ADJUSTMENTS,
    EXPIRED,
    EXPIRY_LABELS,
    REDEEMED,
    WRITTEN_OFF,
    PointsBook,
    issued,
)

Progress = Callable[[int], None]


def expire_lots(
    svc: Services,
    now: datetime | None = None,
    chunk: int = 5000,
    progress: Progress | None = None,
) -> int:
    """Close what is left of every lot whose expiry has passed; returns lots expired.

    The lots are walked once in id order, ``chunk`` at a time, each chunk its own transaction
    resuming after the last lot id the previous one looked at. ``progress`` is told how many
    lots each chunk expired.
    """
    now = now or svc.now()
    total, after = 0, 0
    while True:
        with svc.uow() as tx:
            done = points_repo.expire_due_lots(
                tx.conn, after=after, limit=chunk, now=now, at=svc.now(), labels=EXPIRY_LABELS
            )
            tx.commit()
        total += done.expired
        if progress is not None:
            progress(done.expired)
        if done.scanned < chunk:
            break
        after = done.last_id
    with svc.uow() as tx:  # spent-out lots past expiry are simply closed
        tx.conn.execute(
            update(point_lots)
            .where(
                point_lots.c.status == "active",
                point_lots.c.remaining == 0,
                point_lots.c.expires_at <= now,
            )
            .values(status="closed")
        )
        tx.commit()
    return total


def release_due_lots(svc: Services, now: datetime | None = None, limit: int = 1000) -> int:
    """Release pending lots whose return window has passed."""
    now = now or svc.now()
    with svc.uow() as tx:
        conn = tx.conn
        due = conn.execute(
            select(point_lots.c.program_id, point_lots.c.member_id, point_lots.c.id)
            .where(point_lots.c.status == "pending", point_lots.c.release_due_at <= now)
            .order_by(point_lots.c.program_id, point_lots.c.member_id, point_lots.c.id)
            .limit(limit)
        ).all()
        released = 0
        for (program_id, member_id), group in _grouped(due):
            book = _system_book(svc, conn, program_id, member_id, now)
            for lot in points_repo.spendable_or_pending(conn, [row.id for row in group]):
                released += book.release_lot(lot, lot.release_due_at)
        tx.commit()
    return released


def _grouped(rows: Any) -> list[tuple[tuple[str, str], list[Any]]]:
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        groups[(row.program_id, row.member_id)].append(row)
    return sorted(groups.items())


def _system_book(
    svc: Services, conn: Any, program_id: str, member_id: str, now: datetime
) -> PointsBook:
    config = svc.configs.at(conn, program_id, now)
    owner = svc.directory.owner_of(conn, program_id) or PLATFORM_OWNER
    return PointsBook(svc, conn, config, member_id, now, actor="system:jobs", owner_id=owner)


def sweep_reservations(svc: Services, now: datetime | None = None, limit: int = 1000) -> int:
    """Release holds whose time ran out before an order captured them."""
    now = now or svc.now()
    with svc.uow() as tx:
        conn = tx.conn
        rows = points_repo.lapsed_reservations(conn, now, limit)
        for row in sorted(rows, key=lambda r: (r.program_id, r.member_id)):
            book = _system_book(svc, conn, row.program_id, row.member_id, now)
            book.end_hold(int(row.amount))
            points_repo.set_reservation(
                conn, row.program_id, row.reservation_id, {"status": "expired"}
            )
        tx.commit()
    return len(rows)


def remind_expiring(svc: Services, now: datetime | None = None) -> int:
    """Queue one "points expiring soon" message per member and program for lots expiring
    within the program's ``expiry.reminder_days`` and not reminded yet; returns messages."""
    now = now or svc.now()
    queued = 0
    with svc.uow() as tx:
        conn = tx.conn
        program_ids = conn.execute(select(point_lots.c.program_id).distinct()).scalars().all()
        for program_id in program_ids:
            lead = svc.configs.at(conn, program_id, now).document.points.expiry.reminder_days
            if lead == 0:
                continue
            due = (
                point_lots.c.program_id == program_id,
                point_lots.c.status == "active",
                point_lots.c.remaining > 0,
                point_lots.c.reminded_at.is_(None),
                point_lots.c.expires_at > now,
                point_lots.c.expires_at <= now + timedelta(days=lead),
            )
            rows = conn.execute(
                select(
                    point_lots.c.member_id,
                    func.sum(point_lots.c.remaining),
                    func.min(point_lots.c.expires_at),
                )
                .where(*due)
                .group_by(point_lots.c.member_id)
            ).all()
            enqueue(
                conn,
                [
                    {
                        "topic": "points.expiring_soon",
                        "key": member_id,
                        "payload": {
                            "program_id": program_id,
                            "member_id": member_id,
                            "points": int(points),
                            "first_expires_at": first.isoformat(),
                        },
                        "created_at": now,
                    }
                    for member_id, points, first in rows
                ],
            )
            conn.execute(update(point_lots).where(*due).values(reminded_at=now))
            queued += len(rows)
        tx.commit()
    return queued


# ---------------------------------------------------------------- reconciliation


@dataclass
class Drift:
    kind: str
    subject: str
    expected: int
    found: int


@dataclass
class Reconciliation:
    accounts: int = 0
    transactions: int = 0
    drifts: list[Drift] = field(default_factory=list)


def reconcile(svc: Services) -> Reconciliation:
    """Rebuild every balance from the entries and lots and report any difference."""
    report = Reconciliation()
    with svc.engine.connect() as conn:
        sums = _member_buckets(conn, point_entries)
        lots: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for program, member, status, total in conn.execute(
            select(
                point_lots.c.program_id,
                point_lots.c.member_id,
                point_lots.c.status,
                func.sum(point_lots.c.remaining),
            ).group_by(point_lots.c.program_id, point_lots.c.member_id, point_lots.c.status)
        ):
            lots[(program, member)][status] = int(total)
        held: dict[tuple[str, str], int] = defaultdict(int)
        for program, member, total in conn.execute(
            select(
                point_reservations.c.program_id,
                point_reservations.c.member_id,
                func.sum(point_reservations.c.amount),
            )
            .where(point_reservations.c.status == "held")
            .group_by(point_reservations.c.program_id, point_reservations.c.member_id)
        ):
            held[(program, member)] = int(total)
        for account in conn.execute(select(point_accounts)):
            report.accounts += 1
            key = (account.program_id, account.member_id)
            subject = f"{account.program_id}/{account.member_id}"
            entry = sums.get(key, {})
            lot = lots.get(key, {})
            checks = [
                ("available_vs_entries", entry.get("available", 0), account.available),
                ("pending_vs_entries", entry.get("pending", 0), account.pending),
                ("debt_vs_entries", -entry.get("debt", 0), account.debt),
                ("available_vs_lots", lot.get("active", 0), account.available),
                ("pending_vs_lots", lot.get("pending", 0), account.pending),
                ("reserved_vs_holds", held.get(key, 0), account.reserved),
            ]
            report.drifts += [
                Drift(kind, subject, expected, int(found))
                for kind, expected, found in checks
                if expected != found
            ]
        report.drifts += [
            Drift("unbalanced_transaction", f"txn {txn_id}", 0, total)
            for txn_id, total in _unbalanced(conn, point_entries)
        ]
        for lot_id, amount, given in conn.execute(
            select(
                point_lots.c.id,
                point_lots.c.amount,
                func.sum(point_draws.c.amount - point_draws.c.restored),
            )
            .join(point_draws, point_draws.c.lot_id == point_lots.c.id)
            .group_by(point_lots.c.id, point_lots.c.amount)
            .having(func.sum(point_draws.c.amount - point_draws.c.restored) > point_lots.c.amount)
        ):
            report.drifts.append(Drift("lot_overdrawn", f"lot {lot_id}", int(amount), int(given)))
        given_back = (
            select(point_restores.c.draw_id, func.sum(point_restores.c.amount).label("amount"))
            .group_by(point_restores.c.draw_id)
            .subquery()
        )
        for draw_id, restored, recorded in conn.execute(
            select(point_draws.c.id, point_draws.c.restored, func.coalesce(given_back.c.amount, 0))
            .outerjoin(given_back, given_back.c.draw_id == point_draws.c.id)
            .where(point_draws.c.restored != func.coalesce(given_back.c.amount, 0))
        ):
            report.drifts.append(
                Drift("draw_restored_vs_restores", f"draw {draw_id}", int(recorded), int(restored))
            )
        report.transactions = int(
            conn.execute(select(func.count()).select_from(point_txns)).scalar_one()
        )
        _reconcile_wallets(conn, report)
        _reconcile_mall(conn, report)
    return report


def _reconcile_mall(conn: Any, report: Reconciliation) -> None:
    """A limited item's count of units sold is that of its redemptions not cancelled made
    while it had a stock, and
    each redemption still holds the points it took from the lots (none once cancelled)."""
    r = mall_redemptions.c
    counted = (
        select(r.program_id, r.item_id, func.sum(r.quantity).label("quantity"))
        .where(r.status == "redeemed", r.stocked)
        .group_by(r.program_id, r.item_id)
        .subquery()
    )
    for program, item, sold, quantity in conn.execute(
        select(
            mall_stock.c.program_id,
            mall_stock.c.item_id,
            mall_stock.c.sold,
            func.coalesce(counted.c.quantity, 0),
        ).outerjoin(
            counted,
            (counted.c.program_id == mall_stock.c.program_id)
            & (counted.c.item_id == mall_stock.c.item_id),
        )
    ):
        if int(sold) != int(quantity):
            report.drifts.append(
                Drift("mall_stock_vs_redemptions", f"{program}/{item}", int(quantity), int(sold))
            )
    held = func.coalesce(func.sum(point_draws.c.amount - point_draws.c.restored), 0)
    for program, redemption, status, points, found in conn.execute(
        select(r.program_id, r.redemption_id, r.status, r.points, held)
        .outerjoin(point_draws, point_draws.c.txn_id == r.txn_id)
        .group_by(r.program_id, r.redemption_id, r.status, r.points)
    ):
        expected = int(points) if status == "redeemed" else 0
        if int(found) != expected:
            report.drifts.append(
                Drift("mall_redemption_vs_draws", f"{program}/{redemption}", expected, int(found))
            )


def _member_buckets(conn: Any, entries: Table) -> dict[tuple[str, str], dict[str, int]]:
    """A ledger's member entries summed per (program, member) and bucket."""
    sums: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    c = entries.c
    for program, member, bucket, total in conn.execute(
        select(c.program_id, c.member_id, c.bucket, func.sum(c.amount))
        .where(c.account == "member")
        .group_by(c.program_id, c.member_id, c.bucket)
    ):
        sums[(program, member)][bucket] = int(total)
    return sums


def _unbalanced(conn: Any, entries: Table) -> list[tuple[int, int]]:
    """Transactions of a ledger whose entries do not sum to zero, with their sum."""
    c = entries.c
    query = select(c.txn_id, func.sum(c.amount)).group_by(c.txn_id).having(func.sum(c.amount) != 0)
    return [(int(txn_id), int(total)) for txn_id, total in conn.execute(query)]


def _reconcile_wallets(conn: Any, report: Reconciliation) -> None:
    """Wallet balances against their entries, cumulative recharge against the recharges, and
    every wallet transaction balanced."""
    sums = _member_buckets(conn, wallet_entries)
    recharged: dict[tuple[str, str], int] = defaultdict(int)
    for program, member, total in conn.execute(
        select(
            wallet_recharges.c.program_id,
            wallet_recharges.c.member_id,
            func.sum(wallet_recharges.c.principal - wallet_recharges.c.refunded),
        ).group_by(wallet_recharges.c.program_id, wallet_recharges.c.member_id)
    ):
        recharged[(program, member)] = int(total)
    for account in conn.execute(select(wallet_accounts)):
        report.accounts += 1
        key = (account.program_id, account.member_id)
        subject = f"wallet {account.program_id}/{account.member_id}"
        checks = [
            ("wallet_principal_vs_entries", sums[key].get("principal", 0), account.principal),
            ("wallet_bonus_vs_entries", sums[key].get("bonus", 0), account.bonus),
            ("wallet_recharged_vs_recharges", recharged[key], account.recharged_total),
        ]
        report.drifts += [
            Drift(kind, subject, expected, int(found))
            for kind, expected, found in checks
            if expected != found
        ]
    report.drifts += [
        Drift("unbalanced_wallet_transaction", f"wallet txn {txn_id}", 0, total)
        for txn_id, total in _unbalanced(conn, wallet_entries)
    ]
    report.transactions += int(
        conn.execute(select(func.count()).select_from(wallet_txns)).scalar_one()
    )


FLOW_FIGURES = ("issued", "taken_back", "redeemed", "expired", "written_off", "adjusted_out")


def flow(svc: Services, program_id: str, months: int) -> dict[str, Any]:
    """A program's points month by month (business months in ``HUIYUAN_BUSINESS_TIMEZONE``),
    the last ``months`` of them up to the current one, read from the system legs of the
    ledger (each movement's other side, dated at its business time):

    - ``issued``: credited to members (earned, positive adjustments), and ``issued_by`` each
      issuer (the program's owner, or a store whose budget paid); ``taken_back``: clawed back
      from them by refunds;
    - ``redeemed``: spent (captures and redemptions, net of what refunds restored);
    - ``expired``: lapsed (net of lapsed points a refund took back); ``written_off``: clawbacks
      forgiven under ``write_off``; ``adjusted_out``: removed by negative adjustments;
    - ``change``: what members hold (available + pending − debt) moved by; ``balance``: what
      they held at the month's end.

    Each figure also in fen: a movement at the ``value_fen`` of the program's version in force
    when it happened (a month in which the value changed adds up both prices), the balance at
    the value in force at the month's end (or now, for the current month) — so where the value
    changed, a month's ``balance_fen`` is the last one's plus ``change_fen`` plus the
    revaluation."""
    now = svc.now()
    bounds = month_starts(now, svc.settings.zone, months)
    e = point_entries.c
    figures = [dict.fromkeys((*FLOW_FIGURES, "change"), 0) for _ in range(months)]
    fens = [dict.fromkeys((*FLOW_FIGURES, "change", "issued"), 0) for _ in range(months)]
    issuers: list[dict[str, int]] = [{} for _ in range(months)]

    def tally(n: int, figure: str, points: int, value: int) -> None:
        figures[n][figure] += points
        fens[n][figure] += points * value

    with svc.engine.connect() as conn:
        periods = _priced_periods(svc, conn, program_id, bounds)
        period = _period_of(e.occurred_at, periods)
        side = case((e.amount < 0, "out"), else_="in")
        for account, direction, p, total in conn.execute(
            select(e.account, side, period, func.sum(e.amount))
            .where(
                e.program_id == program_id,
                e.member_id.is_(None),
                e.occurred_at >= bounds[0],
                e.occurred_at < bounds[-1],
            )
            .group_by(e.account, side, period)
        ):
            _, n, value = periods[int(p)]
            points = int(total)
            tally(n, "change", -points, value)  # members' side moved by the opposite
            if account.startswith(_ISSUED) and direction == "out":
                issuer = account.removeprefix(_ISSUED)
                issuers[n][issuer] = issuers[n].get(issuer, 0) - points  # ``issued``: their sum
                fens[n]["issued"] -= points * value
            elif account.startswith(_ISSUED):
                tally(n, "taken_back", points, value)
            elif account in _FLOW_ACCOUNTS:
                figure, sign = _FLOW_ACCOUNTS[account]
                tally(n, figure, sign * points, value)
        a = point_accounts.c
        held = conn.execute(
            select(func.coalesce(func.sum(a.available + a.pending - a.debt), 0)).where(
                a.program_id == program_id
            )
        ).scalar_one()
        closing_value = [
            _value_fen(svc, conn, program_id, min(end, now) - _INSTANT) for end in bounds[1:]
        ]
        value_now = _value_fen(svc, conn, program_id, now)
    for row, by_issuer in zip(figures, issuers, strict=True):
        row["issued"] = sum(by_issuer.values())
    balance = int(held)  # now; each month's end is what later months' changes did not add
    for row in reversed(figures):
        row["balance"] = balance
        balance -= row["change"]
    return {
        "program_id": program_id,
        "value_fen_per_point": value_now,
        "months": [
            {
                "month": start.strftime("%Y-%m"),
                "starts_at": start.isoformat(),
                "ends_at": end.isoformat(),
                **row,
                **{f"{k}_fen": v for k, v in fen.items()},
                "balance_fen": row["balance"] * value,
                "value_fen_per_point": value,
                "issued_by": dict(sorted(by_issuer.items())),
            }
            for start, end, row, fen, value, by_issuer in zip(
                bounds[:-1], bounds[1:], figures, fens, closing_value, issuers, strict=True
            )
        ],
    }


_INSTANT = timedelta(microseconds=1)


def _value_fen(svc: Services, conn: Connection, program_id: str, at: datetime) -> int:
    return svc.configs.at(conn, program_id, at).document.points.value_fen


def _period_of(moment: Any, periods: list[tuple[datetime, int, int]]) -> Any:
    """SQL: the index in ``periods`` (``_priced_periods``) of the piece holding ``moment``;
    the last piece takes whatever comes after it (the callers read no later moment)."""
    last = len(periods) - 1
    whens = [(moment < end, n) for n, (end, _, _) in enumerate(periods[:last])]
    return case(*whens, else_=last) if whens else literal(last)


def _priced_periods(
    svc: Services, conn: Connection, program_id: str, bounds: list[datetime]
) -> list[tuple[datetime, int, int]]:
    """The months of ``bounds`` cut where the program's value per point changed: (end, the
    month's index, value_fen) of each piece, in order."""
    periods: list[tuple[datetime, int, int]] = []
    for n, (start, end) in enumerate(itertools.pairwise(bounds)):
        cuts = [start, *svc.configs.starts_between(conn, program_id, start, end), end]
        for piece_start, piece_end in itertools.pairwise(cuts):
            value = _value_fen(svc, conn, program_id, piece_start)
            if periods and periods[-1][1] == n and periods[-1][2] == value:
                periods[-1] = (piece_end, n, value)  # the same price: one piece
            else:
                periods.append((piece_end, n, value))
    return periods


_ISSUED = issued("")  # the prefix of every issuer's account: ``system:issued:<issuer>``

# System accounts whose net movement is one figure of ``flow``, and the sign that makes it a
# positive number of points (a forgiven clawback is a negative ``written_off`` leg).
_FLOW_ACCOUNTS = {
    REDEEMED: ("redeemed", 1),
    EXPIRED: ("expired", 1),
    ADJUSTMENTS: ("adjusted_out", 1),
    WRITTEN_OFF: ("written_off", -1),
}


def liability(svc: Services) -> list[dict[str, Any]]:
    """Per program and issuer: outstanding, pending, redeemed and expired, in points and fen.
    What members hold (outstanding, pending) is priced at the program's value per point now;
    what was redeemed or expired at the value in force when it was (as ``flow`` does)."""
    now = svc.now()
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"outstanding": 0, "pending": 0, "redeemed": 0, "expired": 0}
    )
    fens: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"outstanding": 0, "pending": 0, "redeemed": 0, "expired": 0}
    )
    lots, draws, txns, restores = point_lots.c, point_draws.c, point_txns.c, point_restores.c
    with svc.engine.connect() as conn:
        for program, issuer, status, total in conn.execute(
            select(lots.program_id, lots.issuer, lots.status, func.sum(lots.remaining))
            .where(lots.status.in_(("active", "pending")))
            .group_by(lots.program_id, lots.issuer, lots.status)
        ):
            bucket = "outstanding" if status == "active" else "pending"
            rows[(program, issuer)][bucket] += int(total)
            fens[(program, issuer)][bucket] += int(total) * _value_fen(svc, conn, program, now)
        programs = conn.execute(select(lots.program_id).distinct()).scalars().all()
        for program in programs:
            periods = _priced_periods(svc, conn, program, [_EPOCH, now + _INSTANT])
            period = _period_of(txns.occurred_at, periods)
            for issuer, kind, p, total in conn.execute(
                select(lots.issuer, draws.kind, period, func.sum(draws.amount - draws.restored))
                .join(point_lots, lots.id == draws.lot_id)
                .join(point_txns, txns.id == draws.txn_id)
                .where(lots.program_id == program, draws.kind.in_(_DRAWN))
                .group_by(lots.issuer, draws.kind, period)
            ):
                bucket = _DRAWN[kind]
                rows[(program, issuer)][bucket] += int(total)
                fens[(program, issuer)][bucket] += int(total) * periods[int(p)][2]
            # Points given back, netted above at the draw's value, are a movement of their own
            # at the value when they were given back (as the flow counts them): the difference.
            drawn, given = point_txns.alias("drawn"), point_txns.alias("given")
            drawn_in = _period_of(drawn.c.occurred_at, periods)
            given_in = _period_of(given.c.occurred_at, periods)
            for issuer, kind, p_drawn, p_given, total in conn.execute(
                select(lots.issuer, draws.kind, drawn_in, given_in, func.sum(restores.amount))
                .select_from(point_restores)
                .join(point_draws, draws.id == restores.draw_id)
                .join(point_lots, lots.id == draws.lot_id)
                .join(drawn, drawn.c.id == draws.txn_id)
                .join(given, given.c.id == restores.txn_id)
                .where(lots.program_id == program, draws.kind.in_(_DRAWN))
                .group_by(lots.issuer, draws.kind, drawn_in, given_in)
            ):
                value_then, value_back = periods[int(p_drawn)][2], periods[int(p_given)][2]
                fens[(program, issuer)][_DRAWN[kind]] += int(total) * (value_then - value_back)
            # Lapsed points a refund took back (``take_back``) did not lapse after all.
            e = point_entries.c
            taken_in = _period_of(e.occurred_at, periods)
            for issuer, p, total in conn.execute(
                select(lots.issuer, taken_in, func.sum(e.amount))
                .join(point_lots, lots.id == e.lot_id)
                .where(e.program_id == program, e.account == EXPIRED, e.amount < 0)
                .group_by(lots.issuer, taken_in)
            ):
                rows[(program, issuer)]["expired"] += int(total)
                fens[(program, issuer)]["expired"] += int(total) * periods[int(p)][2]
    return [
        {
            "program_id": program,
            "issuer": issuer,
            **figures,
            **{f"{k}_fen": v for k, v in fens[(program, issuer)].items()},
        }
        for (program, issuer), figures in sorted(rows.items())
    ]


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # before any ledger entry

# The kinds of draw the liability report counts, and the figure each counts in.
_DRAWN = {"redeem": "redeemed", "capture": "redeemed", "expire": "expired"}
