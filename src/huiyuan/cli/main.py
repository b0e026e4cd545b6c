"""``huiyuan``: serve the API, migrate, manage keys and stores, run the demo."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from huiyuan.config import Settings
from huiyuan.db import migrate as migrations
from huiyuan.domain.errors import DomainError
from huiyuan.services import events as event_service
from huiyuan.services import owners as owner_service
from huiyuan.services import principals
from huiyuan.services.context import Services

app = typer.Typer(help="Huiyuan (会员): membership and loyalty engine.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
stores_app = typer.Typer(help="Stores and brands on the platform.", no_args_is_help=True)
events_app = typer.Typer(help="The event inbox.", no_args_is_help=True)
ledger_app = typer.Typer(
    help="Points ledger: jobs, reconciliation, liability.", no_args_is_help=True
)
programs_app = typer.Typer(help="Program documents (rules and policies).", no_args_is_help=True)
jobs_app = typer.Typer(help="Scheduled jobs.", no_args_is_help=True)
tiers_app = typer.Typer(
    help="Tiers: checkpoint evaluation and the RFM growth model.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(ledger_app, name="ledger")
app.add_typer(programs_app, name="programs")
app.add_typer(tiers_app, name="tiers")
app.add_typer(jobs_app, name="jobs")
app.add_typer(stores_app, name="stores")
app.add_typer(events_app, name="events")

out = Console()
err = Console(stderr=True)
CLI_ACTOR = "cli"


def _ready_services() -> Services:
    """Services on a migrated database with the platform in place."""
    settings = Settings()
    migrations.upgrade(settings.resolved_database_url)
    svc = Services.from_settings(settings)
    owner_service.ensure_platform(svc)
    return svc


def _fail(error: DomainError) -> typer.Exit:
    err.print(f"[red]error[/red] {error.code}: {error.message}")
    return typer.Exit(code=1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
) -> None:
    """Migrate the database, then serve the HTTP API."""
    import uvicorn

    from huiyuan.api.app import create_app

    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    svc = _ready_services()
    out.print(f"Huiyuan API on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    if workers == 1:
        uvicorn.run(create_app(svc), host=host, port=port, access_log=False)
    else:
        uvicorn.run("huiyuan.api.asgi:app", host=host, port=port, workers=workers, access_log=False)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="downgrade to the revision")] = False,
) -> None:
    """Upgrade (or with --down, downgrade) the database schema."""
    url = Settings().resolved_database_url
    if down:
        if revision == "head":
            err.print("name the revision to go down to ('base' drops every table and its data)")
            raise typer.Exit(code=2)
        migrations.downgrade(url, revision)
    else:
        migrations.upgrade(url, revision)
    out.print(f"database at revision {migrations.current(url) or 'base'}")


@keys_app.command("create")
def keys_create(
    owner: Annotated[str, typer.Option(help="owner id: 'platform' or a store id")],
    scopes: Annotated[str, typer.Option(help="comma-separated: read, write, admin")] = (
        "read,write"
    ),
    name: Annotated[str, typer.Option(help="what the key is for")] = "cli",
) -> None:
    """Create an API key. The key is shown once, alone on the last line."""
    svc = _ready_services()
    try:
        new = principals.create_api_key(
            svc, owner, principals.parse_scopes(scopes), name, actor=CLI_ACTOR
        )
    except DomainError as error:
        raise _fail(error) from None
    err.print(f"key {new.prefix} for {new.owner_id} with scopes {','.join(new.scopes)}:")
    print(new.key)


@keys_app.command("list")
def keys_list(owner: Annotated[str | None, typer.Option(help="only this owner's")] = None) -> None:
    """List API keys (prefixes only; secrets are never stored)."""
    from huiyuan.db import owners_repo

    svc = _ready_services()
    table = Table("prefix", "owner", "scopes", "name", "created", "revoked")
    with svc.engine.connect() as conn:
        for row in owners_repo.list_api_keys(conn, owner):
            table.add_row(
                row.prefix,
                row.owner_id,
                row.scopes,
                row.name,
                row.created_at.isoformat(timespec="seconds"),
                row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "",
            )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="the key's prefix")]) -> None:
    """Revoke an API key."""
    try:
        principals.revoke_api_key(_ready_services(), prefix, actor=CLI_ACTOR)
    except DomainError as error:
        raise _fail(error) from None
    out.print(f"revoked {prefix}")


@stores_app.command("add")
def stores_add(
    store_id: Annotated[str, typer.Argument(help="the store's id as events name it")],
    name: Annotated[str, typer.Option(help="display name")],
    program: Annotated[bool, typer.Option(help="give the store its own program")] = True,
) -> None:
    """Register a store or brand (and by default its own membership program)."""
    try:
        view = owner_service.add_store(
            _ready_services(), store_id, name, program=program, actor=CLI_ACTOR
        )
    except DomainError as error:
        raise _fail(error) from None
    out.print(f"store {view.id} added; programs: {', '.join(view.programs) or 'none'}")


@stores_app.command("list")
def stores_list() -> None:
    """List the platform and its stores with their programs."""
    table = Table("id", "kind", "name", "programs")
    for owner in owner_service.list_owners(_ready_services()):
        table.add_row(owner.id, owner.kind, owner.name, ", ".join(owner.programs))
    out.print(table)


@events_app.command("expire-deferred")
def events_expire_deferred() -> None:
    """Reject deferred events whose cause never arrived (HUIYUAN_DEFERRED_EVENT_TTL_HOURS)."""
    count = event_service.expire_deferred(_ready_services())
    out.print(f"{count} deferred events rejected")


@events_app.command("drain")
def events_drain() -> None:
    """Apply single events left queued by requests that went away (group commit, PostgreSQL)."""
    from huiyuan.services import group_commit

    count = group_commit.drain(_ready_services())
    out.print(f"{count} queued events applied")


@ledger_app.command("expire")
def ledger_expire(
    chunk: Annotated[int, typer.Option(help="lots per transaction")] = 5000,
) -> None:
    """Expire lots past their expiry, release due pending points, lapse old holds, and queue
    "expiring soon" reminders. Safe to run again at any time."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from huiyuan.services import points_jobs

    svc = _ready_services()
    released = points_jobs.release_due_lots(svc)
    lapsed = points_jobs.sweep_reservations(svc)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=out) as progress:
        task = progress.add_task("expiring lots: 0", total=None)
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            progress.update(task, description=f"expiring lots: {done:,}")

        expired = points_jobs.expire_lots(svc, chunk=chunk, progress=advance)
    reminded = points_jobs.remind_expiring(svc)
    out.print(
        f"{expired:,} lots expired, {released:,} pending lots released, "
        f"{lapsed:,} holds lapsed, {reminded:,} reminders queued"
    )


@ledger_app.command("reconcile")
def ledger_reconcile() -> None:
    """Rebuild every points balance from its entries and lots; exit 1 on any drift."""
    from huiyuan.services import points_jobs

    report = points_jobs.reconcile(_ready_services())
    if report.drifts:
        table = Table("kind", "subject", "expected", "found")
        for drift in report.drifts[:200]:
            table.add_row(drift.kind, drift.subject, str(drift.expected), str(drift.found))
        out.print(table)
        err.print(f"[red]{len(report.drifts)} drifts[/red] in {report.accounts:,} accounts")
        raise typer.Exit(code=1)
    out.print(
        f"no drift: {report.accounts:,} accounts and {report.transactions:,} transactions "
        "agree with their entries"
    )


@ledger_app.command("liability")
def ledger_liability() -> None:
    """Points outstanding, pending, redeemed and expired per program and issuer."""
    from huiyuan.services import points_jobs

    table = Table(
        "program", "issuer", "outstanding", "pending", "redeemed", "expired", "outstanding ¥"
    )
    for row in points_jobs.liability(_ready_services()):
        table.add_row(
            row["program_id"],
            row["issuer"],
            f"{row['outstanding']:,}",
            f"{row['pending']:,}",
            f"{row['redeemed']:,}",
            f"{row['expired']:,}",
            f"{row['outstanding_fen'] / 100:,.2f}",
        )
    out.print(table)


@ledger_app.command("flow")
def ledger_flow(
    program_id: Annotated[str, typer.Option("--program", help="the program")] = "platform",
    months: Annotated[int, typer.Option(min=1, max=36, help="business months, up to now")] = 12,
) -> None:
    """Points issued, redeemed and expired month by month, as a chart, and what members held."""
    from huiyuan.services import points
    from huiyuan.services.principals import SYSTEM

    try:
        report = points.flow(_ready_services(), SYSTEM, program_id, months)
    except DomainError as error:
        raise _fail(error) from None
    rows = report["months"]
    table = Table("month", title=f"points of {report['program_id']}, by business month")
    for heading in ("issued", "redeemed", "expired", "taken back", "held at the end"):
        table.add_column(heading, justify="right")
    for row in rows:
        table.add_row(
            row["month"],
            *(f"{row[k]:,}" for k in ("issued", "redeemed", "expired", "taken_back")),
            f"{row['balance']:,} (¥{row['balance_fen'] / 100:,.2f})",
        )
    out.print(table)
    # The chart: one line a month, a bar for each of issued, redeemed and expired, to one scale.
    figures = (("issued", "green"), ("redeemed", "blue"), ("expired", "red"))
    top = max(row[k] for row in rows for k, _ in figures)
    out.print(Text.assemble("        ", *((f"■ {k}   ", colour) for k, colour in figures)))
    for row in rows:
        bars = (_bar(row[k], top, colour) for k, colour in figures)
        out.print(Text.assemble(f"{row['month']} ", *bars))


def _bar(value: int, top: int, colour: str, width: int = 22) -> Text:
    """``value`` as a bar of up to ``width - 2`` cells (``top`` fills them), padded to ``width``."""
    cells = round((width - 2) * value / top) if top else 0
    return Text.assemble(("█" * cells, colour), " " * (width - cells))


@programs_app.command("apply")
def programs_apply(
    program_id: Annotated[str, typer.Argument(help="the program to configure")],
    document: Annotated[typer.FileText, typer.Argument(help="JSON document ('-' for stdin)")],
) -> None:
    """Validate and apply a new version of a program's document (effective now)."""
    import json

    from huiyuan.services import programs

    try:
        raw = json.load(document)
    except json.JSONDecodeError as error:
        err.print(f"[red]error[/red] the document is not JSON: {error}")
        raise typer.Exit(code=1) from None
    try:
        version = programs.apply_document(_ready_services(), program_id, raw, actor=CLI_ACTOR)
    except DomainError as error:
        raise _fail(error) from None
    out.print(f"program {program_id} is now at version {version}")


@programs_app.command("show")
def programs_show(program_id: Annotated[str, typer.Argument(help="the program")]) -> None:
    """Print the document in force now (JSON)."""
    from huiyuan.services import programs

    svc = _ready_services()
    config = programs.config_at(svc, program_id, svc.now())
    print(config.document.model_dump_json(indent=2))


@jobs_app.command("nightly")
def jobs_nightly() -> None:
    """Every periodic job in order; safe to run again at any time (each is idempotent).

    Points: release due pending points, lapse old holds, expire lots, queue expiry reminders.
    Tiers: retention and downgrades at checkpoints. Paid plans: expire ended terms, queue
    renewal reminders. Events: reject deferred events whose cause never came, apply single
    events left queued by requests that went away.
    """
    from huiyuan.services import group_commit, memberships, points_jobs, tiers

    svc = _ready_services()
    steps: list[tuple[str, Callable[[], int]]] = [
        ("pending points released", lambda: points_jobs.release_due_lots(svc)),
        ("holds lapsed", lambda: points_jobs.sweep_reservations(svc)),
        ("lots expired", lambda: points_jobs.expire_lots(svc)),
        ("expiry reminders queued", lambda: points_jobs.remind_expiring(svc)),
        ("members evaluated at checkpoints", lambda: tiers.evaluate_checkpoints(svc)),
        ("plan terms expired", lambda: memberships.expire_subscriptions(svc)),
        ("renewal reminders queued", lambda: memberships.remind_renewals(svc)),
        ("deferred events given up", lambda: event_service.expire_deferred(svc)),
        ("queued events applied", lambda: group_commit.drain(svc)),
    ]
    with out.status("running the nightly jobs …"):
        for label, step in steps:
            out.print(f"{step():>10,}  {label}")


@tiers_app.command("evaluate")
def tiers_evaluate() -> None:
    """Retention and downgrades for members whose checkpoint has come (run it daily)."""
    from huiyuan.services import tiers

    count = tiers.evaluate_checkpoints(_ready_services())
    out.print(f"{count:,} members evaluated at their checkpoint")


@tiers_app.command("rfm")
def tiers_rfm(
    program_id: Annotated[str, typer.Argument(help="the program to score")] = "platform",
) -> None:
    """Score members' RFM and write this month's growth change (once per month)."""
    from huiyuan.services import tiers

    try:
        result = tiers.score_rfm(_ready_services(), program_id)
    except DomainError as error:
        raise _fail(error) from None
    out.print(
        f"{result['period']}: {result['members']:,} members scored, {result['entries']:,} "
        f"growth entries written; band edges {result['edges']}"
    )


@app.command()
def demo(
    members: Annotated[int, typer.Option(help="how many members to invent")] = 2000,
    database: Annotated[str, typer.Option(help="SQLite file for the demo")] = "var/demo.db",
    fresh: Annotated[bool, typer.Option(help="rebuild the demo database")] = False,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="serve when done")] = True,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same demo)")] = 7,
) -> None:
    """Build a demo database (platform, three stores, members, a year of orders) and serve it."""
    from huiyuan.demo.runner import run_demo

    run_demo(
        members=members,
        database=database,
        fresh=fresh,
        host=host,
        port=port,
        serve_after=serve_after,
        seed=seed,
        console=out,
    )


if __name__ == "__main__":
    app()
