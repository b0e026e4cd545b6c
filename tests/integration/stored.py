"""Reading what the database holds, to prove what an event wrote — or that it wrote nothing."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from huiyuan.db import tables
from huiyuan.services.context import Services

# Bookkeeping, not data: how far each group-commit partition's leaders got (any batch moves
# it, also one whose every event was refused).
NOT_DATA = {tables.event_queue_parts.name}


def row_counts(svc: Services) -> dict[str, int]:
    """Rows in every table of the schema that holds data."""
    with svc.engine.connect() as conn:
        return {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in tables.metadata.sorted_tables
            if table.name not in NOT_DATA
        }


def rows(svc: Services, table: sa.Table, **where: Any) -> list[sa.RowMapping]:
    query = sa.select(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    primary = list(table.primary_key.columns)
    with svc.engine.connect() as conn:
        return list(conn.execute(query.order_by(*primary)).mappings())


def one(svc: Services, table: sa.Table, **where: Any) -> sa.RowMapping:
    found = rows(svc, table, **where)
    assert len(found) == 1, f"expected one {table.name} row for {where}, found {len(found)}"
    return found[0]


def inbox(svc: Services, event_id: str, sender: str = "platform") -> sa.RowMapping:
    return one(svc, tables.events, sender=sender, event_id=event_id)


def the_effect(effects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one effect of this kind in an event's effects (it must be there exactly once)."""
    found = [e for e in effects if e["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} effect, found {len(found)} in {effects}"
    return found[0]


def effects_of(effects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in effects if e["kind"] == kind]


def start_afresh(svc: Services, clock: Any, start: Any) -> None:
    """Empty every table and put the clock back to ``start``, so that each Hypothesis example
    is the same story every time it is replayed or shrunk."""
    from huiyuan.services import owners

    names = [t.name for t in reversed(tables.metadata.sorted_tables)]
    with svc.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
        else:
            for name in names:
                conn.execute(sa.text(f"DELETE FROM {name}"))
    svc.directory.invalidate()
    svc.configs.invalidate()
    clock.now = start
    owners.ensure_platform(svc)


def problem_of(response: Any, status: int, code: str) -> dict[str, Any]:
    """The problem document of a refused request, checked to be one with this status and code."""
    assert response.status_code == status, response.json()
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


def drop_connections(svc: Any) -> int:
    """What a database restart does to the pool: every other connection to the database is
    ended by the server. Returns how many."""
    killer = sa.create_engine(svc.engine.url, poolclass=sa.pool.NullPool)
    try:
        with killer.connect() as conn:
            query = (
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return int(conn.execute(sa.text(query)).scalar_one())
    finally:
        killer.dispose()


def item_row(order_id: str, sku: str, **columns: Any) -> dict[str, Any]:
    """An ``order_items`` row as Huiyuan writes one (one unit at ¥1), for tests that write
    rows themselves; ``columns`` override or add."""
    return {
        "order_id": order_id,
        "line_no": 1,
        "sku": sku,
        "name": sku,
        "quantity": 1,
        "unit_price": 100,
        "paid_amount": 100,
        "virtual": False,
        "refunded_quantity": 0,
        "refunded_amount": 0,
        **columns,
    }
