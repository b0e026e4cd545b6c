"""SQL of growth entries, members' tiers, tier history and upgrade gifts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from huiyuan.db.tables import (
    growth_entries,
    member_tiers,
    orders,
    point_lots,
    reviews,
    tier_gifts,
    tier_history,
    wallet_accounts,
)
from huiyuan.db.upsert import insert_ignore

_GROWTH = {
    name: dialect.insert(growth_entries)
    .on_conflict_do_nothing(index_elements=["program_id", "idem_key"])
    .returning(growth_entries.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_LOCK_TIER = (
    select(member_tiers)
    .where(
        member_tiers.c.program_id == bindparam("p_program"),
        member_tiers.c.member_id == bindparam("p_member"),
    )
    .with_for_update()
)


def insert_growth(conn: Connection, row: dict[str, Any]) -> bool:
    """Write a growth entry; False if its idempotency key was used already."""
    dialect = "postgresql" if conn.dialect.name == "postgresql" else "sqlite"
    return conn.execute(_GROWTH[dialect], row).first() is not None


def lock_member_tier(
    conn: Connection, program_id: str, member_id: str, lowest: str, at: datetime
) -> Row[Any]:
    params = {"p_program": program_id, "p_member": member_id}
    row = conn.execute(_LOCK_TIER, params).first()
    if row is None:
        insert_ignore(
            conn,
            member_tiers,
            {
                "program_id": program_id,
                "member_id": member_id,
                "tier_id": lowest,
                "reached_at": at,
                "growth_total": 0,
                "updated_at": at,
            },
            ["program_id", "member_id"],
        )
        row = conn.execute(_LOCK_TIER, params).first()
    assert row is not None
    return row


def get_member_tier(conn: Connection, program_id: str, member_id: str) -> Row[Any] | None:
    query = select(member_tiers).where(
        member_tiers.c.program_id == program_id, member_tiers.c.member_id == member_id
    )
    return conn.execute(query).first()


def add_growth_total(conn: Connection, program_id: str, member_id: str, amount: int) -> None:
    conn.execute(
        update(member_tiers)
        .where(member_tiers.c.program_id == program_id, member_tiers.c.member_id == member_id)
        .values(growth_total=member_tiers.c.growth_total + amount)
    )


def set_member_tier(
    conn: Connection, program_id: str, member_id: str, values: dict[str, Any]
) -> None:
    conn.execute(
        update(member_tiers)
        .where(member_tiers.c.program_id == program_id, member_tiers.c.member_id == member_id)
        .values(**values)
    )


def add_history(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(tier_history.insert().values(**row))


def history_of(
    conn: Connection, program_id: str, member_id: str, limit: int = 50
) -> Sequence[Row[Any]]:
    query = (
        select(tier_history)
        .where(tier_history.c.program_id == program_id, tier_history.c.member_id == member_id)
        .order_by(tier_history.c.id.desc())
        .limit(limit)
    )
    return conn.execute(query).all()


def grant_gift_once(
    conn: Connection, program_id: str, member_id: str, tier_id: str, period: str, at: datetime
) -> bool:
    row = {
        "program_id": program_id,
        "member_id": member_id,
        "tier_id": tier_id,
        "period": period,
        "granted_at": at,
    }
    return (
        insert_ignore(conn, tier_gifts, row, ["program_id", "member_id", "tier_id", "period"]) == 1
    )


@dataclass(frozen=True, slots=True)
class PurchaseGrowth:
    """What one purchase rule credited for an order, on what basis, and took back since."""

    rule_id: str
    credited: int
    basis_fen: int
    taken_back: int


def purchase_growth_of_order(
    conn: Connection, program_id: str, member_id: str, order_id: str
) -> list[PurchaseGrowth]:
    """Per rule, the purchase growth an order earned and what refunds took back (exact
    columns: an order id may hold SQL LIKE wildcards, and one rule id may prefix another)."""
    query = (
        select(
            growth_entries.c.rule_id,
            growth_entries.c.kind,
            func.sum(growth_entries.c.amount).label("amount"),
            func.max(growth_entries.c.basis_fen).label("basis_fen"),
        )
        .where(
            growth_entries.c.program_id == program_id,
            growth_entries.c.member_id == member_id,
            growth_entries.c.order_id == order_id,
            growth_entries.c.kind.in_(("purchase", "purchase_refund")),
            growth_entries.c.rule_id.is_not(None),
        )
        .group_by(growth_entries.c.rule_id, growth_entries.c.kind)
    )
    credited: dict[str, tuple[int, int]] = {}
    taken: dict[str, int] = {}
    for row in conn.execute(query):
        if row.kind == "purchase":
            credited[row.rule_id] = (int(row.amount), int(row.basis_fen or 0))
        else:
            taken[row.rule_id] = -int(row.amount)
    return [
        PurchaseGrowth(rule_id, amount, basis, taken.get(rule_id, 0))
        for rule_id, (amount, basis) in sorted(credited.items())
    ]


def growth_since(conn: Connection, program_id: str, member_id: str, since: datetime) -> int:
    query = select(func.coalesce(func.sum(growth_entries.c.amount), 0)).where(
        growth_entries.c.program_id == program_id,
        growth_entries.c.member_id == member_id,
        growth_entries.c.occurred_at > since,
    )
    return int(conn.execute(query).scalar_one())


def growth_of_rule_since(
    conn: Connection, program_id: str, member_id: str, rule_id: str, since: datetime
) -> int:
    query = select(func.coalesce(func.sum(growth_entries.c.amount), 0)).where(
        growth_entries.c.program_id == program_id,
        growth_entries.c.member_id == member_id,
        growth_entries.c.rule_id == rule_id,
        growth_entries.c.occurred_at >= since,
        growth_entries.c.amount > 0,
    )
    return int(conn.execute(query).scalar_one())


def spend_since(conn: Connection, member_id: str, store_id: str | None, since: datetime) -> int:
    query = select(func.coalesce(func.sum(orders.c.amount - orders.c.refunded_amount), 0)).where(
        orders.c.member_id == member_id, orders.c.paid_at > since, orders.c.status != "cancelled"
    )
    if store_id is not None:
        query = query.where(orders.c.store_id == store_id)
    return int(conn.execute(query).scalar_one())


def points_earned_since(conn: Connection, program_id: str, member_id: str, since: datetime) -> int:
    query = select(func.coalesce(func.sum(point_lots.c.amount - point_lots.c.clawed), 0)).where(
        point_lots.c.program_id == program_id,
        point_lots.c.member_id == member_id,
        point_lots.c.earned_at > since,
    )
    return int(conn.execute(query).scalar_one())


def recharged_total(conn: Connection, program_id: str, member_id: str) -> int:
    query = select(wallet_accounts.c.recharged_total).where(
        wallet_accounts.c.program_id == program_id, wallet_accounts.c.member_id == member_id
    )
    return int(conn.execute(query).scalar_one_or_none() or 0)


def due_for_checkpoint(conn: Connection, now: datetime, limit: int) -> Sequence[Any]:
    query = (
        select(member_tiers.c.program_id, member_tiers.c.member_id)
        .where(member_tiers.c.next_check_at <= now)
        .order_by(member_tiers.c.next_check_at, member_tiers.c.program_id, member_tiers.c.member_id)
        .limit(limit)
    )
    return conn.execute(query).all()


def photo_reviews_of_sku(conn: Connection, sku: str) -> int:
    query = select(func.count()).where(reviews.c.sku == sku, reviews.c.has_photos.is_(True))
    return int(conn.execute(query).scalar_one())
