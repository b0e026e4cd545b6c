"""Nightly expiry: ``points_jobs.expire_lots`` against one hand-written set-based statement.

The lots are generated in SQL (``INSERT … SELECT generate_series``) into one scratch database,
with each member's points account holding exactly what their lots hold (and a few members
holding a reservation, whose oldest due points both sides must keep for it). That
database is vacuumed and copied file by file, so the job and the statement start from
identical data; afterwards the two databases are compared to prove they did the same work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from bench import machine, scratch
from bench.report import Ticker, say

NOW = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ExpirySpec:
    lots: int = 1_000_000
    lots_per_member: int = 10
    held_every: int = 100  # one member in this many has a point reserved: it outlives expiry
    chunk: int = 5000  # expire_lots' own default


@dataclass
class ExpiryResult:
    lots: int
    expired: int
    job_seconds: float
    sql_seconds: float
    same: bool
    differences: list[str]
    foreign: list[machine.Watch]
    lots_by_status: list[tuple[object, ...]]  # after the job: (status, lots, points)


def _generate(url: str, spec: ExpirySpec) -> None:
    members = max(1, spec.lots // spec.lots_per_member)
    engine = sa.create_engine(url, poolclass=NullPool)
    earned = NOW - timedelta(days=400)
    # Member of lot g: g * 7919 mod members, so one member's lots are spread over the id range
    # (as lots earned over a year are) and each chunk of the job touches many members.
    lots_sql = sa.text(
        """
        INSERT INTO point_lots (program_id, member_id, issuer, amount, remaining, clawed,
                                absorbed, status, order_id, rule_id, txn_id, earned_at,
                                released_at, release_due_at, expires_at, reminded_at)
        SELECT 'platform', 'xm' || lpad(((g::bigint * 7919) % :members)::text, 8, '0'),
               'platform', 100 + g % 400, 100 + g % 400 - g % 50, 0, 0, 'active',
               'xo' || g, 'base', g, :earned + g * interval '1 second',
               :earned + interval '7 days' + g * interval '1 second', NULL,
               :earned + interval '372 days' + (g % 1000) * interval '1 minute', NULL
        FROM generate_series(1, :lots) AS g
        """
    )
    accounts_sql = sa.text(
        """
        INSERT INTO point_accounts (program_id, member_id, available, pending, reserved, debt,
                                    updated_at)
        SELECT program_id, member_id, sum(remaining), 0,
               CASE WHEN substr(member_id, 3)::int % :held_every = 0 THEN 1 ELSE 0 END, 0,
               :earned
        FROM point_lots GROUP BY program_id, member_id
        """
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO owners (id, kind, name, created_at) "
                "VALUES ('platform', 'platform', 'Platform', :at) ON CONFLICT DO NOTHING"
            ),
            {"at": earned},
        )
        conn.execute(
            sa.text(
                "INSERT INTO programs (id, owner_id, name, created_at) "
                "VALUES ('platform', 'platform', 'Platform 会员', :at) ON CONFLICT DO NOTHING"
            ),
            {"at": earned},
        )
        conn.execute(lots_sql, {"members": members, "earned": earned, "lots": spec.lots})
        conn.execute(accounts_sql, {"held_every": spec.held_every, "earned": earned})
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        conn.execute(sa.text("CHECKPOINT"))
    engine.dispose()


def set_based_sql(expired_account: str) -> sa.TextClause:
    """The hand-written equivalent of ``expire_lots``: one statement, one transaction."""
    return sa.text(
        f"""
        WITH due AS MATERIALIZED (
            SELECT l.id, l.program_id, l.member_id, l.remaining, l.expires_at,
                   CASE WHEN a.reserved = 0 THEN 0 ELSE least(l.remaining, greatest(0,
                       a.reserved - (  -- a hold keeps its capture's points, oldest first
                           SELECT coalesce(sum(x.remaining), 0) FROM point_lots x
                           WHERE x.program_id = l.program_id AND x.member_id = l.member_id
                             AND x.status = 'active' AND x.remaining > 0
                             AND x.expires_at <= :now
                             AND (x.expires_at, x.id) < (l.expires_at, l.id)
                       ))) END AS keep
            FROM point_lots l
            JOIN point_accounts a ON a.program_id = l.program_id AND a.member_id = l.member_id
            WHERE l.status = 'active' AND l.remaining > 0 AND l.expires_at <= :now
            FOR UPDATE OF l, a
        ), closed AS (
            UPDATE point_lots l
            SET status = CASE WHEN due.keep = 0 THEN 'expired' ELSE 'active' END,
                remaining = due.keep
            FROM due WHERE l.id = due.id AND due.remaining > due.keep
            RETURNING due.id, due.program_id, due.member_id, due.remaining - due.keep AS gone,
                      due.keep, due.expires_at,
                      nextval(pg_get_serial_sequence('point_txns', 'id')) AS txn_id
        ), txns AS (
            INSERT INTO point_txns (id, program_id, member_id, kind, idem_key, order_id,
                                    rule_id, config_version, reason_zh, reason_en, actor,
                                    occurred_at, created_at)
            SELECT txn_id, program_id, member_id, 'expire',
                   'expire:' || id || CASE WHEN keep > 0 THEN ':' || keep ELSE '' END,
                   NULL, NULL, NULL, '积分过期', 'points expired', 'system:expiry', expires_at,
                   :created
            FROM closed
        ), entries AS (
            INSERT INTO point_entries (txn_id, program_id, member_id, account, bucket, amount,
                                       lot_id, occurred_at)
            SELECT c.txn_id, c.program_id,
                   CASE WHEN leg.member THEN c.member_id END,
                   CASE WHEN leg.member THEN 'member' ELSE '{expired_account}' END,
                   CASE WHEN leg.member THEN 'available' ELSE 'total' END,
                   CASE WHEN leg.member THEN -c.gone ELSE c.gone END,
                   c.id, c.expires_at
            FROM closed c CROSS JOIN (VALUES (true), (false)) AS leg(member)
        ), draws AS (
            INSERT INTO point_draws (txn_id, lot_id, kind, amount, restored)
            SELECT txn_id, id, 'expire', gone, 0 FROM closed
        ), balances AS (
            UPDATE point_accounts a
            SET available = a.available - s.points, updated_at = :created
            FROM (SELECT program_id, member_id, sum(gone) AS points
                  FROM closed GROUP BY program_id, member_id) s
            WHERE a.program_id = s.program_id AND a.member_id = s.member_id
        ), spent AS (
            UPDATE point_lots SET status = 'closed'
            WHERE status = 'active' AND remaining = 0 AND expires_at <= :now
        )
        SELECT count(*) FROM closed
        """
    )


_SUMMARY = {
    "lots by status": "SELECT status, count(*), sum(remaining) FROM point_lots GROUP BY 1",
    "expiry transactions": (
        "SELECT kind, count(*), count(DISTINCT idem_key), min(actor), min(reason_en) "
        "FROM point_txns GROUP BY 1"
    ),
    "entries": (
        "SELECT account, bucket, count(*), sum(amount), count(DISTINCT lot_id) "
        "FROM point_entries GROUP BY 1, 2"
    ),
    "draws": "SELECT kind, count(*), sum(amount), sum(restored) FROM point_draws GROUP BY 1",
    "balances": (
        "SELECT count(*), sum(available), sum(reserved), "
        "count(*) FILTER (WHERE available > 0) FROM point_accounts"
    ),
    "per-lot legs": (
        "SELECT count(*) FROM point_lots l JOIN point_draws d ON d.lot_id = l.id "
        "JOIN point_txns t ON t.id = d.txn_id AND split_part(t.idem_key, ':', 2) = l.id::text "
        "AND t.member_id = l.member_id AND t.occurred_at = l.expires_at"
    ),
}


def _summary(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {
                name: sorted(tuple(r) for r in conn.execute(sa.text(q)))
                for name, q in _SUMMARY.items()
            }
    finally:
        engine.dispose()


def _warm(url: str) -> None:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            for table in ("point_lots", "point_accounts"):
                conn.execute(sa.text(f"SELECT count(*) FROM {table}"))
    finally:
        engine.dispose()


def _run_job(url: str, spec: ExpirySpec, due: int) -> tuple[int, float]:
    from huiyuan.config import Settings
    from huiyuan.services import points_jobs
    from huiyuan.services.context import Services

    svc = Services.from_settings(Settings(database_url=url))
    ticker, done = Ticker(10.0), 0
    started = time.perf_counter()

    def progress(count: int) -> None:
        nonlocal done
        done += count
        if ticker.due():
            elapsed = time.perf_counter() - started
            say(
                f"  expire_lots: {done:>9,}/{due:,} lots  {elapsed:6.1f} s  "
                f"{done / max(elapsed, 1e-9):>8,.0f} lots/s"
            )

    ticker.due()
    expired = points_jobs.expire_lots(svc, now=NOW, chunk=spec.chunk, progress=progress)
    seconds = time.perf_counter() - started
    svc.engine.dispose()
    return expired, seconds


def _run_sql(url: str) -> tuple[int, float]:
    from huiyuan.services.points_book import EXPIRED

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        started = time.perf_counter()
        with engine.begin() as conn:
            expired = conn.execute(
                set_based_sql(EXPIRED), {"now": NOW, "created": datetime.now(UTC)}
            ).scalar_one()
        return int(expired), time.perf_counter() - started
    finally:
        engine.dispose()


def run(spec: ExpirySpec, tag: str = "", admin_url: str = scratch.ADMIN_URL) -> ExpiryResult:
    job_db = scratch.db_name("expiry_job", tag)
    sql_db = scratch.db_name("expiry_sql", tag)
    try:
        job_url = scratch.create_migrated(job_db, admin_url)
        say(f"expiry: generating {spec.lots:,} lots in {job_db} …")
        started = time.perf_counter()
        _generate(job_url, spec)
        say(f"expiry: generated in {time.perf_counter() - started:.1f} s; copying to {sql_db} …")
        sql_url = scratch.create(sql_db, admin_url, template=job_db)
        engine = sa.create_engine(job_url, poolclass=NullPool)
        with engine.connect() as conn:
            due = conn.execute(
                sa.text(
                    "SELECT count(*) FROM point_lots "
                    "WHERE status = 'active' AND remaining > 0 AND expires_at <= :now"
                ),
                {"now": NOW},
            ).scalar_one()
        engine.dispose()

        _warm(job_url)
        say(f"expiry: points_jobs.expire_lots over {due:,} due lots (chunk {spec.chunk}) …")
        (expired, job_seconds), job_watch = machine.watched(lambda: _run_job(job_url, spec, due))
        say(f"expiry: job expired {expired:,} lots in {job_seconds:.2f} s")

        _warm(sql_url)
        say("expiry: one set-based SQL statement …")
        (sql_expired, sql_seconds), sql_watch = machine.watched(lambda: _run_sql(sql_url))
        say(f"expiry: SQL expired {sql_expired:,} lots in {sql_seconds:.2f} s")

        job_sum, sql_sum = _summary(job_url), _summary(sql_url)
        differences = [
            f"{name}: job {job_sum[name]} vs SQL {sql_sum[name]}"
            for name in _SUMMARY
            if job_sum[name] != sql_sum[name]
        ]
        if expired != sql_expired:
            differences.insert(0, f"expired: job {expired} vs SQL {sql_expired}")
        say(
            "expiry: job and SQL left identical ledgers"
            if not differences
            else "expiry: RESULTS DIFFER:\n  " + "\n  ".join(differences)
        )
        for name, watch in (("job", job_watch), ("SQL", sql_watch)):
            if watch.disturbed:
                say(f"expiry: WARNING during the {name}: {watch.describe()}")
        return ExpiryResult(
            spec.lots,
            expired,
            job_seconds,
            sql_seconds,
            not differences,
            differences,
            [job_watch, sql_watch],
            job_sum["lots by status"],
        )
    finally:
        scratch.drop(job_db, admin_url)
        scratch.drop(sql_db, admin_url)
