"""SQL of the wallet: accounts, transactions, entries, recharges and payments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from huiyuan.db.tables import (
    wallet_accounts,
    wallet_entries,
    wallet_payments,
    wallet_recharges,
    wallet_txns,
)
from huiyuan.db.upsert import insert_ignore

_LOCK = (
    select(wallet_accounts)
    .where(
        wallet_accounts.c.program_id == bindparam("p_program"),
        wallet_accounts.c.member_id == bindparam("p_member"),
    )
    .with_for_update()
)
_TXN = {
    name: dialect.insert(wallet_txns)
    .on_conflict_do_nothing(index_elements=["program_id", "idem_key"])
    .returning(wallet_txns.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def lock_account(conn: Connection, program_id: str, member_id: str, at: datetime) -> Row[Any]:
    params = {"p_program": program_id, "p_member": member_id}
    row = conn.execute(_LOCK, params).first()
    if row is None:
        insert_ignore(
            conn,
            wallet_accounts,
            {
                "program_id": program_id,
                "member_id": member_id,
                "principal": 0,
                "bonus": 0,
                "recharged_total": 0,
                "updated_at": at,
            },
            ["program_id", "member_id"],
        )
        row = conn.execute(_LOCK, params).first()
    assert row is not None
    return row


def get_account(conn: Connection, program_id: str, member_id: str) -> Row[Any] | None:
    query = select(wallet_accounts).where(
        wallet_accounts.c.program_id == program_id, wallet_accounts.c.member_id == member_id
    )
    return conn.execute(query).first()


def move(
    conn: Connection,
    program_id: str,
    member_id: str,
    at: datetime,
    *,
    principal: int,
    bonus: int,
    recharged: int = 0,
) -> None:
    conn.execute(
        update(wallet_accounts)
        .where(wallet_accounts.c.program_id == program_id, wallet_accounts.c.member_id == member_id)
        .values(
            principal=wallet_accounts.c.principal + principal,
            bonus=wallet_accounts.c.bonus + bonus,
            recharged_total=wallet_accounts.c.recharged_total + recharged,
            updated_at=at,
        )
    )


def insert_txn(conn: Connection, row: dict[str, Any]) -> int | None:
    dialect = "postgresql" if conn.dialect.name == "postgresql" else "sqlite"
    found = conn.execute(_TXN[dialect], row).first()
    return None if found is None else int(found[0])


def find_txn(conn: Connection, program_id: str, idem_key: str) -> Row[Any] | None:
    query = select(wallet_txns).where(
        wallet_txns.c.program_id == program_id, wallet_txns.c.idem_key == idem_key
    )
    return conn.execute(query).first()


def insert_entries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(wallet_entries.insert(), rows)


def get_recharge(conn: Connection, program_id: str, recharge_id: str) -> Row[Any] | None:
    query = (
        select(wallet_recharges)
        .where(
            wallet_recharges.c.program_id == program_id,
            wallet_recharges.c.recharge_id == recharge_id,
        )
        .with_for_update()
    )
    return conn.execute(query).first()


def insert_recharge(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(wallet_recharges.insert().values(**row))


def update_recharge(
    conn: Connection, program_id: str, recharge_id: str, values: dict[str, Any]
) -> None:
    conn.execute(
        update(wallet_recharges)
        .where(
            wallet_recharges.c.program_id == program_id,
            wallet_recharges.c.recharge_id == recharge_id,
        )
        .values(**values)
    )


def get_payment(conn: Connection, program_id: str, payment_id: str) -> Row[Any] | None:
    query = (
        select(wallet_payments)
        .where(
            wallet_payments.c.program_id == program_id, wallet_payments.c.payment_id == payment_id
        )
        .with_for_update()
    )
    return conn.execute(query).first()


def insert_payment(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(wallet_payments.insert().values(**row))


def update_payment(
    conn: Connection, program_id: str, payment_id: str, values: dict[str, Any]
) -> None:
    conn.execute(
        update(wallet_payments)
        .where(
            wallet_payments.c.program_id == program_id, wallet_payments.c.payment_id == payment_id
        )
        .values(**values)
    )
