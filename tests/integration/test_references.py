"""The database refuses rows that point at nothing, on both databases: SQLite with foreign
keys, PostgreSQL with a check per statement (migration 0017) — and on PostgreSQL, what they
point at is never deleted or re-keyed, and the points ledger never changes.

The code never writes such a row; these are the guarantees behind it, tried with raw SQL as
a bug or a hand-run statement would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from huiyuan.db.tables import CHECKED_PER_STATEMENT, order_items, orders, point_entries
from huiyuan.services import events as event_service
from huiyuan.services.context import Services
from huiyuan.services.principals import SYSTEM

from ..conftest import DATABASES
from .bodies import paid, registered
from .stored import item_row

_AT = datetime(2026, 2, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def story(svc: Services) -> Services:
    """A member who paid one order (with its points transaction and entries)."""
    for body in (registered("reg-1"), paid("pay-1", "o1")):
        [outcome] = event_service.ingest_batch(svc, SYSTEM, [body])
        assert outcome.ok, outcome.body
    return svc


def _order(order_id: str, member_id: str) -> dict[str, Any]:
    with_defaults = {"status": "paid", "amount": 100, "shipping_fee": 0, "refunded_amount": 0}
    return {
        "order_id": order_id,
        "member_id": member_id,
        "sender": "test",
        "paid_event_id": f"e-{order_id}",
        "paid_at": _AT,
        **with_defaults,
    }


def _entry(txn_id: int, amount: int) -> dict[str, Any]:
    return {
        "txn_id": txn_id,
        "program_id": "platform",
        "member_id": None,
        "account": "issuer:platform",
        "bucket": "total",
        "amount": amount,
        "occurred_at": _AT,
    }


def _count(svc: Services, table: sa.Table) -> int:
    with svc.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize(
    ("table", "rows", "named"),
    [
        (orders, lambda txn: [_order("o2", "u1"), _order("o3", "nobody")], "members"),
        (order_items, lambda txn: [item_row("o1", "extra"), item_row("no-order", "x")], "orders"),
        (point_entries, lambda txn: [_entry(txn, 5), _entry(txn + 1000, -5)], "point_txns"),
    ],
    ids=["order-of-no-member", "item-of-no-order", "entry-of-no-transaction"],
)
def test_a_statement_with_one_row_pointing_at_nothing_writes_none_of_its_rows(
    story: Services, table: sa.Table, rows: Callable[[int], list[dict[str, Any]]], named: str
) -> None:
    # given a member, their order and its points transaction
    with story.engine.connect() as conn:
        txn_id = int(conn.execute(sa.text("SELECT max(id) FROM point_txns")).scalar_one())
    before = _count(story, table)
    # when one statement adds a good row and one that points at nothing
    with pytest.raises(IntegrityError) as refused, story.engine.begin() as conn:
        conn.execute(table.insert(), rows(txn_id))
    # then the database refuses the statement, naming what is missing where it can, and
    # neither row is there
    assert _count(story, table) == before
    if story.engine.dialect.name == "postgresql":
        assert getattr(refused.value.orig, "sqlstate", None) == "23503"
        assert f'is not present in table "{named}"' in str(refused.value)


@pytest.mark.skipif("postgresql" not in DATABASES, reason="PostgreSQL's guards")
@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("DELETE FROM members", "members are never deleted"),
        ("UPDATE members SET member_id = 'u9'", "their ids never change"),
        ("DELETE FROM orders", "orders are never deleted"),
        ("UPDATE orders SET order_id = 'o9'", "their ids never change"),
        ("UPDATE orders SET member_id = 'u9'", "orders.member_id never changes"),
        ("UPDATE order_items SET order_id = 'o9'", "order_items.order_id never changes"),
        ("UPDATE point_txns SET reason_en = 'x'", "append-only"),
        ("DELETE FROM point_txns", "append-only"),
        ("UPDATE point_entries SET amount = amount * 2", "append-only"),
        ("DELETE FROM point_entries", "append-only"),
    ],
)
def test_what_rows_point_at_is_never_deleted_or_rekeyed_and_the_ledger_never_changes(
    pg: Services, statement: str, says: str
) -> None:
    # given a member who paid an order (points transaction and entries written)
    for body in (registered("reg-1"), paid("pay-1", "o1")):
        [outcome] = event_service.ingest_batch(pg, SYSTEM, [body])
        assert outcome.ok, outcome.body
    # when a statement would delete or re-key what rows point at, or change the ledger
    with pytest.raises(DBAPIError) as refused, pg.engine.begin() as conn:
        conn.execute(sa.text(statement))
    # then PostgreSQL refuses it and says why
    assert says in str(refused.value)


@pytest.mark.skipif("postgresql" not in DATABASES, reason="PostgreSQL's guards")
def test_an_update_that_keeps_the_keys_is_allowed(pg: Services) -> None:
    # given a member who paid an order
    for body in (registered("reg-1"), paid("pay-1", "o1")):
        [outcome] = event_service.ingest_batch(pg, SYSTEM, [body])
        assert outcome.ok, outcome.body
    # when the order's status changes, and its member id is set to what it already is
    with pg.engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET status = 'completed', member_id = member_id"))
    # then nothing refuses it
    with pg.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM orders")).scalar_one() == "completed"


@pytest.mark.skipif("postgresql" not in DATABASES, reason="PostgreSQL's triggers")
def test_each_foreign_key_postgresql_checks_per_statement_has_its_trigger(pg: Services) -> None:
    with pg.engine.connect() as conn:
        triggers = set(
            conn.execute(sa.text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars()
        )
        foreign_keys = set(
            conn.execute(sa.text("SELECT conname FROM pg_constraint WHERE contype = 'f'")).scalars()
        )
    assert triggers >= CHECKED_PER_STATEMENT
    assert not CHECKED_PER_STATEMENT & foreign_keys
