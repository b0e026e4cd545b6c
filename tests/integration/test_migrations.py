"""Migrations are reversible and build exactly the schema the code declares, on both databases.

Each database here is fresh and private to the test (a new SQLite file, a new PostgreSQL
database created and dropped around it), never the shared test database.
"""

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from huiyuan.db import migrate, tables
from huiyuan.db.engine import make_engine
from huiyuan.db.tables import metadata

from ..conftest import DATABASES, PG_ADMIN_URL


@pytest.fixture(params=[d for d in ("sqlite", "postgresql") if d in DATABASES])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"huiyuan_migrations_{worker}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def revisions(url: str) -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def table_names(url: str) -> set[str]:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def schema_drift(url: str) -> list[object]:
    """What alembic's autogenerate would change to make the database match the metadata."""
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={"compare_type": True, "include_object": migrate.compared(conn.dialect.name)},
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_leaves_the_schema_the_code_declares(fresh_url):
    # given an empty database
    head = revisions(fresh_url)[-1]
    assert migrate.current(fresh_url) is None
    # when it is upgraded to the head
    migrate.upgrade(fresh_url)
    # then it is at the head with every table of the metadata, and nothing differs
    assert migrate.current(fresh_url) == head
    assert table_names(fresh_url) == set(metadata.tables) | {"alembic_version"}
    assert schema_drift(fresh_url) == []
    # when it is downgraded to the base
    migrate.downgrade(fresh_url)
    # then no table of ours is left
    assert migrate.current(fresh_url) is None
    assert table_names(fresh_url) == {"alembic_version"}
    # when it is upgraded again
    migrate.upgrade(fresh_url)
    # then the schema is whole again and still matches the metadata
    assert migrate.current(fresh_url) == head
    assert schema_drift(fresh_url) == []


def test_every_migration_steps_down_and_up_again(fresh_url):
    # given the database at each revision in turn
    chain = revisions(fresh_url)
    for revision in chain:
        migrate.upgrade(fresh_url, revision)
        tables_here = table_names(fresh_url)
        # when that one migration is undone and redone
        migrate.downgrade(fresh_url, "-1")
        below = migrate.current(fresh_url)
        migrate.upgrade(fresh_url, revision)
        # then it went one step down and came back to the same tables
        assert below == (chain[chain.index(revision) - 1] if revision != chain[0] else None)
        assert migrate.current(fresh_url) == revision
        assert table_names(fresh_url) == tables_here
    assert schema_drift(fresh_url) == []


def test_purchase_growth_written_before_0004_gets_the_basis_it_was_credited_for(fresh_url):
    # given a database at 0003 with a ¥500 order, ¥100 refunded before its completion and ¥50
    # after, whose completion credited 400 purchase growth, and a login's growth
    migrate.upgrade(fresh_url, "0003")
    paid_at = datetime(2026, 3, 1, 2, tzinfo=UTC)
    completed_at = paid_at + timedelta(days=2)
    engine = make_engine(fresh_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(
            tables.members.insert(),
            {
                "member_id": "u1",
                "addresses": [],
                "invoice_titles": [],
                "origin": "registered",
                "created_at": paid_at,
                "updated_at": paid_at,
            },
        )
        conn.execute(
            tables.orders.insert(),
            {
                "order_id": "o1",
                "member_id": "u1",
                "status": "completed",
                "amount": 50000,
                "shipping_fee": 0,
                "refunded_amount": 15000,
                "paid_at": paid_at,
                "completed_at": completed_at,
                "sender": "platform",
                "paid_event_id": "pay-o1",
            },
        )
        after = completed_at + timedelta(hours=1)
        for refund_id, amount, at in (("r1", 10000, paid_at), ("r2", 5000, after)):
            conn.execute(
                tables.refunds.insert(),
                {
                    "refund_id": refund_id,
                    "order_id": "o1",
                    "member_id": "u1",
                    "amount": amount,
                    "items": [],
                    "refunded_at": at,
                },
            )
        for kind, amount, order_id in (("purchase", 400, "o1"), ("login", 5, None)):
            conn.execute(
                tables.growth_entries.insert(),
                {
                    "program_id": "platform",
                    "member_id": "u1",
                    "amount": amount,
                    "kind": kind,
                    "rule_id": kind,
                    "idem_key": f"{kind}:1",
                    "order_id": order_id,
                    "reason_zh": kind,
                    "reason_en": kind,
                    "actor": "test",
                    "occurred_at": completed_at,
                    "created_at": completed_at,
                },
            )
    # when it is upgraded to 0004 (and once more after stepping back down)
    for _ in range(2):
        migrate.upgrade(fresh_url, "0004")
        # then the purchase entry's basis is what was paid net of the refund known at
        # completion (¥400), and the login entry has none
        with engine.connect() as conn:
            found = conn.execute(
                sa.select(tables.growth_entries.c.kind, tables.growth_entries.c.basis_fen)
            ).all()
        assert sorted(found) == [("login", None), ("purchase", 40000)]
        migrate.downgrade(fresh_url, "0003")
    # and a purchase entry without a basis is refused by the database
    migrate.upgrade(fresh_url, "0004")
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.update(tables.growth_entries)
            .where(tables.growth_entries.c.kind == "purchase")
            .values(basis_fen=None)
        )
    engine.dispose()


@pytest.mark.postgres_only  # the queue is PostgreSQL's only: 0010 moves nothing on SQLite
@pytest.mark.parametrize("fresh_url", ["postgresql"], indirect=True)
def test_refusals_kept_on_the_queue_before_0010_move_to_event_outcomes(fresh_url):
    # given a database at 0009 whose queue holds a refusal kept for a sender that did not wait
    # (twice: the event was sent again and refused again), an outcome waiting to be collected,
    # and an event still queued
    migrate.upgrade(fresh_url, "0009")
    queued_at = datetime(2026, 3, 1, 2, tzinfo=UTC)
    engine = make_engine(fresh_url, poolclass=sa.pool.NullPool)

    def row(event_id, status, waits, outcome=None, minutes=0):
        return {
            "part": 0,
            "sender": "platform",
            "event_id": event_id,
            "type": "order.paid",
            "member_id": "u1",
            "occurred_at": queued_at,
            "body_hash": "h",
            "data": {},
            "queued_at": queued_at + timedelta(minutes=minutes),
            "status": status,
            "outcome_status": outcome and outcome["status"],
            "outcome_body": outcome,
            "replayed": False if outcome else None,
            "waits": waits,
        }

    refused = {"status": 422, "code": "unknown_store"}
    with engine.begin() as conn:
        conn.execute(
            tables.event_queue.insert(),
            [
                row("pay-1", "done", False, {**refused, "detail": "first"}),
                row("pay-1", "done", False, {**refused, "detail": "again"}, minutes=5),
                row("pay-2", "done", True, {"status": 200}),
                row("pay-3", "queued", False),
            ],
        )
    # when it is upgraded to 0010
    migrate.upgrade(fresh_url, "0010")
    # then the latest refusal is an event outcome, and the queue keeps the rest
    with engine.connect() as conn:
        kept = conn.execute(sa.select(tables.event_outcomes)).mappings().all()
        left = conn.execute(sa.select(tables.event_queue.c.event_id)).scalars().all()
    assert [(k["event_id"], k["status"], k["body"]["detail"]) for k in kept] == [
        ("pay-1", 422, "again")
    ]
    assert sorted(left) == ["pay-2", "pay-3"]
    engine.dispose()


def test_points_given_back_before_0019_are_recorded_against_the_draws_own_transaction(fresh_url):
    # given a database at 0018 where a redemption drew 100 points from one lot and 40 from
    # another, and a refund gave 30 of the first draw back
    migrate.upgrade(fresh_url, "0018")
    at = datetime(2026, 3, 1, 2, tzinfo=UTC)
    engine = make_engine(fresh_url, poolclass=sa.pool.NullPool)
    txn = {
        "program_id": "platform",
        "member_id": "u1",
        "order_id": None,
        "rule_id": None,
        "config_version": 1,
        "reason_zh": "兑换",
        "reason_en": "redeemed",
        "actor": "test",
        "occurred_at": at,
        "created_at": at,
    }
    lot = {
        "program_id": "platform",
        "member_id": "u1",
        "issuer": "platform",
        "amount": 100,
        "remaining": 0,
        "clawed": 0,
        "absorbed": 0,
        "status": "closed",
        "txn_id": 1,
        "earned_at": at,
    }
    with engine.begin() as conn:
        conn.execute(
            tables.point_txns.insert(),
            [
                {**txn, "id": 1, "kind": "earn", "idem_key": "earn"},
                {**txn, "id": 2, "kind": "redeem", "idem_key": "redeem"},
                {**txn, "id": 3, "kind": "restore", "idem_key": "restore"},
            ],
        )
        conn.execute(tables.point_lots.insert(), [{**lot, "id": 1}, {**lot, "id": 2}])
        conn.execute(
            tables.point_draws.insert(),
            [
                {
                    "id": 1,
                    "txn_id": 2,
                    "lot_id": 1,
                    "kind": "redeem",
                    "amount": 100,
                    "restored": 30,
                },
                {"id": 2, "txn_id": 2, "lot_id": 2, "kind": "redeem", "amount": 40, "restored": 0},
            ],
        )
    # when it is upgraded to 0019
    migrate.upgrade(fresh_url, "0019")
    # then the 30 given back are recorded against the draw, under the redemption's own
    # transaction (which restore gave them back was never recorded)
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(
                tables.point_restores.c.txn_id,
                tables.point_restores.c.draw_id,
                tables.point_restores.c.amount,
            )
        ).all()
    assert [tuple(row) for row in found] == [(2, 1, 30)]
    engine.dispose()
