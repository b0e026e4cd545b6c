"""Order facts: orders, their items and their refunds (售后)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select, update

from huiyuan.db.tables import order_items, orders, refunds, reviews

_LOCK_ORDER = select(orders).where(orders.c.order_id == bindparam("p_id")).with_for_update()
_ORDER_EXISTS = select(orders.c.order_id).where(orders.c.order_id == bindparam("p_id"))
_INSERT_ORDER = orders.insert()
_INSERT_ITEMS = order_items.insert()


def lock_order(conn: Connection, order_id: str) -> Row[Any] | None:
    return conn.execute(_LOCK_ORDER, {"p_id": order_id}).first()


def order_exists(conn: Connection, order_id: str) -> bool:
    return conn.execute(_ORDER_EXISTS, {"p_id": order_id}).first() is not None


def insert_order(conn: Connection, order: dict[str, Any], items: list[dict[str, Any]]) -> None:
    conn.execute(_INSERT_ORDER, order)
    conn.execute(_INSERT_ITEMS, items)


def order_lines(conn: Connection, order_id: str) -> Sequence[Row[Any]]:
    query = select(order_items).where(order_items.c.order_id == order_id)
    return conn.execute(query.order_by(order_items.c.line_no)).all()


def set_order_status(conn: Connection, order_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(orders).where(orders.c.order_id == order_id).values(**values))


def refund_exists(conn: Connection, refund_id: str) -> bool:
    query = select(refunds.c.refund_id).where(refunds.c.refund_id == refund_id)
    return conn.execute(query).first() is not None


def record_refund(
    conn: Connection, refund: dict[str, Any], item_refunds: list[tuple[str, int, int]]
) -> None:
    """Store the refund and add it to the order's and items' refunded totals, in SQL."""
    conn.execute(refunds.insert().values(**refund))
    conn.execute(
        update(orders)
        .where(orders.c.order_id == refund["order_id"])
        .values(refunded_amount=orders.c.refunded_amount + refund["amount"])
    )
    for sku, quantity, amount in item_refunds:
        conn.execute(
            update(order_items)
            .where(order_items.c.order_id == refund["order_id"], order_items.c.sku == sku)
            .values(
                refunded_quantity=order_items.c.refunded_quantity + quantity,
                refunded_amount=order_items.c.refunded_amount + amount,
            )
        )


def orders_of_member(conn: Connection, member_id: str, limit: int = 20) -> Sequence[Row[Any]]:
    query = (
        select(orders)
        .where(orders.c.member_id == member_id)
        .order_by(orders.c.paid_at.desc())
        .limit(limit)
    )
    return conn.execute(query).all()


def order_totals(conn: Connection, member_id: str, store_id: str | None = None) -> Row[Any]:
    """Count, paid and refunded totals of a member's orders (of one store, if named)."""
    query = select(
        func.count(orders.c.order_id).label("orders"),
        func.coalesce(func.sum(orders.c.amount), 0).label("paid"),
        func.coalesce(func.sum(orders.c.refunded_amount), 0).label("refunded"),
        func.max(orders.c.paid_at).label("last_paid_at"),
    ).where(orders.c.member_id == member_id, orders.c.status != "cancelled")
    if store_id is not None:
        query = query.where(orders.c.store_id == store_id)
    row = conn.execute(query).first()
    assert row is not None
    return row


def get_review(conn: Connection, review_id: str) -> Row[Any] | None:
    query = select(reviews).where(reviews.c.review_id == review_id).with_for_update()
    return conn.execute(query).first()


def insert_review(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(reviews.insert().values(**row))


def delete_review(conn: Connection, review_id: str, at: Any) -> None:
    conn.execute(update(reviews).where(reviews.c.review_id == review_id).values(deleted_at=at))
