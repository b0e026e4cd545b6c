"""What events do to points: earning on payment, release on completion, cancellation and
clawback on refunds, restoring redeemed points, and fixed points for actions.

Called by the event handlers inside the event's transaction, with the member's row locked. An
order counts in the platform's program and, for a store's order, in the store's program too,
each by its own rules in force when the order was paid. Every movement's idempotency key derives
from the order, lot or event, so re-applying an event can never double a movement.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row

from huiyuan.db import orders_repo, points_repo, subscriptions_repo, tiers_repo
from huiyuan.db.audit_repo import enqueue
from huiyuan.domain import points as dp
from huiyuan.domain.business_time import day_start
from huiyuan.domain.errors import PointsError, conflict
from huiyuan.services import budgets
from huiyuan.services.context import Services
from huiyuan.services.owners import PLATFORM_PROGRAM
from huiyuan.services.points_book import REDEEMED, PointsBook, Reason
from huiyuan.services.program_configs import ProgramConfig

Effect = dict[str, Any]


def _books(
    svc: Services,
    conn: Connection,
    member_id: str,
    store_id: str | None,
    at: datetime,
    actor: str,
) -> list[PointsBook]:
    """The member's points books in the programs an activity of this store counts in."""
    return [
        PointsBook(svc, conn, config, member_id, at, actor=actor, owner_id=owner)
        for config, owner in earning_programs(svc, conn, store_id, at)
    ]


def earning_programs(
    svc: Services, conn: Connection, store_id: str | None, at: datetime
) -> list[tuple[ProgramConfig, str]]:
    """The programs (their version in force at ``at``, and their owner) whose points an
    activity of this store (``None``: the platform's own) counts in."""
    return [
        (config, owner)
        for config, owner in svc.configs_of_activity(conn, store_id, at)
        if config.document.points.enabled
    ]


def earn_key(order_id: str, rule_id: str) -> str:
    return f"earn:{order_id}:{rule_id}"


def order_view(event: Any, data: Any, order_number: int) -> dp.OrderView:
    lines = [dp.Line(i.sku, i.category, i.brand, i.paid_amount, i.virtual) for i in data.items]
    return dp.OrderView(
        data.order_id,
        event.store_id,
        data.channel.value if data.channel else None,
        event.occurred_at,
        data.amount,
        lines,
        order_number,
    )


def needs_tier(rules: Any) -> bool:
    return any(r.conditions.tiers for r in rules)


def needs_plans(rules: Any) -> bool:
    return any(r.conditions.plans for r in rules)


def _plans(book: PointsBook, rules: Any, at: datetime) -> frozenset[str]:
    """The paid plan running for the member in the book's program at ``at``, looked up only
    if a rule depends on it."""
    if not needs_plans(rules):
        return frozenset()
    row = subscriptions_repo.in_force(book.conn, book.program_id, book.member_id, at)
    return frozenset() if row is None else frozenset({str(row.plan_id)})


def granted_effect(
    program_id: str, award: dp.Award, lot_id: int | None, *, pending: bool
) -> Effect:
    return {
        "kind": "points.pending" if pending else "points.earned",
        "program_id": program_id,
        "rule_id": award.rule_id,
        "points": award.points,
        "lot_id": lot_id,
        "reason": award.reason_zh,
    }


def _history(book: PointsBook, rules: Any, at: datetime) -> dp.History:
    if not any(r.caps.per_day or r.caps.per_month for r in rules):
        return dp.NO_HISTORY
    today_start = day_start(at, book.svc.settings.zone)
    today, this_month = points_repo.earned_today_and_month(
        book.conn, book.program_id, book.member_id, today_start, today_start.replace(day=1)
    )
    return dp.History(today=today, this_month=this_month)


def _tier(book: PointsBook, rules: Any) -> str | None:
    """The member's tier in the book's program, looked up only if a rule depends on it."""
    if not needs_tier(rules):
        return None
    row = tiers_repo.get_member_tier(book.conn, book.program_id, book.member_id)
    return None if row is None else str(row.tier_id)


def _grant(
    book: PointsBook,
    award: dp.Award,
    idem_key: str,
    *,
    pending: bool,
    order_id: str | None,
    at: datetime,
) -> Effect:
    if points_repo.find_txn(book.conn, book.program_id, idem_key) is not None:
        return {
            "kind": "points.already_credited",
            "program_id": book.program_id,
            "rule_id": award.rule_id,
        }
    if award.funded_by and not budgets.take(
        book.conn, book.program_id, award.funded_by, book.member_id, award.points
    ):
        return {
            "kind": "points.budget_exhausted",
            "program_id": book.program_id,
            "rule_id": award.rule_id,
            "store_id": award.funded_by,
            "points": award.points,
        }
    lot_id = book.credit(award, idem_key, pending=pending, order_id=order_id, occurred_at=at)
    return granted_effect(book.program_id, award, lot_id, pending=pending)


# ---------------------------------------------------------------- orders


def on_order_paid(
    svc: Services, conn: Connection, event: Any, data: Any, actor: str
) -> list[Effect]:
    effects = []
    at = event.occurred_at
    order_number: int | None = None
    for book in _books(svc, conn, event.member_id, event.store_id, at, actor):
        effects += _capture_for_order(
            book, data.order_id, getattr(data, "points_reservation_id", None), data.amount
        )
        rules = book.config.order_rules
        if not rules:
            continue
        if order_number is None and any(r.conditions.first_n_orders for r in rules):
            order_number = points_repo.orders_before(conn, event.member_id, at) + 1
        view = order_view(event, data, order_number or 1)
        awards = dp.order_awards(
            rules,
            book.config.multipliers,
            view,
            tier=_tier(book, [*rules, *book.config.multipliers]),
            history=_history(book, rules, at),
            plans=_plans(book, [*rules, *book.config.multipliers], at),
        )
        for award in awards:
            key = earn_key(data.order_id, award.rule_id)
            effects.append(_grant(book, award, key, pending=True, order_id=data.order_id, at=at))
    return effects


def _capture_for_order(
    book: PointsBook, order_id: str, reservation_id: str | None, order_amount: int
) -> list[Effect]:
    conn = book.conn
    if reservation_id is not None and book.program_id != PLATFORM_PROGRAM:
        return []  # a named reservation belongs to the platform's points
    if reservation_id is None and book.reserved == 0:
        return []  # nothing is held, so no hold can be waiting for this order
    row = (
        points_repo.get_reservation(conn, book.program_id, reservation_id)
        if reservation_id is not None
        else points_repo.held_reservation_for_order(conn, book.program_id, order_id)
    )
    if row is None:
        if reservation_id is not None:
            raise conflict(
                PointsError.RESERVATION_NOT_FOUND,
                f"no points reservation {reservation_id!r}",
                field="data.points_reservation_id",
            )
        return []
    if row.member_id != book.member_id:
        raise conflict(
            PointsError.RESERVATION_NOT_HELD,
            "the reservation is another member's",
            field="data.points_reservation_id",
        )
    if row.status == "captured":
        return [{"kind": "points.already_captured", "reservation_id": row.reservation_id}]
    redemption = book.config.document.points.redemption.to_domain()
    deduction_fen = int(row.amount) * redemption.fen_per_point
    if int(row.amount) > dp.max_deduction_points(redemption, order_amount + deduction_fen):
        raise conflict(
            PointsError.DEDUCTION_EXCEEDS_SHARE,
            f"points may pay at most {redemption.max_order_share:%} of an order",
            field="data.points_reservation_id",
        )
    amount = int(row.amount)
    book.expire_due()  # while the hold still keeps the lots it needs
    if row.status == "held":
        # Lift the hold first: the balance row requires reserved <= available at every
        # statement, and the spend below lowers available by what the hold covered.
        book.unhold(amount)
        covered = amount
    else:
        # The hold lapsed or was released before the payment came, and the member spent the
        # points meanwhile. The checkout gave the deduction and the order is paid: record the
        # order, take what the member still has, and report the rest instead of refusing it.
        covered = min(amount, max(book.spendable, 0))
    reason = Reason(f"订单 {order_id} 积分抵扣", f"order {order_id}: points deduction")
    txn_id = None
    if covered:
        txn_id = book.draw(
            "capture",
            covered,
            f"capture:{row.reservation_id}",
            reason,
            counter_account=REDEEMED,
            order_id=order_id,
            capturing=row.status == "held",  # points the hold kept from expiring are its own
        )
    points_repo.set_reservation(
        conn,
        book.program_id,
        row.reservation_id,
        {"status": "captured", "order_id": order_id, "txn_id": txn_id},
    )
    effect: Effect = {
        "kind": "points.captured",
        "program_id": book.program_id,
        "reservation_id": row.reservation_id,
        "points": covered,
    }
    if covered < amount:
        effect["shortfall"] = amount - covered
        enqueue(
            conn,
            [
                {
                    "topic": "points.capture_short",
                    "key": book.member_id,
                    "payload": {**effect, "member_id": book.member_id, "order_id": order_id},
                    "created_at": book.svc.now(),
                }
            ],
        )
    return [effect]


def on_order_completed(
    svc: Services, conn: Connection, event: Any, order: Row[Any], actor: str
) -> list[Effect]:
    effects: list[Effect] = []
    at = event.occurred_at
    for book in _books(svc, conn, order.member_id, order.store_id, at, actor):
        pending = book.config.document.points.pending
        for lot in points_repo.order_lots(conn, book.program_id, order.order_id):
            if lot.status != "pending":
                continue
            if pending.release == "after_return_window" and pending.return_window_days:
                due = at + timedelta(days=pending.return_window_days)
                points_repo.update_lot(conn, lot.id, {"release_due_at": due})
                effects.append(
                    {
                        "kind": "points.release_scheduled",
                        "lot_id": lot.id,
                        "release_at": due.isoformat(),
                    }
                )
            elif book.release_lot(lot, at):
                effects.append(
                    {
                        "kind": "points.released",
                        "program_id": book.program_id,
                        "lot_id": lot.id,
                        "points": int(lot.remaining),
                    }
                )
    return effects


def on_order_refunded(
    svc: Services,
    conn: Connection,
    event: Any,
    order: Row[Any],
    refunded_total: int,
    refund_id: str,
    actor: str,
) -> list[Effect]:
    """Take back earned points and give back redeemed ones, in proportion to the refunds."""
    effects: list[Effect] = []
    at = event.occurred_at
    for book in _books(svc, conn, order.member_id, order.store_id, at, actor):
        # Lots past their expiry expire before the order's lots are read: a clawback counts
        # what of its lot lapsed as taken back, and takes nothing from expired lots.
        book.expire_due()
        for lot in points_repo.order_lots(conn, book.program_id, order.order_id):
            if lot.status == "cancelled":
                continue
            due = dp.clawback_due(
                int(lot.amount), int(lot.clawed), refunded_total, int(order.amount)
            )
            if due <= 0:
                continue
            reason = Reason(
                f"订单 {order.order_id} 退款 {refund_id}，扣回积分",
                f"order {order.order_id} refund {refund_id}: points taken back",
            )
            was_pending = lot.status == "pending"
            taken, recovered = book.take_back(
                lot, due, f"clawback:{lot.id}:{refund_id}", reason, at
            )
            if recovered and lot.issuer != book.owner_id:
                budgets.give_back(conn, book.program_id, lot.issuer, book.member_id, recovered)
            if taken:
                effects.append(
                    {
                        "kind": "points.cancelled" if was_pending else "points.clawed_back",
                        "program_id": book.program_id,
                        "lot_id": lot.id,
                        "points": taken,
                        "debt": book.debt,
                    }
                )
        effects += _restore_redeemed(book, order, refunded_total, refund_id, at)
    return effects


def _restore_redeemed(
    book: PointsBook, order: Row[Any], refunded_total: int, refund_id: str, at: datetime
) -> list[Effect]:
    spent, restored = points_repo.redeemed_for_order(
        book.conn, book.program_id, book.member_id, order.order_id
    )
    due = dp.clawback_due(spent, restored, refunded_total, int(order.amount))
    if due <= 0:
        return []
    txns = points_repo.txns_of_order(
        book.conn, book.program_id, book.member_id, order.order_id, "capture"
    )
    reason = Reason(
        f"订单 {order.order_id} 退款，退还抵扣积分",
        f"order {order.order_id} refunded: deducted points returned",
    )
    book.restore(
        txns,
        due,
        f"restore:{order.order_id}:{refund_id}",
        reason,
        order_id=order.order_id,
        occurred_at=at,
    )
    return [{"kind": "points.restored", "program_id": book.program_id, "points": due}]


def on_order_cancelled(
    svc: Services, conn: Connection, event: Any, order: Row[Any], actor: str
) -> list[Effect]:
    """A cancelled order earns nothing and gives back what it redeemed or held."""
    effects = on_order_refunded(svc, conn, event, order, int(order.amount), "cancel", actor)
    for book in _books(svc, conn, order.member_id, order.store_id, event.occurred_at, actor):
        row = points_repo.held_reservation_for_order(conn, book.program_id, order.order_id)
        if row is not None:
            book.end_hold(int(row.amount))
            points_repo.set_reservation(
                conn, book.program_id, row.reservation_id, {"status": "released"}
            )
            effects.append(
                {"kind": "points.reservation_released", "reservation_id": row.reservation_id}
            )
    return effects


# ---------------------------------------------------------------- actions


def on_action(
    svc: Services,
    conn: Connection,
    event: Any,
    trigger: dp.Trigger,
    actor: str,
    channel: str | None = None,
    subject: str | None = None,
) -> list[Effect]:
    """Fixed points for an action (registration, sign-in, review, share, recharge).

    ``subject`` (``review:<id>``, ``recharge:<id>``) keys the points to what earned them, so
    deleting the review or refunding the recharge can take them back; otherwise the sending
    event keys them.
    """
    effects = []
    at = event.occurred_at
    for book in _books(svc, conn, event.member_id, event.store_id, at, actor):
        rules = book.config.fixed_rules
        if not rules:
            continue
        awards = dp.action_awards(
            rules,
            trigger,
            at=at,
            store=event.store_id,
            channel=channel,
            tier=_tier(book, rules),
            history=_history(book, rules, at),
            plans=_plans(book, rules, at),
        )
        for award in awards:
            key = f"{subject or 'action:' + actor}:{award.rule_id}"
            effects.append(_grant(book, award, key, pending=False, order_id=None, at=at))
    return effects


def order_row(conn: Connection, order_id: str) -> Row[Any]:
    row = orders_repo.lock_order(conn, order_id)
    assert row is not None
    return row


def take_back_subject(
    svc: Services,
    conn: Connection,
    event: Any,
    subject: str,
    share_num: int,
    share_den: int,
    actor: str,
) -> list[Effect]:
    """Take back (``share_num/share_den`` of) the points an action subject earned: a deleted
    review's (1/1) or a refunded recharge's (refunded/recharged, on running totals)."""
    effects: list[Effect] = []
    for book in _books(svc, conn, event.member_id, event.store_id, event.occurred_at, actor):
        for lot in points_repo.lots_of_subject(conn, book.program_id, book.member_id, subject):
            due = dp.clawback_due(int(lot.amount), int(lot.clawed), share_num, share_den)
            reason = Reason(f"{subject} 撤销，扣回积分", f"{subject} reversed: points taken back")
            taken, recovered = book.take_back(
                lot, due, f"takeback:{lot.id}:{event.id}", reason, event.occurred_at
            )
            if recovered and lot.issuer != book.owner_id:
                budgets.give_back(conn, book.program_id, lot.issuer, book.member_id, recovered)
            if taken:
                effects.append(
                    {
                        "kind": "points.clawed_back",
                        "program_id": book.program_id,
                        "lot_id": lot.id,
                        "points": due,
                    }
                )
    return effects
