"""``python -m bench all|pgbench|single|batch|skew|expiry|http|fresh|profile [--quick]``.

Each benchmark prints its progress, then one line of the final table: what was measured, the
baseline measured in the same run, their ratio and the target ratio (DESIGN.md, "Performance,
measured as ratios on the same machine"). Nothing here passes or fails on an absolute time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

from bench import expiry, fresh, http_latency, ingest, machine, pgbench, scratch
from bench.report import Result, print_table, say

ALL = ("pgbench", "single", "async", "batch", "skew", "async-skew", "http", "expiry")
COMMANDS = ("all", *ALL, "fresh", "profile")


@dataclass(frozen=True)
class Config:
    pgbench: pgbench.PgbenchSpec
    members: int
    workers: int
    threads: int
    batch_workers: int
    batch_size: int
    warmup: float
    seconds: float
    zipf_s: float
    lots: int
    tag: str = ""
    admin_url: str = scratch.ADMIN_URL
    seed_via_service: bool = False
    baseline_tps: float | None = None  # given instead of measured (iterating only)
    quick: bool = False


FULL = Config(
    pgbench=pgbench.PgbenchSpec(scale=8, clients=8, threads=2, seconds=15),
    members=50_000,
    workers=2,  # single-event senders: 2 processes x 4 threads, as pgbench -c 8 -j 2
    threads=4,
    batch_workers=os.cpu_count() or 2,  # one sender per core: more only contend
    batch_size=500,
    warmup=3.0,
    seconds=15.0,
    zipf_s=1.1,
    lots=1_000_000,
)
QUICK = replace(
    FULL,
    pgbench=replace(FULL.pgbench, seconds=8),
    warmup=2.0,
    seconds=8.0,
    lots=20_000,
    quick=True,
)


def parse(argv: list[str]) -> tuple[list[str], Config]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Huiyuan benchmarks, reported as ratios against baselines of the same run.",
    )
    parser.add_argument(
        "commands", nargs="*", default=["all"], metavar="command", help=" | ".join(COMMANDS)
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, about 2 minutes")
    parser.add_argument("--members", type=int, help="members to spread events over")
    parser.add_argument("--workers", type=int, help="processes sending single events (2)")
    parser.add_argument("--threads", type=int, help="senders in each of those processes (4)")
    parser.add_argument("--batch-workers", type=int, help="processes for batch")
    parser.add_argument("--batch-size", type=int, help="events per ingest_batch call")
    parser.add_argument("--seconds", type=float, help="measuring window of each load")
    parser.add_argument("--warmup", type=float, help="warm-up before each window")
    parser.add_argument("--pgbench-seconds", type=int, help="pgbench -T")
    parser.add_argument("--zipf", type=float, help="Zipf exponent of the skewed load")
    parser.add_argument("--lots", type=int, help="lots for the expiry benchmark")
    parser.add_argument(
        "--baseline-tps",
        type=float,
        help="skip pgbench and use this tps (only to iterate quickly; say so when reporting)",
    )
    parser.add_argument(
        "--seed-via-service",
        action="store_true",
        help="create the members through ingest_batch instead of cloning one (slow)",
    )
    parser.add_argument("--tag", default="", help="suffix of the scratch database names")
    args = parser.parse_args(argv)
    unknown = [c for c in args.commands if c not in COMMANDS]
    if unknown:
        parser.error(f"unknown command {unknown[0]!r}; choose from {', '.join(COMMANDS)}")
    cfg = QUICK if args.quick else FULL
    overrides = {
        "members": args.members,
        "workers": args.workers,
        "threads": args.threads,
        "batch_workers": args.batch_workers,
        "batch_size": args.batch_size,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "zipf_s": args.zipf,
        "lots": args.lots,
        "tag": args.tag or None,
        "seed_via_service": args.seed_via_service or None,
    }
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if args.pgbench_seconds:
        cfg = replace(cfg, pgbench=replace(cfg.pgbench, seconds=args.pgbench_seconds))
    if args.baseline_tps:
        cfg = replace(cfg, baseline_tps=args.baseline_tps)
    return args.commands or ["all"], cfg


class Run:
    """One invocation: measures the baseline once and shares it between benchmarks."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.results: list[Result] = []
        self._tps: float | None = cfg.baseline_tps
        self._tps_watch = machine.Watch()
        self._uniform: ingest.LoadResult | None = None
        self._async: ingest.LoadResult | None = None
        self._stack = ExitStack()
        self._template: str | None = None
        self._speed: float | None = None  # ``machine.cpu_speed`` around the latest pgbench

    def close(self) -> None:
        self._stack.close()

    # --------------------------------------------------------------- shared pieces

    def tps(self) -> float:
        if self._tps is None:
            before = machine.cpu_speed()
            self._tps, self._tps_watch = pgbench.run(
                self.cfg.pgbench, self.cfg.tag, self.cfg.admin_url
            )
            self._speed = (before + machine.cpu_speed()) / 2
        return self._tps

    def _disturbance(
        self, result: Result, *watches: machine.Watch | None, speed: float | None = None
    ) -> Result:
        """Flag the row if other processes took CPU during it, or if the CPU ran much slower
        or faster than at its baseline: ``speed`` relative to it, or else measured now
        against the latest pgbench's (or, with none, the first row's)."""
        for watch in watches:
            if watch is not None and watch.disturbed:
                result.disturbed = True
                result.notes.append(f"DISTURBED: {watch.describe()}")
        if speed is not None:
            relative = speed
        else:
            now = machine.cpu_speed()
            if self._speed is None:
                self._speed = now  # no pgbench in this run: the first result's moment
            relative = now / self._speed
        low, high = machine.SPEED_BAND
        if low <= relative <= high:
            result.notes.append(f"CPU speed after the window: {relative:.2f}x of the baseline's")
        else:
            result.disturbed = True
            result.notes.append(
                f"DISTURBED: the CPU ran at {relative:.2f}x of the baseline's speed after the "
                "window (the host, not this box: compare only with a steadier run)"
            )
        return result

    def _bracketed(
        self, before: float, load: ingest.LoadResult
    ) -> tuple[float, str, list[machine.Watch | None], float | None]:
        """The baseline of a row measured against pgbench: the mean of the pgbench run before
        its window and one run right after it (which is the next such row's "before"). A
        host that slows the VM down over minutes moves both sides of the ratio. Also the CPU's
        speed right after the window relative to its speed around both runs (for
        ``_disturbance``)."""
        watches: list[machine.Watch | None] = [self._tps_watch, load.foreign]
        if self.cfg.baseline_tps is not None:
            return before, self._baseline_label(), watches, None
        window_speed = machine.cpu_speed()
        speed_before = self._speed or window_speed
        after, self._tps_watch = pgbench.run(self.cfg.pgbench, self.cfg.tag, self.cfg.admin_url)
        self._speed = (window_speed + machine.cpu_speed()) / 2  # the next row's "before"
        self._tps = after
        relative = window_speed / ((speed_before + self._speed) / 2)
        spec = self.cfg.pgbench
        label = (
            f"pgbench tps, mean of {before:,.0f} before and {after:,.0f} after "
            f"(-c {spec.clients} -j {spec.threads} -T {spec.seconds})"
        )
        return (before + after) / 2, label, [*watches, self._tps_watch], relative

    def _baseline_label(self) -> str:
        spec = self.cfg.pgbench
        if self.cfg.baseline_tps is not None:
            return "pgbench tps, given by --baseline-tps"
        return f"pgbench tps, -c {spec.clients} -j {spec.threads} -T {spec.seconds}"

    def template(self) -> str:
        if self._template is None:
            self._template = self._stack.enter_context(
                ingest.member_template(
                    self.cfg.members,
                    self.cfg.tag,
                    self.cfg.admin_url,
                    via_service=self.cfg.seed_via_service,
                )
            )
        return self._template

    @contextmanager
    def members_copy(self, kind: str, label: str) -> Iterator[str]:
        """A scratch database copied from the seeded members' template; yields its URL."""
        name = scratch.db_name(kind, self.cfg.tag)
        template = self.template()
        say(f"{label}: copying the seeded members into {name} …")
        with scratch.scratch(name, self.cfg.admin_url, template=template) as url:
            yield url

    def load(self, kind: str, label: str, **spec: object) -> ingest.LoadResult:
        with self.members_copy(kind, label) as url:
            load = ingest.LoadSpec(
                url=url,
                members=self.cfg.members,
                warmup=self.cfg.warmup,
                seconds=self.cfg.seconds,
                **spec,  # type: ignore[arg-type]
            )
            return ingest.run_load(load, label)

    def _senders(self) -> dict[str, int]:
        return {"workers": self.cfg.workers, "threads": self.cfg.threads}

    def _who(self) -> str:
        """The single-event senders, as pgbench's ``-c``/``-j`` would say them."""
        senders = self.cfg.workers * self.cfg.threads
        if self.cfg.threads == 1:
            return f"{senders} procs"
        return f"{senders} senders ({self.cfg.workers} procs x {self.cfg.threads} threads)"

    def uniform(self) -> ingest.LoadResult:
        if self._uniform is None:
            self._uniform = self.load("single", "single", **self._senders())
        return self._uniform

    # --------------------------------------------------------------- benchmarks

    def pgbench(self) -> None:
        tps = self.tps()
        result = Result("pgbench TPC-B (baseline)", tps, "tps", tps, self._baseline_label(), 1.0)
        self.results.append(self._disturbance(result, self._tps_watch))

    def single(self) -> None:
        tps = self.tps()
        load = self.uniform()
        baseline, label, watches, speed = self._bracketed(tps, load)
        result = Result(
            f"single order.paid, {self._who()}, {_grouping()}",
            load.rate,
            "ev/s",
            baseline,
            label,
            0.5,
            notes=_load_notes(load, "event"),
        )
        self.results.append(self._disturbance(result, *watches, speed=speed))

    def async_uniform(self) -> ingest.LoadResult:
        if self._async is None:
            self._async = self.load("async", "async", **self._senders(), wait=False)
        return self._async

    def async_(self) -> None:
        tps = self.tps()
        load = self.async_uniform()
        baseline, label, watches, speed = self._bracketed(tps, load)
        result = Result(
            f"single order.paid, respond-async, {self._who()} (applied)",
            load.rate,
            "ev/s",
            baseline,
            label,
            0.5,
            notes=_async_notes(load),
        )
        self.results.append(self._disturbance(result, *watches, speed=speed))

    def async_skew(self) -> None:
        uniform = self.async_uniform()
        skewed = self.load(
            "askew", "async-skew", **self._senders(), zipf_s=self.cfg.zipf_s, wait=False
        )
        result = Result(
            f"skewed zipf s={self.cfg.zipf_s}, respond-async, {self._who()}",
            skewed.rate,
            "ev/s",
            uniform.rate,
            "uniform respond-async, same run",
            0.7,
            notes=_async_notes(skewed),
        )
        self.results.append(self._disturbance(result, uniform.foreign, skewed.foreign))

    def batch(self) -> None:
        tps = self.tps()
        load = self.load(
            "batch",
            "batch",
            mode=ingest.BATCH,
            workers=self.cfg.batch_workers,
            batch_size=self.cfg.batch_size,
        )
        baseline, label, watches, speed = self._bracketed(tps, load)
        result = Result(
            f"batch x{self.cfg.batch_size}, {self.cfg.batch_workers} procs",
            load.rate,
            "ev/s",
            baseline,
            label,
            3.0,
            notes=_load_notes(load, "batch"),
        )
        self.results.append(self._disturbance(result, *watches, speed=speed))

    def skew(self) -> None:
        uniform = self.uniform()
        skewed = self.load("skew", "skew", **self._senders(), zipf_s=self.cfg.zipf_s)
        top1 = ingest.hottest_share(self.cfg.members, self.cfg.zipf_s)
        top10 = ingest.hottest_share(self.cfg.members, self.cfg.zipf_s, 10)
        notes = _load_notes(skewed, "event")
        notes.append(f"hottest member gets {top1:.1%} of events, top 10 get {top10:.1%}")
        result = Result(
            f"skewed zipf s={self.cfg.zipf_s}, {self._who()}",
            skewed.rate,
            "ev/s",
            uniform.rate,
            "uniform, same run",
            0.7,
            notes=notes,
        )
        self.results.append(self._disturbance(result, uniform.foreign, skewed.foreign))

    def expiry(self) -> None:
        result = expiry.run(expiry.ExpirySpec(lots=self.cfg.lots), self.cfg.tag, self.cfg.admin_url)
        notes = [
            f"{result.expired:,} of {result.lots:,} lots due; job "
            f"{result.expired / result.job_seconds:,.0f} lots/s, SQL "
            f"{result.expired / result.sql_seconds:,.0f} lots/s",
            "job and SQL left identical ledgers"
            if result.same
            else "RESULTS DIFFER: " + "; ".join(result.differences),
        ]
        row = Result(
            f"expiry of {result.lots:,} lots (time)",
            result.job_seconds,
            "s",
            result.sql_seconds,
            "one set-based SQL statement",
            1.5,
            higher_is_better=False,
            notes=notes,
        )
        self.results.append(self._disturbance(row, *result.foreign))

    def http(self) -> None:
        with self.members_copy("http", "http") as url:
            spec = http_latency.HttpSpec(
                url=url,
                members=self.cfg.members,
                warmup=self.cfg.warmup,
                seconds=self.cfg.seconds,
                clients=self.cfg.workers,
                threads=self.cfg.threads,
            )
            found = http_latency.run(spec)
        half, peak = found.half, found.peak
        notes = [
            f"peak (closed loop, {spec.clients} procs x {spec.threads} threads): "
            f"{peak.rate:,.0f} requests/s, p99 {peak.percentile(99):.1f} ms",
            f"half of peak: {found.offered:,.0f} requests/s offered, {half.rate:,.0f} answered; "
            f"p50 {half.percentile(50):.1f} ms; p99 earn {half.percentile(99, 'earn'):.1f} ms, "
            f"redemption {half.percentile(99, 'redeem'):.1f} ms",
        ]
        if half.errors or peak.errors:
            notes.append(
                f"{half.errors + peak.errors} requests failed, first: "
                f"{half.first_error or peak.first_error}"
            )
        result = Result(
            "p99 earn or redemption over HTTP at half of peak",
            half.percentile(99),
            "ms",
            10.0,
            "DESIGN's bound; the load measured this run",
            1.0,
            higher_is_better=False,
            notes=notes,
        )
        self.results.append(self._disturbance(result, found.foreign))

    def fresh(self) -> None:
        spec = fresh.FreshSpec(new_members=2_000 if self.cfg.quick else 5_000)
        found = fresh.run(spec, self.cfg.tag, self.cfg.admin_url)
        stale, analysed = found.stale, found.fresh
        notes = [
            f"{spec.batches} batches x{spec.batch_size} of known members' orders right after "
            f"{spec.new_members:,} new members, with the statistics of 3: first "
            f"{stale[0] * 1000:.0f} ms, last {stale[-1] * 1000:.0f} ms; after ANALYZE: first "
            f"{analysed[0] * 1000:.0f} ms, last {analysed[-1] * 1000:.0f} ms",
            f"new members' first orders (the general path): {found.new_rate:,.0f}/s",
        ]
        self.results.append(
            Result(
                "batch x500 in a new installation, statistics of 3 members (median batch)",
                statistics.median(stale) * 1000,
                "ms",
                statistics.median(analysed) * 1000,
                "the same batches after ANALYZE, same run",
                1.5,
                higher_is_better=False,
                notes=notes,
            )
        )

    def profile(self) -> None:
        from bench import hotpath

        hotpath.run(self.cfg.tag, self.cfg.admin_url)


def _load_notes(load: ingest.LoadResult, per: str) -> list[str]:
    notes = [
        f"{load.events:,} events in {load.seconds:.1f} s; latency per {per} "
        f"p50 {load.percentile(50):.1f} ms, p99 {load.percentile(99):.1f} ms"
    ]
    if load.cpu_ms_per_event is not None:
        notes.append(
            f"machine CPU {load.cpu_busy:.0%} busy, {load.cpu_ms_per_event:.2f} ms CPU per event"
        )
    if load.combined_batches:
        notes.append(
            f"combined in memory {len(load.latencies_ms) / load.combined_batches:.1f} "
            "requests a batch on average"
        )
    if load.errors:
        notes.append(f"{load.errors} events refused; first: {(load.first_error or '')[:200]}")
    return notes


def _async_notes(load: ingest.LoadResult) -> list[str]:
    notes = _load_notes(load, "answer")
    notes.append(
        f"{load.accepted or 0:,} answered in the window; "
        f"{load.left_queued} left queued after the senders stopped"
    )
    return notes


def _grouping() -> str:
    """Whether single events went through group commit (the workers read the same
    ``HUIYUAN_*`` environment as this process)."""
    from huiyuan.config import Settings

    settings = Settings()
    if not settings.group_commit:
        return "group commit off"
    if settings.group_commit_waiting == "process":
        return "group commit in each process"
    return f"group commit through the queue ({settings.group_commit_partitions} partitions)"


def _machine() -> str:
    try:
        version = subprocess.run(
            ["psql", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        version = "psql ?"
    cpus = os.cpu_count()
    return f"{platform.node()}: {cpus} CPUs, Python {platform.python_version()}, {version}"


def idle_share(seconds: float = 1.5) -> float | None:
    """How idle the machine is before we start: other work skews every number."""
    first = ingest.cpu_times()
    time.sleep(seconds)
    second = ingest.cpu_times()
    if first is None or second is None or second[1] <= first[1]:
        return None
    return 1 - (second[0] - first[0]) / (second[1] - first[1])


def main(argv: list[str] | None = None) -> int:
    commands, cfg = parse(sys.argv[1:] if argv is None else argv)
    command = " ".join(commands)
    say(f"bench {command}{' (quick)' if cfg.quick else ''} on {_machine()}")
    idle = idle_share()
    busy_warning = None
    if idle is not None and idle < 0.85:
        busy_warning = (
            f"WARNING: the machine was only {idle:.0%} idle before the run; other processes "
            "compete for the CPU and the results are not trustworthy"
        )
        say(busy_warning)
    run = Run(cfg)
    started = time.perf_counter()
    try:
        steps: list[str] = []
        for name in commands:
            for step in ALL if name == "all" else (name,):
                if step not in steps:
                    steps.append(step)
        for step in steps:
            getattr(run, {"async": "async_", "async-skew": "async_skew"}.get(step, step))()
    finally:
        run.close()
    if run.results:
        print_table(run.results)
    if busy_warning:
        say(busy_warning)
    if any(r.disturbed for r in run.results):
        say(
            "Rows marked (disturbed) ran while other processes used the CPU, or on a CPU much "
            "slower or faster than at the baseline (see the notes): run them again."
        )
    say(f"\nbench {command} finished in {time.perf_counter() - started:.0f} s")
    return 0
