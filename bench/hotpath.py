"""Where one ``order.paid`` — and one redemption — spends its time (``python -m bench profile``).

In one process, sequentially, on a scratch database with seeded members:
1. the SQL statements one event sends (an existing member and a new one), and the round trips
   (the pool's pre-ping, ``BEGIN`` and ``COMMIT`` included);
2. CPU per event in the client process and in its PostgreSQL backend (read from ``/proc``, the
   server being on this machine), against the wall time — on a 2-core box the sum bounds the
   throughput of any number of workers;
3. the same with ``synchronous_commit=off`` for the session, which shows what the WAL flush at
   commit costs (for diagnosis only: the benchmarks keep commits durable);
4. a direct redemption of one point (``services.points.redeem``, what
   ``POST /v1/members/{id}/points/redemptions`` calls): its statements and round trips, and its
   CPU in the client and the backend over a few hundred in a row;
5. a cProfile of a few hundred events, grouped into SQLAlchemy, pydantic, psycopg and Huiyuan.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from bench import ingest, machine, scratch
from bench.report import say

MEMBERS = 2000


def _backend_cpu(pid: int) -> float:
    """User + system CPU seconds of a local process (the PostgreSQL backend)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Counting:
    """Counts (and times) the statements and pool pre-pings an engine sends: those SQLAlchemy
    runs (its cursor events) and those run on the driver's own connection (``db.driver``,
    which SQLAlchemy's events do not see: the order path's and the queue's)."""

    def __init__(self, engine: sa.Engine) -> None:
        from huiyuan.db import driver

        self.statements: list[str] = []
        self.pings = 0
        self.seconds: Counter[str] = Counter()
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._on_execute)
        event.listen(engine, "after_cursor_execute", self._after_execute)
        original = engine.dialect.do_ping

        def ping(dbapi_connection: Any) -> bool:
            self.pings += 1
            return original(dbapi_connection)

        engine.dialect.do_ping = ping  # type: ignore[method-assign]
        run = driver._run

        def counted(conn: Any, statement: Any, params: Any, fetch: Any) -> Any:
            sql = driver._sql(conn, statement, params)[0]
            self._on_execute(conn, None, sql)
            try:
                return run(conn, statement, params, fetch)
            finally:
                self._after_execute(conn, None, sql)

        driver._run = counted  # this process only: ``bench profile`` runs alone

    def _on_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)
        self._started = time.perf_counter()

    def _after_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seconds[_summarise(statement)] += time.perf_counter() - self._started

    def reset(self) -> None:
        self.statements.clear()
        self.pings = 0
        self.seconds.clear()


def _summarise(statement: str) -> str:
    text = " ".join(statement.split())
    pattern = (
        r"(SELECT pg_advisory_xact_lock|INSERT INTO \w+|UPDATE \w+|DELETE FROM \w+"
        r"|SAVEPOINT|RELEASE|SELECT [\w, ]+ FROM huiyuan_\w+|SELECT huiyuan_\w+"
        r"|WITH \w+ AS \(\w+ \w+ \w+)"
    )
    match = re.match(pattern, text)
    if match:
        return match.group(1)
    tables = re.search(r"FROM (\w+)", text)
    lock = " FOR UPDATE" if "FOR UPDATE" in text else ""
    return f"SELECT … FROM {tables.group(1) if tables else '?'}{lock}"


def _events(token: str, count: int, members: int, rng: random.Random) -> list[Any]:
    at = datetime.now(UTC) - timedelta(minutes=1)
    return [
        ingest.order_paid(
            f"{token}-{n}", f"o{token}-{n}", ingest.member_id(rng.randrange(members)), at, rng
        )
        for n in range(count)
    ]


def run(tag: str = "", admin_url: str = scratch.ADMIN_URL, events_n: int = 600) -> None:
    from huiyuan.services import events, owners
    from huiyuan.services.context import Services
    from huiyuan.services.principals import SYSTEM

    name = scratch.db_name("profile", tag)
    with scratch.scratch(name, admin_url) as url:
        say(f"profile: seeding {MEMBERS:,} members into {name} …")
        svc = ingest.services_at(url)
        owners.ensure_platform(svc)
        rng = random.Random(7)
        at = datetime.now(UTC) - timedelta(days=1)
        for start in range(0, MEMBERS, 500):
            raws = [
                ingest.order_paid(f"seed-{i}", f"oseed-{i}", ingest.member_id(i), at, rng)
                for i in range(start, min(MEMBERS, start + 500))
            ]
            events.ingest_batch(svc, SYSTEM, raws)
        ingest.analyze(url)  # the statistics autovacuum would have by now
        counting = Counting(svc.engine)

        # 1. statements per event
        for label, member in (("existing member", 1), ("new member", MEMBERS + 1)):
            raw = _events(f"one{member}", 1, 1, rng)[0]
            raw["member_id"] = ingest.member_id(member)
            item = {
                "sku": "sku-tee",
                "name": "T",
                "quantity": 1,
                "unit_price": 9900,
                "paid_amount": 9900,
            }
            raw["data"].update(amount=9900, shipping_fee=0, items=[item])  # earns points
            counting.reset()
            outcome = events.ingest_event(svc, SYSTEM, raw)
            assert outcome.ok, outcome.body
            kinds = Counter(_summarise(s) for s in counting.statements)
            trips = len(counting.statements) + counting.pings + 2
            say(
                f"\norder.paid, {label}: {len(counting.statements)} SQL statements + "
                f"{counting.pings} pre-ping + BEGIN + COMMIT = {trips} round trips"
            )
            for kind, n in kinds.most_common():
                say(f"  {n} × {kind}")
        counting.reset()
        raw = _events("batch", 500, MEMBERS, rng)
        started = time.perf_counter()
        events.ingest_batch(svc, SYSTEM, raw)
        elapsed = time.perf_counter() - started
        say(
            f"\ningest_batch of 500 order.paid: {len(counting.statements)} statements "
            f"({len(counting.statements) / 500:.1f} per event, savepoints included), "
            f"{elapsed / 500 * 1000:.2f} ms per event"
        )

        # Driver time per kind of statement, sequential events of known members.
        counting.reset()
        batch = _events("timing", events_n, MEMBERS, rng)
        started = time.perf_counter()
        for raw in batch:
            events.ingest_event(svc, SYSTEM, raw)
        per_event = (time.perf_counter() - started) / len(batch) * 1000
        kinds = Counter(_summarise(s) for s in counting.statements)
        in_sql = sum(counting.seconds.values()) / len(batch) * 1000
        say(
            f"\n{len(batch)} sequential order.paid (random carts, ~10% earn nothing): "
            f"{len(counting.statements) / len(batch):.1f} statements and "
            f"{counting.pings / len(batch):.1f} pre-pings per event; {per_event:.2f} ms per "
            f"event, of which {in_sql:.2f} ms inside cursor.execute (driver + server)"
        )
        say("  ms/event  calls/event  statement")
        for kind, seconds in counting.seconds.most_common():
            say(f"  {seconds / len(batch) * 1000:8.3f}  {kinds[kind] / len(batch):11.2f}  {kind}")

        # 2 and 3. CPU per event, client and server, durable and not
        for sync in ("on", "off"):
            # A session setting, given as a connection option: a SET run in the driver's
            # "connect" event would be rolled back with SQLAlchemy's first reset.
            engine = sa.create_engine(
                url,
                pool_size=1,
                pool_pre_ping=True,
                connect_args={"options": f"-c synchronous_commit={sync}"},
            )
            timed = Services(engine=engine, settings=svc.settings)
            with engine.connect() as conn:
                backend = conn.execute(sa.text("select pg_backend_pid()")).scalar_one()
            batch = _events(f"cpu{sync}", events_n, MEMBERS, rng)
            events.ingest_event(timed, SYSTEM, batch.pop())  # caches
            stopwatch = machine.Stopwatch()
            wall, cpu, server = time.perf_counter(), time.process_time(), _backend_cpu(backend)
            for raw in batch:
                events.ingest_event(timed, SYSTEM, raw)
            foreign = stopwatch.stop()
            wall = (time.perf_counter() - wall) / len(batch) * 1000
            cpu = (time.process_time() - cpu) / len(batch) * 1000
            server = (_backend_cpu(backend) - server) / len(batch) * 1000
            say(
                f"\nsynchronous_commit={sync}, one process, sequential: {wall:.2f} ms wall per "
                f"event = {cpu:.2f} ms client CPU + {server:.2f} ms backend CPU + "
                f"{max(0.0, wall - cpu - server):.2f} ms waiting (network, locks, WAL flush); "
                f"2 cores bound {2000 / (cpu + server):,.0f} events/s"
            )
            if foreign.disturbed:
                say(f"  WARNING: {foreign.describe()}; these figures are inflated")
            engine.dispose()

        _redemptions(svc, url, rng, events_n)

        # 5. cProfile
        batch = _events("prof", events_n, MEMBERS, rng)
        profiler = cProfile.Profile()
        profiler.enable()
        for raw in batch:
            events.ingest_event(svc, SYSTEM, raw)
        profiler.disable()
        _report_profile(profiler, len(batch))
        svc.engine.dispose()


HOLDERS = 200


def _redemptions(svc: Any, url: str, rng: random.Random, count: int) -> None:
    """A direct redemption (``POST /v1/members/{id}/points/redemptions``, the service call):
    its statements, and its CPU in the client and in the backend, one after another."""
    from huiyuan.services import events, points
    from huiyuan.services.context import Services
    from huiyuan.services.principals import SYSTEM

    at = datetime.now(UTC) - timedelta(hours=12)
    completions = [
        {
            "id": f"done-{i}",
            "type": "order.completed",
            "occurred_at": at.isoformat(),
            "member_id": ingest.member_id(i),
            "data": {"order_id": f"oseed-{i}"},
        }
        for i in range(HOLDERS)
    ]
    events.ingest_batch(svc, SYSTEM, completions)  # the seed orders' points become available
    with svc.engine.connect() as conn:  # a gift card alone earns nothing: those who hold some
        holders = (
            conn.execute(
                sa.text("select member_id from point_accounts where available >= 50 order by 1")
            )
            .scalars()
            .all()
        )
    counter = iter(range(10**9))

    def redeem(services: Any) -> None:
        member = rng.choice(holders)
        request = f"r{next(counter)}"
        points.redeem(services, SYSTEM, member, request, 1, "bench", None)

    counting = Counting(svc.engine)
    redeem(svc)  # caches
    counting.reset()
    redeem(svc)
    kinds = Counter(_summarise(s) for s in counting.statements)
    say(
        f"\nredemption of 1 point: {len(counting.statements)} SQL statements + "
        f"{counting.pings} pre-ping + BEGIN + COMMIT = "
        f"{len(counting.statements) + counting.pings + 2} round trips"
    )
    for kind, n in kinds.most_common():
        say(f"  {n} × {kind}")
    engine = sa.create_engine(url, pool_size=1, pool_pre_ping=True)
    timed = Services(engine=engine, settings=svc.settings)
    with engine.connect() as conn:
        backend = conn.execute(sa.text("select pg_backend_pid()")).scalar_one()
    redeem(timed)
    stopwatch = machine.Stopwatch()
    wall, cpu, server = time.perf_counter(), time.process_time(), _backend_cpu(backend)
    for _ in range(count):
        redeem(timed)
    foreign = stopwatch.stop()
    wall = (time.perf_counter() - wall) / count * 1000
    cpu = (time.process_time() - cpu) / count * 1000
    server = (_backend_cpu(backend) - server) / count * 1000
    say(
        f"{count} sequential redemptions: {wall:.2f} ms wall each = {cpu:.2f} ms client CPU + "
        f"{server:.2f} ms backend CPU + {max(0.0, wall - cpu - server):.2f} ms waiting"
    )
    if foreign.disturbed:
        say(f"  WARNING: {foreign.describe()}; these figures are inflated")
    engine.dispose()


_GROUPS = (
    ("waiting on the server (psycopg wait)", re.compile(r"psycopg.*waiting|select\.|poll")),
    ("psycopg", re.compile(r"psycopg")),
    ("sqlalchemy", re.compile(r"sqlalchemy")),
    ("pydantic", re.compile(r"pydantic")),
    ("huiyuan", re.compile(r"huiyuan")),
)


def _report_profile(profiler: cProfile.Profile, count: int) -> None:
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    groups: Counter[str] = Counter()
    for (filename, _line, func), value in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename}:{func}"
        group = next((g for g, pattern in _GROUPS if pattern.search(where)), "other")
        groups[group] += value[2]
    say(f"\ncProfile of {count} events: {total / count * 1000:.2f} ms per event (own time)")
    for group, seconds in groups.most_common():
        say(f"  {seconds / total:6.1%}  {group}")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    say("\ntop 25 functions by own time:")
    say("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(
        r"huiyuan/(services|db)/", 30
    )
    say("\nHuiyuan functions by cumulative time:")
    say("\n".join(line for line in out.getvalue().splitlines() if "huiyuan" in line))
