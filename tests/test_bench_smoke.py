"""The benchmark machinery (``python -m bench``) in a tiny configuration, on PostgreSQL.

Nothing here is timed: the benchmarks report ratios, never pass/fail timings. These tests prove
the machinery measures the right thing — the hand-written expiry statement leaves exactly the
ledger the expiry job leaves, and the load workers apply events through the service layer.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from bench import expiry, fresh, http_latency, ingest, pgbench, scratch

from .conftest import DATABASES, PG_ADMIN_URL

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif("postgresql" not in DATABASES, reason="the benchmarks need PostgreSQL"),
]

ADMIN_URL = sa.engine.make_url(PG_ADMIN_URL).set(database="postgres").render_as_string(False)
TAG = f"smoke{os.getpid()}"


def test_pgbench_tps_is_read_from_its_report() -> None:
    report = (
        "number of failed transactions: 0 (0.000%)\n"
        "tps = 1365.600634 (without initial connection time)\n"
    )
    assert pgbench.parse_tps(report) == pytest.approx(1365.600634)
    with pytest.raises(RuntimeError):
        pgbench.parse_tps("pgbench: error: connection refused")


def test_scratch_databases_are_only_benchmark_ones() -> None:
    assert scratch.db_name("single", "x1") == "huiyuan_bench_single_x1"
    for name in ("test", "huiyuan_test_p1_main", "postgres"):
        with pytest.raises(ValueError):
            scratch.drop(name, ADMIN_URL)


def test_expiry_job_and_set_based_statement_leave_the_same_ledger() -> None:
    spec = expiry.ExpirySpec(lots=300, lots_per_member=3)
    result = expiry.run(spec, TAG, ADMIN_URL)
    assert result.same, result.differences
    # 100 members; member 0 holds a reservation of 1 point: its oldest lot keeps that point
    # (and loses the rest), so every lot loses points
    assert result.expired == 300
    assert ("active", 1, 1) in [row[:3] for row in result.lots_by_status]


def test_load_workers_apply_order_paid_through_the_services() -> None:
    with scratch.scratch(scratch.db_name("single", TAG), ADMIN_URL) as url:
        ingest.clone_members(url, 200)
        spec = ingest.LoadSpec(
            url=url,
            mode=ingest.BATCH,
            workers=2,
            members=200,
            batch_size=10,
            warmup=0.1,
            seconds=0.5,
            zipf_s=1.1,
        )
        result = ingest.run_load(spec, "smoke")
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            orders = conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
            members = conn.execute(sa.text("SELECT count(*) FROM members")).scalar_one()
        engine.dispose()
    assert result.errors == 0, result.first_error
    assert result.events > 0
    assert orders >= result.events  # every counted event left its order
    assert members == 201  # the clones and the prototype: no event created a member


def test_respond_async_load_counts_what_was_applied_not_what_was_answered() -> None:
    with scratch.scratch(scratch.db_name("async", TAG), ADMIN_URL) as url:
        ingest.clone_members(url, 200)
        spec = ingest.LoadSpec(url=url, workers=2, members=200, warmup=0.1, seconds=0.5, wait=False)
        result = ingest.run_load(spec, "smoke")
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            orders = conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
        engine.dispose()
    assert result.errors == 0, result.first_error
    assert result.events > 0 and result.accepted is not None and result.accepted > 0
    assert result.left_queued == 0  # no event was left without a leader
    assert orders >= result.events


def test_http_latency_load_earns_and_redeems_through_the_api() -> None:
    with scratch.scratch(scratch.db_name("http", TAG), ADMIN_URL) as url:
        ingest.clone_members(url, 200)
        spec = http_latency.HttpSpec(
            url=url, members=200, warmup=0.3, seconds=1.0, holders=20, clients=1, threads=2
        )
        result = http_latency.run(spec)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            redeemed = conn.execute(
                sa.text("SELECT count(*) FROM point_txns WHERE kind = 'redeem'")
            ).scalar_one()
            paid = conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
        engine.dispose()
    for phase in (result.peak, result.half):
        assert phase.errors == 0, phase.first_error
        assert phase.latencies_ms["earn"] and phase.latencies_ms["redeem"]
    assert result.offered == pytest.approx(result.peak.rate / 2)
    # every answered redemption left its transaction, every answered earn its order (the
    # holders' 20 seed orders, the prototype's and the check's besides)
    answered = [result.warm, result.peak, result.half]
    assert redeemed == sum(len(p.latencies_ms["redeem"]) + p.ramp["redeem"] for p in answered)
    assert paid == 22 + sum(len(p.latencies_ms["earn"]) + p.ramp["earn"] for p in answered)


def test_a_new_installation_is_measured_before_and_after_its_statistics() -> None:
    spec = fresh.FreshSpec(new_members=40, batches=2, batch_size=20)
    result = fresh.run(spec, TAG, ADMIN_URL)
    # every batch applied (``run`` raises on a refusal), each timed
    assert result.new_members == 40 and result.new_seconds > 0
    assert len(result.stale) == len(result.fresh) == 2
    assert all(seconds > 0 for seconds in result.stale + result.fresh)
