"""The points mall's tables: redemptions of items, and what was sold of limited ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select, update

from huiyuan.db.tables import mall_redemptions, mall_stock
from huiyuan.db.upsert import insert_ignore


def get_redemption(conn: Connection, program_id: str, redemption_id: str) -> Row[Any] | None:
    return conn.execute(
        select(mall_redemptions).where(
            mall_redemptions.c.program_id == program_id,
            mall_redemptions.c.redemption_id == redemption_id,
        )
    ).first()


def redeemed_by(
    conn: Connection, program_id: str, member_id: str, item_id: str, since: datetime | None
) -> int:
    """How many of the item the member has redeemed since ``since`` (``None``: ever),
    cancelled redemptions aside."""
    query = select(func.coalesce(func.sum(mall_redemptions.c.quantity), 0)).where(
        mall_redemptions.c.program_id == program_id,
        mall_redemptions.c.member_id == member_id,
        mall_redemptions.c.item_id == item_id,
        mall_redemptions.c.status == "redeemed",
    )
    if since is not None:
        query = query.where(mall_redemptions.c.created_at >= since)
    return int(conn.execute(query).scalar_one())


def of_member(
    conn: Connection, program_id: str, member_id: str, before_txn: int | None, limit: int
) -> list[Row[Any]]:
    """The member's mall redemptions, newest first (``before_txn``: the page after)."""
    query = select(mall_redemptions).where(
        mall_redemptions.c.program_id == program_id, mall_redemptions.c.member_id == member_id
    )
    if before_txn is not None:
        query = query.where(mall_redemptions.c.txn_id < before_txn)
    return list(conn.execute(query.order_by(mall_redemptions.c.txn_id.desc()).limit(limit)))


def insert_redemption(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(mall_redemptions.insert(), row)


def take_stock(conn: Connection, program_id: str, item_id: str, quantity: int, stock: int) -> bool:
    """Count ``quantity`` more of a limited item as sold, if that stays within ``stock``;
    False (and nothing counted) if it would not. One conditional update on the item's row: a
    concurrent redemption of the same item waits for it, then sees the new count."""
    insert_ignore(
        conn,
        mall_stock,
        {"program_id": program_id, "item_id": item_id, "sold": 0},
        ["program_id", "item_id"],
    )
    taken = conn.execute(
        update(mall_stock)
        .where(
            mall_stock.c.program_id == program_id,
            mall_stock.c.item_id == item_id,
            mall_stock.c.sold + quantity <= stock,
        )
        .values(sold=mall_stock.c.sold + quantity)
    ).rowcount
    return bool(taken)


def give_back_stock(conn: Connection, program_id: str, item_id: str, quantity: int) -> None:
    """A cancelled redemption of a limited item: its units are on sale again."""
    conn.execute(
        update(mall_stock)
        .where(mall_stock.c.program_id == program_id, mall_stock.c.item_id == item_id)
        .values(sold=mall_stock.c.sold - quantity)
    )


def mark_cancelled(conn: Connection, program_id: str, redemption_id: str, at: Any) -> None:
    conn.execute(
        update(mall_redemptions)
        .where(
            mall_redemptions.c.program_id == program_id,
            mall_redemptions.c.redemption_id == redemption_id,
        )
        .values(status="cancelled", cancelled_at=at)
    )


def sold(conn: Connection, program_id: str) -> dict[str, int]:
    """What was sold of each limited item of the program."""
    rows = conn.execute(
        select(mall_stock.c.item_id, mall_stock.c.sold).where(mall_stock.c.program_id == program_id)
    ).all()
    return {item: int(count) for item, count in rows}
