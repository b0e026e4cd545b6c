"""``bulk_repo.write`` refuses rows it cannot write as they are, before anything is sent."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from huiyuan.db import bulk_repo
from huiyuan.db.tables import order_items
from huiyuan.services import events as event_service
from huiyuan.services.context import Services
from huiyuan.services.principals import SYSTEM

from .bodies import paid, registered


def _item(order_id: str, sku: str, **extra: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "line_no": 1,
        "sku": sku,
        "name": '名字, "quoted" \\ {braces}\nnew line',
        "quantity": 1,
        "unit_price": 100,
        "paid_amount": 100,
        "virtual": False,
        "refunded_quantity": 0,
        "refunded_amount": 0,
        **extra,
    }


def _write(svc: Services, rows: list[dict[str, Any]]) -> None:
    with svc.engine.begin() as conn:
        bulk_repo.write(
            conn, [(order_items, rows)], pending={}, at=datetime.now(UTC), terms_used=set()
        )


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ([_item("o1", "a", colour="red")], "order_items has no column(s) ['colour']"),
        ([_item("o1", "a"), _item("o1", "b", category="x")], "every row must name the same"),
    ],
    ids=["unknown-column", "rows-of-different-columns"],
)
def test_rows_it_cannot_write_are_refused_and_nothing_is_written(
    svc: Services, rows: list[dict[str, Any]], says: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        _write(svc, rows)
    with svc.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(order_items)).scalar_one() == 0


def test_what_it_writes_reads_back_the_same(svc: Services) -> None:
    # given an order (its member, its lines)
    for body in (registered("reg-1"), paid("pay-1", "o1")):
        [outcome] = event_service.ingest_batch(svc, SYSTEM, [body])
        assert outcome.ok, outcome.body
    rows = [
        _item("o1", "odd-1", category=None, brand="null"),
        _item("o1", "odd-2", name="", category="美妆", brand='"Glow"', virtual=True),
    ]
    # when lines with quotes, backslashes, braces, a new line and missing values are written
    _write(svc, rows)
    # then they read back exactly as given
    with svc.engine.connect() as conn:
        found = (
            conn.execute(
                sa.select(order_items)
                .where(order_items.c.sku.in_(["odd-1", "odd-2"]))
                .order_by(order_items.c.sku)
            )
            .mappings()
            .all()
        )
    assert [{k: row[k] for k in rows[0]} for row in found] == rows
