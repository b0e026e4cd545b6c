"""A new installation under a burst (``python -m bench fresh``).

A connection plans the event path's statements once and keeps the plans, and autovacuum
analyses a table only now and then: a new installation's tables are analysed while they hold a
few rows, then an import or a launch brings thousands of events before the next analyse. Plans
that depend on those statistics read whole tables, and each batch costs more than the last
(``bench/README.md``, 2026-11-25 from 14:08). This measures it end to end, in one process:

1. a migrated, empty database; three members' first orders; ``ANALYZE`` (what autovacuum
   would have seen);
2. ``new_members`` new members' first orders, in batches (the general path: each creates and
   enrolls its member) — the rate of an import of existing customers;
3. ``batches`` batches of those members' next orders (the set-based path), on the same
   connections, with the statistics of step 1;
4. ``ANALYZE``, then as many batches again: the baseline.

The ratio is the median batch of step 3 against that of step 4: plans that need no fresh
statistics keep it near 1.
"""

from __future__ import annotations

import itertools
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import ingest, scratch
from bench.report import say


@dataclass(frozen=True)
class FreshSpec:
    new_members: int = 5_000
    batches: int = 20
    batch_size: int = 500


@dataclass
class FreshResult:
    new_members: int
    new_seconds: float
    stale: list[float]  # seconds per batch, statistics of the first three members
    fresh: list[float]  # the same after ANALYZE

    @property
    def new_rate(self) -> float:
        return self.new_members / self.new_seconds


def run(spec: FreshSpec, tag: str = "", admin_url: str = scratch.ADMIN_URL) -> FreshResult:
    from huiyuan.services import events, owners
    from huiyuan.services.principals import SYSTEM

    with scratch.scratch(scratch.db_name("fresh", tag), admin_url) as url:
        svc = ingest.services_at(url)
        try:
            owners.ensure_platform(svc)
            rng = random.Random(20261125)
            at = datetime.now(UTC) - timedelta(minutes=5)
            serial = itertools.count()

            def order(member: int) -> Any:
                n = next(serial)
                return ingest.order_paid(f"f{n}", f"of{n}", ingest.member_id(member), at, rng)

            def apply(raws: list[Any]) -> float:
                started = time.perf_counter()
                outcomes = events.ingest_batch(svc, SYSTEM, raws)
                elapsed = time.perf_counter() - started
                bad = [o for o in outcomes if not o.ok]
                if bad:
                    raise RuntimeError(f"{len(bad)} events refused, first: {bad[0].body}")
                return elapsed

            apply([order(m) for m in range(3)])
            ingest.analyze(url)
            members = 3 + spec.new_members
            say(f"fresh: {spec.new_members:,} new members' first orders …")
            new_seconds = sum(
                apply([order(m) for m in range(lo, min(members, lo + spec.batch_size))])
                for lo in range(3, members, spec.batch_size)
            )
            say(f"fresh: {spec.new_members / new_seconds:,.0f} new members/s")

            def known_batches(label: str) -> list[float]:
                times = [
                    apply([order(rng.randrange(members)) for _ in range(spec.batch_size)])
                    for _ in range(spec.batches)
                ]
                say(
                    f"fresh: {spec.batches} batches ×{spec.batch_size} {label}: first "
                    f"{times[0] * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f}, "
                    f"last {times[-1] * 1000:.0f}"
                )
                return times

            stale = known_batches("with the first statistics")
            ingest.analyze(url)
            fresh = known_batches("after ANALYZE")
        finally:
            svc.engine.dispose()
    return FreshResult(spec.new_members, new_seconds, stale, fresh)
