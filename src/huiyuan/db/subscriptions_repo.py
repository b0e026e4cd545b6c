"""SQL of paid memberships (付费会员) and of the order facts the savings calculator reads.

A subscription row is one term bought by one purchase: ``created_at`` is the instant of the
purchase (the event's ``occurred_at``, which the refund window counts from), ``price_fen`` what
was paid for it (0 for a trial), ``starts_at``/``ends_at`` the term (a term bought while another
runs starts where the chain ends). ``status`` is ``active`` until the term is refunded or the
expiry job marks it ``expired`` once it has ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, exists, func, select, update

from huiyuan.db.tables import order_items, orders, point_lots, subscriptions

_LATER = subscriptions.alias("later")


def of_member(conn: Connection, program_id: str, member_id: str) -> Sequence[Row[Any]]:
    """Every term of the member in the program, oldest first."""
    query = (
        select(subscriptions)
        .where(subscriptions.c.program_id == program_id, subscriptions.c.member_id == member_id)
        .order_by(subscriptions.c.starts_at, subscriptions.c.id)
    )
    return conn.execute(query).all()


def find(conn: Connection, program_id: str, purchase_id: str) -> Row[Any] | None:
    query = select(subscriptions).where(
        subscriptions.c.program_id == program_id, subscriptions.c.purchase_id == purchase_id
    )
    return conn.execute(query.with_for_update()).first()


def purchase_exists(conn: Connection, member_id: str, purchase_id: str) -> bool:
    query = select(subscriptions.c.id).where(
        subscriptions.c.member_id == member_id, subscriptions.c.purchase_id == purchase_id
    )
    return conn.execute(query.limit(1)).first() is not None


def insert(conn: Connection, row: dict[str, Any]) -> int:
    result = conn.execute(subscriptions.insert().values(**row).returning(subscriptions.c.id))
    return int(result.scalar_one())


def set_status(conn: Connection, subscription_id: int, status: str) -> None:
    conn.execute(
        update(subscriptions).where(subscriptions.c.id == subscription_id).values(status=status)
    )


def in_force(conn: Connection, program_id: str, member_id: str, at: datetime) -> Row[Any] | None:
    """The term giving benefits at ``at`` (an expired term still counts for a past instant)."""
    query = (
        select(subscriptions)
        .where(
            subscriptions.c.program_id == program_id,
            subscriptions.c.member_id == member_id,
            subscriptions.c.status != "refunded",
            subscriptions.c.starts_at <= at,
            subscriptions.c.ends_at > at,
        )
        .order_by(subscriptions.c.starts_at.desc(), subscriptions.c.id.desc())
        .limit(1)
    )
    return conn.execute(query).first()


def mark_used(conn: Connection, member_id: str, at: datetime) -> Sequence[Any]:
    """Mark the member's running terms (every program) as used; the rows newly marked."""
    running = (
        subscriptions.c.member_id == member_id,
        subscriptions.c.status == "active",
        subscriptions.c.benefit_used.is_(False),
        subscriptions.c.starts_at <= at,
        subscriptions.c.ends_at > at,
    )
    rows = conn.execute(
        select(
            subscriptions.c.id,
            subscriptions.c.program_id,
            subscriptions.c.plan_id,
            subscriptions.c.purchase_id,
        )
        .where(*running)
        .order_by(subscriptions.c.program_id, subscriptions.c.id)
    ).all()
    if rows:
        conn.execute(
            update(subscriptions)
            .where(subscriptions.c.id.in_([r.id for r in rows]))
            .values(benefit_used=True)
        )
    return rows


def expire_ended(conn: Connection, now: datetime) -> int:
    result = conn.execute(
        update(subscriptions)
        .where(subscriptions.c.status == "active", subscriptions.c.ends_at <= now)
        .values(status="expired")
    )
    return int(result.rowcount)


def unreminded_plans(conn: Connection, now: datetime) -> Sequence[Any]:
    """(program_id, plan_id) of running terms not reminded yet."""
    query = (
        select(subscriptions.c.program_id, subscriptions.c.plan_id)
        .where(
            subscriptions.c.status == "active",
            subscriptions.c.reminded_at.is_(None),
            subscriptions.c.ends_at > now,
        )
        .distinct()
        .order_by(subscriptions.c.program_id, subscriptions.c.plan_id)
    )
    return conn.execute(query).all()


def due_reminders(
    conn: Connection, program_id: str, plan_id: str, now: datetime, until: datetime
) -> Sequence[Row[Any]]:
    """Terms of a plan ending in (now, until], not reminded, that end their member's chain (a
    member who already renewed is not reminded of the term before the renewal)."""
    renewed = exists().where(
        and_(
            _LATER.c.program_id == subscriptions.c.program_id,
            _LATER.c.member_id == subscriptions.c.member_id,
            _LATER.c.status != "refunded",
            _LATER.c.ends_at > subscriptions.c.ends_at,
        )
    )
    query = (
        select(subscriptions)
        .where(
            subscriptions.c.program_id == program_id,
            subscriptions.c.plan_id == plan_id,
            subscriptions.c.status == "active",
            subscriptions.c.reminded_at.is_(None),
            subscriptions.c.ends_at > now,
            subscriptions.c.ends_at <= until,
            ~renewed,
        )
        .order_by(subscriptions.c.id)
        .with_for_update(of=subscriptions, skip_locked=True)
    )
    return conn.execute(query).all()


def set_reminded(conn: Connection, ids: Sequence[int], now: datetime) -> None:
    if ids:
        conn.execute(
            update(subscriptions).where(subscriptions.c.id.in_(list(ids))).values(reminded_at=now)
        )


# ---------------------------------------------------------------- order facts for savings


def orders_between(
    conn: Connection, member_id: str, store_id: str | None, since: datetime, until: datetime
) -> Sequence[Any]:
    """The member's orders paid in [since, until], not cancelled (of one store, if named)."""
    query = select(
        orders.c.order_id, orders.c.paid_at, orders.c.shipping_fee, orders.c.store_id
    ).where(
        orders.c.member_id == member_id,
        orders.c.status != "cancelled",
        orders.c.paid_at >= since,
        orders.c.paid_at <= until,
    )
    if store_id is not None:
        query = query.where(orders.c.store_id == store_id)
    return conn.execute(query.order_by(orders.c.paid_at, orders.c.order_id)).all()


def lines_of(conn: Connection, order_ids: Sequence[str]) -> Sequence[Any]:
    """Item lines with what is left paid after refunds."""
    if not order_ids:
        return []
    query = (
        select(
            order_items.c.order_id,
            order_items.c.sku,
            order_items.c.category,
            (order_items.c.paid_amount - order_items.c.refunded_amount).label("net"),
        )
        .where(order_items.c.order_id.in_(list(order_ids)))
        .order_by(order_items.c.order_id, order_items.c.line_no)
    )
    return conn.execute(query).all()


def points_of_orders(conn: Connection, program_id: str, order_ids: Sequence[str]) -> dict[str, int]:
    """Points each order earned in the program, net of what refunds clawed back."""
    if not order_ids:
        return {}
    query = (
        select(point_lots.c.order_id, func.sum(point_lots.c.amount - point_lots.c.clawed))
        .where(
            point_lots.c.program_id == program_id,
            point_lots.c.order_id.in_(list(order_ids)),
            point_lots.c.status != "cancelled",
        )
        .group_by(point_lots.c.order_id)
    )
    return {order_id: int(points or 0) for order_id, points in conn.execute(query).all()}
