"""Event ingestion under load: ``order.paid`` through the service layer, from several processes.

Each worker is its own process (the GIL would otherwise serialise the Python half of the work)
with its own ``Services`` and engine, exactly as a server process would hold them. Workers pick
members uniformly or by a Zipf law, send ``order.paid`` events one per transaction
(``ingest_event``) or many per transaction (``ingest_batch``), and count what was applied. The
parent lets them warm up, then counts the events finished in a fixed window.

Members are created beforehand (one ``order.paid`` each, through ``ingest_batch``, so each has
its member row, enrollment and points account) in a template database; every benchmark runs on
its own file copy of it, so all of them start from the same steady state.
"""

from __future__ import annotations

import bisect
import itertools
import multiprocessing as mp
import os
import queue
import random
import secrets
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import machine, scratch
from bench.report import Ticker, say

# Modes of a load worker.
SINGLE, BATCH = "single", "batch"
# Phases the parent announces through a shared integer.
WAIT, WARM, MEASURE, STOP = 0, 1, 2, 3

_CATALOG = [
    ("sku-tee", "纯棉T恤", "服装", "Acme", 9900),
    ("sku-mug", "马克杯", "家居", "Cupco", 3900),
    ("sku-book", "Python 编程", "图书", "Press", 6800),
    ("sku-tea", "龙井茶 250g", "食品", "Westlake", 15800),
    ("sku-card", "礼品卡", "虚拟", "Acme", 10000),
]


def member_id(index: int) -> str:
    return f"bm{index:07d}"


def order_paid(event_id: str, order_id: str, member: str, at: datetime, rng: random.Random) -> Any:
    """An ``order.paid`` shaped like the demo story's: one to three lines, some discounted."""
    items = []
    for sku, name, category, brand, price in rng.sample(_CATALOG, k=rng.choice((1, 1, 2, 3))):
        quantity = rng.choice((1, 1, 2))
        paid = price * quantity * rng.choice((100, 100, 95, 90)) // 100
        items.append(
            {
                "sku": sku,
                "name": name,
                "category": category,
                "brand": brand,
                "quantity": quantity,
                "unit_price": price,
                "paid_amount": paid,
                "virtual": sku == "sku-card",
            }
        )
    amount = sum(i["paid_amount"] for i in items)
    return {
        "id": event_id,
        "type": "order.paid",
        "occurred_at": at.isoformat(),
        "member_id": member,
        "store_id": None,
        "data": {
            "order_id": order_id,
            "amount": amount,
            "shipping_fee": 0 if amount >= 9900 else 800,
            "items": items,
            "channel": "app",
        },
    }


class Picker:
    """Member indexes, uniform or Zipf(s) over ranks; ranks are shuffled onto members so the hot
    members are not neighbours."""

    def __init__(self, members: int, zipf_s: float | None, rng: random.Random) -> None:
        self.members = members
        self.rng = rng
        self.cum: list[float] | None = None
        if zipf_s is not None:
            total, cum = 0.0, []
            for rank in range(1, members + 1):
                total += rank**-zipf_s
                cum.append(total)
            self.cum = cum
            self.perm = list(range(members))
            random.Random(20261124).shuffle(self.perm)

    def pick(self) -> int:
        if self.cum is None:
            return self.rng.randrange(self.members)
        x = self.rng.random() * self.cum[-1]
        return self.perm[bisect.bisect_left(self.cum, x)]


def hottest_share(members: int, zipf_s: float, top: int = 1) -> float:
    weights = [rank**-zipf_s for rank in range(1, members + 1)]
    return sum(weights[:top]) / sum(weights)


@dataclass(frozen=True)
class LoadSpec:
    url: str
    mode: str = SINGLE
    workers: int = 8  # processes
    threads: int = 1  # senders in each process (``pgbench -j``/``-c`` alike)
    members: int = 50_000
    zipf_s: float | None = None
    batch_size: int = 500
    warmup: float = 3.0
    seconds: float = 15.0
    seed: int = 1
    wait: bool = True  # single: False sends ``Prefer: respond-async`` (answered when queued)


def cpu_times() -> tuple[float, float] | None:
    """Busy and total CPU seconds of the whole machine so far (Linux), or None."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / ticks, sum(fields[:8]) / ticks


@dataclass
class LoadResult:
    label: str
    events: int
    seconds: float
    errors: int
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str | None = None
    cpu_busy: float | None = None  # share of all cores busy during the window
    foreign: machine.Watch | None = None  # other processes' CPU during the window
    accepted: int | None = None  # not waiting: answers in the window (events counts applied)
    left_queued: int | None = None  # not waiting: still queued once every sender stopped
    combined_batches: int | None = None  # answered singles: batches the processes' combiners ran

    @property
    def cpu_ms_per_event(self) -> float | None:
        """Machine CPU (all cores, clients and server) per applied event."""
        if self.cpu_busy is None or not self.events:
            return None
        return self.cpu_busy * (os.cpu_count() or 1) * self.seconds / self.events * 1000

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def services_at(url: str) -> Any:
    """The services an API process would hold, on the database at ``url``."""
    from huiyuan.config import Settings
    from huiyuan.services.context import Services

    return Services.from_settings(Settings(database_url=url))


def _load_worker(
    spec: LoadSpec, wid: int, token: str, counters: Any, phase: Any, results: Any
) -> None:
    """One process with ``spec.threads`` senders (threads), each sending one call at a time."""
    try:
        from sqlalchemy import text

        svc = services_at(spec.url)
        with svc.engine.connect() as conn:  # the first connection is not part of the test
            conn.execute(text("select 1"))
        at = datetime.now(UTC) - timedelta(minutes=1)
        mutex = threading.Lock()
        tally = {"done": 0, "errors": 0}
        first_error: list[str] = []
        # (start, end, applied, the process's combined batches so far), monotonic clock
        calls: list[tuple[float, float, int, int]] = []
        failures: list[str] = []

        def sender(tid: int) -> None:
            try:
                _send(spec, svc, f"{token}-{wid}-{tid}", wid * 100 + tid, at, phase, record)
            except BaseException:
                failures.append(traceback.format_exc())

        def record(started: float, ended: float, outcomes: list[Any]) -> None:
            bad = [o for o in outcomes if not o.ok]
            with mutex:
                if bad and not first_error:
                    first_error.append(f"{bad[0].status} {bad[0].body}")
                tally["errors"] += len(bad)
                tally["done"] += len(outcomes) - len(bad)
                counters[wid] = tally["done"]
                calls.append((started, ended, len(outcomes) - len(bad), svc.combiner.batches))

        threads = [threading.Thread(target=sender, args=(t,)) for t in range(spec.threads)]
        for thread in threads:
            thread.start()
        results.put(("ready", wid))
        for thread in threads:
            thread.join()
        if failures:
            raise RuntimeError(failures[0])
        results.put(("done", wid, tally["errors"], first_error[0] if first_error else None, calls))
        svc.engine.dispose()
    except BaseException:
        results.put(("failed", wid, traceback.format_exc()))


_POOL = 2048  # distinct order bodies per sender


def _send(
    spec: LoadSpec,
    svc: Any,
    prefix: str,
    seed: int,
    at: datetime,
    phase: Any,
    record: Any,
) -> None:
    from huiyuan.services import events
    from huiyuan.services.principals import SYSTEM

    rng = random.Random(spec.seed * 100_000 + seed)
    picker = Picker(spec.members, spec.zipf_s, rng)
    serial = itertools.count()

    # Orders' bodies are drawn from a pool made before the clock starts: the engine is what is
    # measured, and building each body anew (random lines, discounts) cost the sender ~7% of
    # its process's CPU, which the engine's processes share the machine's two cores with.
    bodies = [order_paid("", "", "", at, rng)["data"] for _ in range(_POOL)]
    shell = order_paid("", "", "", at, rng)

    def next_event() -> Any:
        eid = f"{prefix}-{next(serial)}"
        data = {**bodies[rng.randrange(_POOL)], "order_id": f"o{eid}"}
        return {**shell, "id": eid, "member_id": member_id(picker.pick()), "data": data}

    while phase.value == WAIT:
        time.sleep(0.002)
    while phase.value != STOP:
        if spec.mode == SINGLE:
            raw = next_event()
            started = time.monotonic()
            outcomes = [events.ingest_event(svc, SYSTEM, raw, wait=spec.wait)]
        else:
            raws = [next_event() for _ in range(spec.batch_size)]
            started = time.monotonic()
            outcomes = events.ingest_batch(svc, SYSTEM, raws)
        record(started, time.monotonic(), outcomes)


def run_load(spec: LoadSpec, label: str) -> LoadResult:
    """Start the workers, warm up, then count the events applied in the measuring window."""
    ctx = mp.get_context("spawn")
    counters = ctx.Array("q", spec.workers, lock=False)
    phase = ctx.Value("i", WAIT, lock=False)
    results = ctx.Queue()
    token = secrets.token_hex(3)
    procs = [
        ctx.Process(
            target=_load_worker,
            args=(spec, wid, token, counters, phase, results),
            daemon=True,
        )
        for wid in range(spec.workers)
    ]
    for proc in procs:
        proc.start()
    try:
        _await(results, spec.workers, "ready", timeout=120)
        say(
            f"{label}: {spec.workers} workers, {spec.mode}"
            f"{f' x{spec.batch_size}' if spec.mode == BATCH else ''}, "
            f"{'zipf s=' + str(spec.zipf_s) if spec.zipf_s else 'uniform'} over "
            f"{spec.members:,} members; warm-up {spec.warmup:g} s, measuring {spec.seconds:g} s"
        )
        phase.value = WARM
        _watch(label + " (warm-up)", counters, spec.warmup, procs)
        # Tables that were nearly empty when the template was analysed have just grown; give
        # the planner the statistics autovacuum would have in a long-running database.
        seconds = analyze(spec.url)
        say(f"  {label}: ANALYZE after warm-up ({seconds:.1f} s)")
        _watch(label + " (warm-up)", counters, 1.0, procs)
        phase.value = MEASURE
        stopwatch = machine.Stopwatch()
        inbox_start = None if spec.wait else _count(spec.url, "events")
        start, cpu_start = time.monotonic(), cpu_times()
        _watch(label, counters, spec.seconds, procs)
        end, cpu_end = time.monotonic(), cpu_times()
        inbox_end = None if spec.wait else _count(spec.url, "events")
        foreign = stopwatch.stop()
        phase.value = STOP
        finished = _await(results, spec.workers, "done", timeout=120)
    finally:
        phase.value = STOP
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    result = LoadResult(label, 0, end - start, 0, foreign=foreign)
    if cpu_start and cpu_end and cpu_end[1] > cpu_start[1]:
        result.cpu_busy = (cpu_end[0] - cpu_start[0]) / (cpu_end[1] - cpu_start[1])
    applied = 0.0
    combined = 0
    for _, _, errors, first_error, calls in finished:
        result.errors += errors
        result.first_error = result.first_error or first_error
        batches = []
        for call_start, call_end, ok, batches_so_far in calls:
            applied += ok * _overlap(call_start, call_end, start, end)
            if start <= call_end <= end:
                result.latencies_ms.append((call_end - call_start) * 1000)
                batches.append(batches_so_far)
        combined += max(batches) - min(batches) if batches else 0
    result.events = round(applied)
    if combined and spec.wait and spec.mode == SINGLE:
        result.combined_batches = combined
        say(
            f"{label}: requests combined in memory, {len(result.latencies_ms) / combined:.1f} "
            "a batch on average"
        )
    if inbox_start is not None and inbox_end is not None:
        # Answers only say "queued": count what was applied (the inbox) instead. The window's
        # ends are read a moment after the clock's, which moves both ends alike.
        result.accepted, result.events = result.events, inbox_end - inbox_start
        result.left_queued = _count(spec.url, "event_queue", "status = 'queued'")
        say(
            f"{label}: {result.accepted / result.seconds:,.0f} events/s accepted; "
            f"{result.left_queued} left queued once the senders stopped"
        )
    say(
        f"{label}: {result.rate:,.0f} events/s "
        f"({result.events:,} in {result.seconds:.1f} s, {result.errors} refused; "
        f"p50 {result.percentile(50):.1f} ms, p99 {result.percentile(99):.1f} ms per "
        f"{'event' if spec.mode == SINGLE else 'batch'})"
    )
    if result.cpu_ms_per_event is not None:
        say(
            f"{label}: CPU {result.cpu_busy:.0%} busy over {os.cpu_count()} cores = "
            f"{result.cpu_ms_per_event:.2f} ms of CPU per event (clients + PostgreSQL)"
        )
    if foreign.disturbed:
        say(f"{label}: WARNING: {foreign.describe()}")
    if result.first_error:
        say(f"{label}: first refusal: {result.first_error[:300]}")
    return result


def _count(url: str, table: str, where: str = "true") -> int:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            query = f"SELECT count(*) FROM {table} WHERE {where}"  # constants only
            return int(conn.execute(sa.text(query)).scalar_one())
    finally:
        engine.dispose()


def _overlap(call_start: float, call_end: float, start: float, end: float) -> float:
    """The share of a call inside the window: a batch's events count pro rata, so a long batch
    straddling the window's edge is neither counted whole nor dropped."""
    if call_end <= call_start:
        return 1.0 if start <= call_end <= end else 0.0
    inside = min(call_end, end) - max(call_start, start)
    return max(0.0, inside) / (call_end - call_start)


def _await(results: Any, workers: int, kind: str, timeout: float) -> list[tuple[Any, ...]]:
    got: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout
    while len(got) < workers:
        try:
            message = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise RuntimeError(f"workers did not report {kind!r} within {timeout:g} s") from None
        if message[0] == "failed":
            raise RuntimeError(f"worker {message[1]} failed:\n{message[2]}")
        if message[0] == kind:
            got.append(message)
    return got


def _watch(label: str, counters: Any, seconds: float, procs: list[Any]) -> None:
    start = time.perf_counter()
    first = sum(counters)
    ticker, last_count, last_at = Ticker(2.0), first, start
    ticker.due()
    while (now := time.perf_counter()) - start < seconds:
        time.sleep(min(0.1, max(0.0, seconds - (now - start))))
        if any(not p.is_alive() for p in procs):
            raise RuntimeError("a worker process died; see its traceback above")
        if ticker.due():
            count, now = sum(counters), time.perf_counter()
            say(
                f"  {label}: {now - start:4.1f} s  {count - first:>8,} events  "
                f"{(count - last_count) / (now - last_at):>7,.0f}/s"
            )
            last_count, last_at = count, now


# ---------------------------------------------------------------- members, once

# The rows that make a member known to the hot path: the member, their enrollments and their
# points account. Cloned from a prototype member that the service layer itself created.
CLONED = ("members", "enrollments", "point_accounts")
_ZEROED = {"point_accounts": ("available", "pending", "reserved", "debt")}
PROTOTYPE = "bm-prototype"


def clone_members(url: str, members: int) -> float:
    """Create ``members`` members by copying the rows the service wrote for one prototype
    member (its ``order.paid`` went through ``ingest_event``); returns seconds. Balances are
    zeroed, so every clone starts with an empty, consistent account."""
    import sqlalchemy as sa

    from huiyuan.db.tables import metadata
    from huiyuan.services import events, owners
    from huiyuan.services.principals import SYSTEM

    started = time.perf_counter()
    svc = services_at(url)
    owners.ensure_platform(svc)
    at = datetime.now(UTC) - timedelta(days=1)
    proto = order_paid("seed-prototype", "oseed-prototype", PROTOTYPE, at, random.Random(0))
    outcome = events.ingest_event(svc, SYSTEM, proto)
    if not outcome.ok:
        raise RuntimeError(f"the prototype member was refused: {outcome.body}")
    with svc.engine.begin() as conn:
        for name in CLONED:
            table = metadata.tables[name]
            columns = [
                c.name
                for c in table.columns
                if not (c.primary_key and c.autoincrement is True and c.name == "id")
            ]
            chosen = []
            for column in columns:
                if column == "member_id":
                    chosen.append("'bm' || lpad(g::text, 7, '0')")
                elif column in _ZEROED.get(name, ()):
                    chosen.append("0")
                else:
                    chosen.append(f't."{column}"')
            quoted = ", ".join(f'"{c}"' for c in columns)
            conn.execute(
                sa.text(
                    f"INSERT INTO {name} ({quoted}) SELECT {', '.join(chosen)} FROM {name} t "
                    "CROSS JOIN generate_series(0, :last) AS g WHERE t.member_id = :proto"
                ),
                {"last": members - 1, "proto": PROTOTYPE},
            )
    # A clone must take the hot path of a known member: no member.created, no enrollment.
    check = order_paid("seed-check", "oseed-check", member_id(0), at, random.Random(1))
    outcome = events.ingest_event(svc, SYSTEM, check)
    kinds = {e["kind"] for e in outcome.body.get("effects", [])}
    if not outcome.ok or kinds & {"member.created", "member.enrolled"}:
        raise RuntimeError(f"a cloned member is not a known member: {outcome.body}")
    svc.engine.dispose()
    return time.perf_counter() - started


def _seed_worker(url: str, lo: int, hi: int, batch: int, slot: int, done: Any, out: Any) -> None:
    try:
        from huiyuan.services import events
        from huiyuan.services.principals import SYSTEM

        svc = services_at(url)
        rng = random.Random(slot)
        at = datetime.now(UTC) - timedelta(days=1)
        for start in range(lo, hi, batch):
            raws = [
                order_paid(f"seed-{i}", f"oseed-{i}", member_id(i), at, rng)
                for i in range(start, min(hi, start + batch))
            ]
            bad = [o for o in events.ingest_batch(svc, SYSTEM, raws) if not o.ok]
            if bad:
                raise RuntimeError(f"seeding refused an event: {bad[0].status} {bad[0].body}")
            done[slot] += len(raws)
        svc.engine.dispose()
        out.put(("done", slot))
    except BaseException:
        out.put(("failed", slot, traceback.format_exc()))


def seed_members(url: str, members: int, processes: int = 2, batch: int = 1000) -> float:
    """Create ``members`` members through ``ingest_batch`` (one ``order.paid`` each, so each
    has a member row, enrollment, first order and points account); returns seconds. Faithful
    but slow: every member takes the auto-enroll path."""
    from huiyuan.services import owners

    svc = services_at(url)
    owners.ensure_platform(svc)
    svc.engine.dispose()
    ctx = mp.get_context("spawn")
    done = ctx.Array("q", processes, lock=False)
    out = ctx.Queue()
    bounds = [members * k // processes for k in range(processes + 1)]
    procs = [
        ctx.Process(target=_seed_worker, args=(url, bounds[k], bounds[k + 1], batch, k, done, out))
        for k in range(processes)
    ]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    ticker = Ticker(5.0)
    ticker.due()
    reported = 0
    try:
        while reported < processes:
            try:
                message = out.get(timeout=0.2)
            except queue.Empty:
                message = None
            if message is not None and message[0] == "failed":
                raise RuntimeError(f"seeding worker failed:\n{message[2]}")
            if message is not None:
                reported += 1
            if ticker.due():
                say(f"  seeding members: {sum(done):,}/{members:,}")
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    return time.perf_counter() - started


@contextmanager
def member_template(
    members: int, tag: str = "", admin_url: str = scratch.ADMIN_URL, *, via_service: bool = False
) -> Iterator[str]:
    """A migrated database holding ``members`` seeded members; yields its name (a template to
    copy, not to use: nobody may be connected to it while it is copied)."""
    name = scratch.db_name("members", tag)
    with scratch.scratch(name, admin_url) as url:
        if via_service:
            say(f"seeding {members:,} members into {name} (one order.paid each, ingest_batch) …")
            seconds = seed_members(url, members)
        else:
            say(f"seeding {members:,} members into {name} (clones of a service-made member) …")
            seconds = clone_members(url, members)
        say(f"seeded {members:,} members in {seconds:.1f} s")
        _vacuum(url)
        yield name


def maintain(url: str, *commands: str) -> float:
    """Run maintenance commands (``ANALYZE``, ``VACUUM``, ``CHECKPOINT``), each outside a
    transaction, on the scratch database at ``url``; returns seconds."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    started = time.perf_counter()
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            for command in commands:
                conn.execute(sa.text(command))
    finally:
        engine.dispose()
    return time.perf_counter() - started


def analyze(url: str) -> float:
    return maintain(url, "ANALYZE")


def _vacuum(url: str) -> None:
    maintain(url, "VACUUM ANALYZE", "CHECKPOINT")
