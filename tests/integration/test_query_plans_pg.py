"""Lookups that run on every refund, review and job find their rows through an index, so they
cost the same on a ledger of millions of rows as on an empty one.

Each lookup is run as the code runs it, its statement captured and explained on PostgreSQL
with sequential scans switched off: a plan that still reads a whole table has no index to
use. Each of these once read the whole table (a refund scanned every points transaction of
the program: 5.4 ms at 12,845 transactions, 0.07 ms through the member's index).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, event

from huiyuan.db import events_repo, points_repo, tiers_repo
from huiyuan.services.context import Services

from ..conftest import DATABASES

pytestmark = pytest.mark.skipif("postgresql" not in DATABASES, reason="PostgreSQL plans")


def plans_of(pg: Services, call: Callable[[Connection], Any]) -> list[str]:
    """The plans of every statement ``call`` runs, as PostgreSQL would run them with no
    sequential scan it could avoid."""
    captured: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    with pg.engine.begin() as conn:
        event.listen(conn, "before_cursor_execute", grab)
        try:
            call(conn)
        finally:
            event.remove(conn, "before_cursor_execute", grab)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return [
            "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}", params))
            for sql, params in captured
        ]


def index_conditions(plan: str) -> list[str]:
    return [line.strip() for line in plan.splitlines() if "Index Cond" in line]


def test_a_refund_finds_the_orders_captures_through_the_members_transactions(pg: Services):
    # when a refund looks up what the order's checkout hold captured, and the captures
    plans = plans_of(
        pg,
        lambda conn: (
            points_repo.redeemed_for_order(conn, "platform", "u1", "o1"),
            points_repo.txns_of_order(conn, "platform", "u1", "o1", "capture"),
        ),
    )
    # then both narrow the transactions by member through an index
    assert len(plans) == 2
    for plan in plans:
        assert "Seq Scan" not in plan, plan
        assert any("member_id" in c for c in index_conditions(plan)), plan


def test_a_review_finds_the_lots_it_credited_through_the_members_lots(pg: Services):
    # when a deleted review looks up the lots it credited
    (plan,) = plans_of(
        pg, lambda conn: points_repo.lots_of_subject(conn, "platform", "u1", "review:r1")
    )
    # then the member's lots are found by the lots' own index
    assert "Seq Scan" not in plan, plan
    assert "ix_point_lots_member" in plan, plan
    assert any("member_id" in c for c in index_conditions(plan)), plan


def test_a_photo_review_counts_its_skus_photo_reviews_through_an_index(pg: Services):
    (plan,) = plans_of(pg, lambda conn: tiers_repo.photo_reviews_of_sku(conn, "sku-1"))
    assert "Seq Scan" not in plan, plan
    assert "ix_reviews_photos_of_sku" in plan, plan


def test_the_deferred_events_job_reads_only_deferred_events(pg: Services):
    (plan,) = plans_of(
        pg,
        lambda conn: events_repo.deferred_before(conn, pg.now(), 100),
    )
    assert "Seq Scan" not in plan, plan
    assert "ix_events_waiting_on" in plan, plan


def test_a_transactions_member_legs_are_found_through_the_index_of_member_legs(pg: Services):
    # when a refund reads what a spend moved in the member's available points
    (plan,) = plans_of(pg, lambda conn: points_repo.member_moved(conn, 1))
    # then the partial index of member legs finds them (system legs are not in it)
    assert "Seq Scan" not in plan, plan
    assert "ix_point_entries_txn_member" in plan, plan
