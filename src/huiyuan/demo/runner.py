"""``huiyuan demo``: build the demo database through the ordinary event path, then serve it.

The database is built once; running the demo again serves the same data (``--fresh`` rebuilds).
An interrupted build is simply resumed: events are idempotent, so the ones already applied are
replayed without effect.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select

from huiyuan.config import Settings
from huiyuan.db import migrate
from huiyuan.db.audit_repo import record_audit
from huiyuan.db.tables import audit_log, member_tiers, members, orders, point_accounts
from huiyuan.demo import programs as demo_programs
from huiyuan.demo.catalog import STORES
from huiyuan.demo.story import Story
from huiyuan.domain.business_time import month_starts
from huiyuan.domain.errors import DomainError
from huiyuan.domain.money import Money
from huiyuan.services import events as event_service
from huiyuan.services import memberships, points_jobs, points_mall, principals, programs, tiers
from huiyuan.services import owners as owner_service
from huiyuan.services.context import Services

BATCH = 500


def run_demo(
    *,
    members: int,
    database: str,
    fresh: bool,
    host: str,
    port: int,
    serve_after: bool,
    seed: int,
    console: Console,
) -> None:
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    svc = Services.from_settings(Settings(database_url=url))
    owner_service.ensure_platform(svc, "会员平台")
    if _built(svc):
        console.print(f"Using the demo database at {path} (--fresh rebuilds it).")
    else:
        build_demo(svc, members=members, seed=seed, console=console)
    _summarize(svc, console)
    key = principals.create_api_key(
        svc, "platform", (principals.Scope.ADMIN,), "demo", actor="demo"
    ).key
    base = f"http://{host}:{port}"
    console.print(f"\nAPI:      {base}/v1   (interactive docs: {base}/docs)")
    console.print(f'Try:      curl -H "Authorization: Bearer {key}" {base}/v1/members/u000001')
    console.print("API key (platform, admin):")
    print(key)  # noqa: T201 - alone on the last line, for scripts
    if serve_after:
        import uvicorn

        from huiyuan.api.app import create_app

        uvicorn.run(create_app(svc), host=host, port=port, access_log=False, log_level="warning")


def build_demo(svc: Services, *, members: int, seed: int, console: Console) -> None:
    for store_id, name in STORES.items():
        with suppress(DomainError):  # an interrupted build already added it
            owner_service.add_store(svc, store_id, name, actor="demo")
    now = datetime.now(UTC)
    story = Story(seed, members, now)
    _apply_programs(svc, story.start)
    console.print(f"Inventing {members:,} members and a year of their activity …")
    events = story.events()
    rejected = shopped = 0
    with Progress(
        TextColumn("[bold]Sending events"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("events", total=len(events), rate="")
        started = datetime.now(UTC)
        done = 0
        for month_end, month in _by_month(events, svc.settings.zone):
            for start in range(0, len(month), BATCH):
                chunk = month[start : start + BATCH]
                outcomes = event_service.ingest_batch(svc, principals.SYSTEM, chunk)
                rejected += sum(1 for o in outcomes if not o.ok)
                done += len(chunk)
                elapsed = (datetime.now(UTC) - started).total_seconds() or 1e-9
                progress.update(task, completed=done, rate=f"{done / elapsed:,.0f} events/s")
            if month_end < now:  # the month is over: its nightly release, and some shopping
                with _clock_at(svc, month_end):
                    points_jobs.release_due_lots(svc, limit=1_000_000)
                    label = f"{month_end.astimezone(svc.settings.zone):%Y%m}"
                    shopped += _shop_in_the_mall(svc, seed, label, MONTHLY_SHOPPERS)
    if rejected:
        console.print(f"[yellow]{rejected} events were refused[/yellow]")
    console.print("Running the nightly ledger jobs (release, expiry, reminders) …")
    points_jobs.release_due_lots(svc, limit=1_000_000)
    points_jobs.expire_lots(svc)
    points_jobs.remind_expiring(svc)
    tiers.evaluate_checkpoints(svc)
    memberships.expire_subscriptions(svc)
    shopped += _shop_in_the_mall(svc, seed, "now", MONTHLY_SHOPPERS)
    console.print(f"Members shop in the points mall: {shopped} redemptions over the year")
    with svc.uow() as tx:
        record_audit(
            tx.conn,
            actor="demo",
            action="demo.built",
            subject="demo",
            detail={"members": members, "seed": seed, "events": len(events)},
            at=svc.now(),
        )
        tx.commit()


# The share of members with 1,000 points or more who redeem something at a month's end.
MONTHLY_SHOPPERS = 0.03


def _by_month(
    events: list[dict[str, Any]], zone: ZoneInfo
) -> Iterator[tuple[datetime, list[dict[str, Any]]]]:
    """The story's events (in time order) month by month: (the month's end, its events)."""
    months: dict[datetime, list[dict[str, Any]]] = {}
    for event in events:
        at = datetime.fromisoformat(event["occurred_at"])
        months.setdefault(month_starts(at, zone, 1)[-1], []).append(event)
    yield from months.items()


@contextmanager
def _clock_at(svc: Services, instant: datetime) -> Iterator[None]:
    """The services' clock stopped at ``instant`` for the block (the month-end jobs of the
    story, the documents published when it starts)."""
    clock = svc.clock
    svc.clock = lambda: instant
    try:
        yield
    finally:
        svc.clock = clock


def _shop_in_the_mall(svc: Services, seed: int, label: str, share: float) -> int:
    """A ``share`` of the members with points to spare redeem an item of the platform's mall
    (at a month's end, labelled by the month it ends, or ``now``): ¥10 coupons mostly, 30 days
    of free shipping, a thermos (one each, while stocks last) or, on gold and diamond, a
    lounge pass. Idempotent: a resumed build replays the same redemptions (their ids name the
    label)."""
    with svc.engine.connect() as conn:
        rich = conn.execute(
            select(point_accounts.c.member_id, point_accounts.c.available)
            .where(point_accounts.c.program_id == "platform", point_accounts.c.available >= 1000)
            .order_by(point_accounts.c.member_id)
        ).all()
    rng = random.Random(f"{seed}-{label}")
    done = 0
    for member_id, available in rich:
        if rng.random() > share:
            continue
        choice = rng.choice(
            ["coupon-10", "coupon-10", "coupon-10", "shipping-30d", "thermos", "lounge-pass"]
        )
        quantity = min(3, int(available) // 1000) if choice == "coupon-10" else 1
        request_id = f"demo-mall-{label}-{member_id}"
        with suppress(DomainError):  # not enough points, out of stock, not their tier
            points_mall.redeem_item(
                svc, principals.SYSTEM, member_id, request_id, choice, quantity, None
            )
            done += 1
    return done


def _apply_programs(svc: Services, start: datetime) -> None:
    """Apply the demo's documents as if they were published when the story starts."""
    if programs.list_versions(svc, "platform"):
        return  # an interrupted build applied them already
    with _clock_at(svc, start):
        programs.apply_document(svc, "platform", demo_programs.PLATFORM, actor="demo")
        for store_id, document in demo_programs.STORES.items():
            programs.apply_document(svc, store_id, document, actor="demo")


def _built(svc: Services) -> bool:
    with svc.engine.connect() as conn:
        query = select(audit_log.c.id).where(audit_log.c.action == "demo.built").limit(1)
        return conn.execute(query).first() is not None


def _summarize(svc: Services, console: Console) -> None:
    with svc.engine.connect() as conn:
        member_count = conn.execute(select(func.count()).select_from(members)).scalar_one()
        order_count, paid, refunded = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(orders.c.amount), 0),
                func.coalesce(func.sum(orders.c.refunded_amount), 0),
            ).where(orders.c.status != "cancelled")
        ).one()
        ladder: dict[str, int] = dict(
            conn.execute(
                select(member_tiers.c.tier_id, func.count())
                .where(member_tiers.c.program_id == "platform")
                .group_by(member_tiers.c.tier_id)
            ).all()
        )
    console.print(
        f"Demo: {member_count:,} members, {order_count:,} orders, "
        f"GMV {Money(int(paid))}, refunded {Money(int(refunded))}, "
        f"3 stores ({', '.join(STORES.values())})."
    )
    if ladder:
        console.print("Platform tiers: " + ", ".join(f"{k} {v:,}" for k, v in ladder.items()))
