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

from huiyuan.db import bulk_repo, events_repo, points_repo, tiers_repo
from huiyuan.services import points_jobs, programs
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


# ---------------------------------------------------------------- statistics older than the rows
#
# A new installation's tables are analysed while they hold a few rows; a burst of events
# then adds thousands before autovacuum analyses them again. Plans made meanwhile (and the
# event path keeps its plans for the connection's life) must still look each key up rather
# than read the table: counted here as index scans started in the transaction, one per key
# (a plan reading the table starts one).


def _index_scans(conn: Connection, table: str) -> int:
    found = conn.exec_driver_sql(
        "SELECT idx_scan FROM pg_stat_xact_user_tables WHERE relname = %(t)s", {"t": table}
    ).scalar_one()
    return int(found)


def test_a_batch_looks_each_event_id_up_though_the_statistics_say_there_are_two(pg: Services):
    # given a sender's events analysed when there were two, and 3,000 more since
    insert = (
        "INSERT INTO events (sender, event_id, type, member_id, occurred_at, received_at, "
        "body_hash, data, status, response_status, response_body, applied_at) "
        "SELECT 'platform', 'e' || g, 'order.paid', 'm' || g, now(), now(), 'h', '{}', "
        "'applied', 200, '{}', now() "
        "FROM generate_series(CAST(%(first)s AS int), CAST(%(last)s AS int)) AS g"
    )
    with pg.engine.begin() as conn:
        conn.exec_driver_sql(insert, {"first": 1, "last": 2})
        conn.exec_driver_sql("ANALYZE events")
        conn.exec_driver_sql(insert, {"first": 3, "last": 3002})
    # when a batch asks which of three event ids the sender used already, on the event path
    with pg.uow(generic_plans=True) as tx:
        before = _index_scans(tx.conn, "events")
        facts = bulk_repo.payment_facts(tx.conn, "platform", ["e7", "e2900", "new"], [], [], [])
        scans = _index_scans(tx.conn, "events") - before
    # then it found them by looking each up, not by reading the sender's 3,002 events
    assert facts.seen == {"e7", "e2900"}
    assert scans == 3


def test_an_orders_lines_are_checked_against_their_order_though_the_statistics_say_one(
    pg: Services,
):
    orders = (
        "INSERT INTO orders (order_id, member_id, status, amount, shipping_fee, "
        "refunded_amount, paid_at, sender, paid_event_id) "
        "SELECT 'o' || g, 'u1', 'paid', 100, 0, 0, now(), 'platform', 'pay-' || g "
        "FROM generate_series(CAST(%(first)s AS int), CAST(%(last)s AS int)) AS g"
    )
    lines = (
        "INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price, "
        "paid_amount, virtual, refunded_quantity, refunded_amount) "
        "SELECT 'o' || (CAST(%(first)s AS int) + g), n, 'sku-' || n, 'thing', 1, 100, 100, "
        "false, 0, 0 "
        "FROM generate_series(0, CAST(%(orders)s AS int) - 1) AS g, generate_series(1, 3) AS n"
    )
    with pg.engine.connect() as conn:
        # given orders analysed when there was one
        conn.exec_driver_sql(
            "INSERT INTO members (member_id, addresses, invoice_titles, origin, created_at, "
            "updated_at) VALUES ('u1', '[]', '[]', 'auto', now(), now())"
        )
        conn.exec_driver_sql(orders, {"first": 1, "last": 1})
        conn.exec_driver_sql("ANALYZE orders")
        conn.commit()
        # and the lines of 50 orders written on this connection when there were 51 (the
        # check's plan is made then, and kept for the connection's life)
        conn.exec_driver_sql(orders, {"first": 2, "last": 51})
        conn.exec_driver_sql(lines, {"first": 2, "orders": 50})
        conn.commit()
        # and 3,000 orders more since
        conn.exec_driver_sql(orders, {"first": 52, "last": 3051})
        conn.commit()
        # when 900 lines of 300 orders are written in one statement
        before = _index_scans(conn, "orders")
        conn.exec_driver_sql(lines, {"first": 1000, "orders": 300})
        scans = _index_scans(conn, "orders") - before
        conn.commit()
    # then the reference check looked the orders up (once per line, or once per order where
    # the lookups are remembered), rather than read all 3,051 orders
    assert 300 <= scans <= 900


def test_the_points_flow_reads_its_months_of_the_programs_system_legs_through_an_index(
    pg: Services,
):
    # given the platform's program
    programs.apply_document(pg, "platform", {"points": {"earning": []}}, actor="test")
    captured: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "point_entries" in statement:
            captured.append((statement, parameters))

    # when the flow of its last three months is asked for
    event.listen(pg.engine, "before_cursor_execute", grab)
    try:
        points_jobs.flow(pg, "platform", 3)
    finally:
        event.remove(pg.engine, "before_cursor_execute", grab)
    # then the system legs of those months are found through the index of system legs by time
    ((sql, params),) = captured
    with pg.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}", params))
    assert "ix_point_entries_system_time" in plan, plan
    assert any("occurred_at" in c for c in index_conditions(plan)), plan
