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
from .stored import item_row

_ODD = '名字, "quoted" \\ {braces}\nnew line'


def _write(svc: Services, rows: list[dict[str, Any]]) -> None:
    with svc.engine.begin() as conn:
        bulk_repo.write(
            conn, [(order_items, rows)], pending={}, at=datetime.now(UTC), terms_used=set()
        )


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ([item_row("o1", "a", colour="red")], "order_items has no column(s) ['colour']"),
        ([item_row("o1", "a"), item_row("o1", "b", category="x")], "every row must name the same"),
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
        item_row("o1", "odd-1", name=_ODD, category=None, brand="null"),
        item_row("o1", "odd-2", name="", category="美妆", brand='"Glow"', virtual=True),
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
