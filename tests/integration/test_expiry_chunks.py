"""The expiry job chunk by chunk: it walks the due lots once in id order, a chunk that expires
fewer lots than it looked at (a member holding a reservation) does not end the walk, a run cut
short leaves a consistent ledger that the next run completes, and on PostgreSQL it steps past
accounts and lots someone else has locked instead of waiting for them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from huiyuan.db import tables
from huiyuan.services import points_jobs
from huiyuan.services.context import Services
from huiyuan.services.points_book import EXPIRED

from .bodies import completed, item, paid
from .ledger import apply, assert_reconciled, document, figures, iso, lots_of, send, system_total
from .stored import rows


def earn(svc: Services, clock: Any, member: str, order_id: str, amount: int) -> None:
    """The member pays ``amount`` fen for one item and the order completes: a lot of
    ``amount // 100`` points, released now, living 10 days."""
    at = iso(clock())
    body = paid(f"pay-{order_id}", order_id, member, amount, [item(order_id, amount)])
    send(svc, {**body, "occurred_at": at})
    send(svc, {**completed(f"done-{order_id}", order_id, member), "occurred_at": at})


def expiry_txns(svc: Services) -> list[Any]:
    return rows(svc, tables.point_txns, kind="expire")


def stored_available(svc: Services, member: str = "u1") -> int:
    """The account's ``available`` as stored: it includes lots past their expiry the job has
    not closed yet, which the API does not show."""
    (account,) = rows(svc, tables.point_accounts, member_id=member)
    return int(account["available"])


def test_a_held_members_lots_keep_what_the_hold_needs_whatever_the_chunks(api, clock):
    svc = api.svc
    # given points live 10 days, and three members earned in turn, so their lots interleave:
    # lot 1 u1 100, lot 2 u2 200, lot 3 u3 300, lot 4 u1 400, lot 5 u2 500, lot 6 u3 600
    apply(svc, document(expiry={"mode": "rolling", "days": 10}))
    for n, member in enumerate(["u1", "u2", "u3", "u1", "u2", "u3"], start=1):
        earn(svc, clock, member, f"o{n}", n * 10000)
    # and u2 holds 50 points for a checkout (the hold has not been swept when the job runs)
    hold = {"id": "res-1", "amount": 50, "ttl_seconds": 86_400}
    assert api.post("/v1/members/u2/points/reservations", hold).status_code == 201
    # when the job runs 12 days later, two lots per chunk
    clock.advance(days=12)
    seen: list[int] = []
    expired = points_jobs.expire_lots(svc, chunk=2, progress=seen.append)
    # then every chunk ran: u1's and u3's lots are gone, and of u2's the hold keeps 50 of the
    # oldest (lot 2), the chunks apart: lot 2 keeps 50, lot 5 expires in full
    assert seen == [2, 2, 2, 0]
    assert expired == 6
    assert figures(svc, "u1") == (0, 0, 0, 0)
    assert figures(svc, "u3") == (0, 0, 0, 0)
    assert figures(svc, "u2") == (50, 0, 50, 0)
    u2_lots = lots_of(svc, "u2")
    assert [(lot["status"], lot["remaining"]) for lot in u2_lots] == [
        ("active", 50),
        ("expired", 0),
    ]
    assert system_total(svc, EXPIRED) == 2050
    assert sorted(t["idem_key"] for t in expiry_txns(svc) if t["member_id"] == "u2") == sorted(
        [f"expire:{u2_lots[0]['id']}:50", f"expire:{u2_lots[1]['id']}"]
    )
    # and each expired lot has one transaction, named after it, at the instant it expired
    by_lot = {lot["id"]: lot for u in ("u1", "u3") for lot in lots_of(svc, u)}
    txns = [t for t in expiry_txns(svc) if t["member_id"] != "u2"]
    assert sorted(t["idem_key"] for t in txns) == sorted(f"expire:{i}" for i in by_lot)
    for txn in txns:
        lot = by_lot[int(txn["idem_key"].removeprefix("expire:"))]
        assert (txn["member_id"], txn["occurred_at"]) == (lot["member_id"], lot["expires_at"])
        assert (txn["actor"], txn["reason_en"]) == ("system:expiry", "points expired")
        assert txn["reason_zh"] == "积分过期"
        entries = rows(svc, tables.point_entries, txn_id=txn["id"])
        assert sorted((e["account"], e["bucket"], e["amount"], e["lot_id"]) for e in entries) == [
            ("member", "available", -lot["amount"], lot["id"]),
            (EXPIRED, "total", lot["amount"], lot["id"]),
        ]
        (draw,) = rows(svc, tables.point_draws, txn_id=txn["id"])
        assert (draw["lot_id"], draw["kind"], draw["amount"], draw["restored"]) == (
            lot["id"],
            "expire",
            lot["amount"],
            0,
        )
    assert_reconciled(svc)


@pytest.mark.parametrize("chunk", [1, 2, 1000])
def test_held_members_lose_the_expired_points_their_holds_do_not_keep(api, clock, chunk):
    svc = api.svc
    # given points live 10 days; u1 earned 100 then, five days later, 300; u2 earned 100 and
    # 100, then 30 five days later
    apply(svc, document(expiry={"mode": "rolling", "days": 10}))
    earn(svc, clock, "u1", "o1", 10000)
    earn(svc, clock, "u2", "o2", 10000)
    earn(svc, clock, "u2", "o3", 10000)
    clock.advance(days=5)
    earn(svc, clock, "u1", "o4", 30000)
    earn(svc, clock, "u2", "o5", 3000)
    # and each holds 50 points for a checkout
    for member in ("u1", "u2"):
        hold = {"id": f"res-{member}", "amount": 50, "ttl_seconds": 86_400}
        assert api.post(f"/v1/members/{member}/points/reservations", hold).status_code == 201
    # when the job runs 7 days later (the first lots expired 2 days ago, the later ones not yet)
    clock.advance(days=7)
    expired = points_jobs.expire_lots(svc, chunk=chunk)
    # then each hold keeps the 50 its capture will take, the oldest first: of u1's expired
    # 100, 50 stay (its later 300 are all free)
    assert figures(svc, "u1") == (350, 0, 50, 0)
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(svc, "u1")] == [
        ("active", 50),
        ("active", 300),
    ]
    # and u2's first expired lot keeps 50, its second expires in full, whatever the chunks
    assert figures(svc, "u2") == (80, 0, 50, 0)
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(svc, "u2")] == [
        ("active", 50),
        ("expired", 0),
        ("active", 30),
    ]
    assert expired == 3
    assert system_total(svc, EXPIRED) == 50 + 150
    # and a second run changes nothing
    assert points_jobs.expire_lots(svc, chunk=chunk) == 0
    assert system_total(svc, EXPIRED) == 200
    # when u1's hold is captured by its order, it takes the 50 kept: u1 keeps its 300
    body = paid("pay-o6", "o6", "u1", 10000, [item("o6", 10000)], points_reservation_id="res-u1")
    send(svc, {**body, "occurred_at": iso(clock())})
    assert figures(svc, "u1") == (300, 100, 0, 0)
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(svc, "u1")][:2] == [
        ("active", 0),
        ("active", 300),
    ]
    # and when the job finds u2's hold lapsed, the 50 it kept expire as it is swept
    points_jobs.sweep_reservations(svc, now=clock() + timedelta(days=2))
    assert figures(svc, "u2") == (30, 0, 0, 0)
    assert system_total(svc, EXPIRED) == 250
    assert points_jobs.expire_lots(svc, chunk=chunk) == 0
    assert_reconciled(svc)


def test_a_run_cut_short_is_finished_by_the_next_one(svc, clock):
    # given u1 with five lots, 100 to 500 points, all expired
    apply(svc, document(expiry={"mode": "rolling", "days": 10}))
    for n in range(1, 6):
        earn(svc, clock, "u1", f"o{n}", n * 10000)
    clock.advance(days=12)

    # when the job dies right after its first chunk of two lots committed
    class Killed(Exception):
        pass

    def die(count: int) -> None:
        raise Killed

    with pytest.raises(Killed):
        points_jobs.expire_lots(svc, chunk=2, progress=die)
    # then those two lots are expired and the ledger adds up: the account still holds the
    # other three lots' 1,200 points (which the API does not show as available: they are past
    # their expiry, and the next spend would expire them first)
    assert [lot["status"] for lot in lots_of(svc)] == ["expired"] * 2 + ["active"] * 3
    assert stored_available(svc) == 1200
    assert figures(svc) == (0, 0, 0, 0)
    assert len(expiry_txns(svc)) == 2
    assert_reconciled(svc)
    # when the job runs again, it expires the other three
    assert points_jobs.expire_lots(svc, chunk=2) == 3
    assert figures(svc) == (0, 0, 0, 0)
    assert system_total(svc, EXPIRED) == 1500
    assert sorted(t["idem_key"] for t in expiry_txns(svc)) == sorted(
        f"expire:{lot['id']}" for lot in lots_of(svc)
    )
    # and once more, it writes nothing
    before = {t.name: len(rows(svc, t)) for t in (tables.point_txns, tables.point_entries)}
    assert points_jobs.expire_lots(svc, chunk=2) == 0
    assert {t.name: len(rows(svc, t)) for t in (tables.point_txns, tables.point_entries)} == before
    assert_reconciled(svc)


# ---------------------------------------------------------------- PostgreSQL: locks held elsewhere


def expire_beside(svc: Services, lock: sa.Executable) -> int:
    """Run the job while another transaction holds ``lock``; it must not wait for it."""
    with svc.engine.connect() as other, other.begin():
        assert other.execute(lock).all()
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(points_jobs.expire_lots, svc, None, 2).result(timeout=60)


@pytest.mark.postgres_only
def test_an_account_locked_elsewhere_is_stepped_over_not_waited_for(pg, clock):
    # given u1 and u2 each with two expired lots
    apply(pg, document(expiry={"mode": "rolling", "days": 10}))
    for n, member in enumerate(["u1", "u2", "u1", "u2"], start=1):
        earn(pg, clock, member, f"o{n}", n * 10000)
    clock.advance(days=12)
    # when the job runs while a redemption has u1's account locked
    accounts = tables.point_accounts
    lock = sa.select(accounts).where(accounts.c.member_id == "u1").with_for_update()
    # then it does not wait: u2's lots expire, u1's stay for the next run
    assert expire_beside(pg, lock) == 2
    assert stored_available(pg, "u1") == 400  # (not shown as available: past their expiry)
    assert stored_available(pg, "u2") == 0
    assert_reconciled(pg)
    # and the next run takes u1's
    assert points_jobs.expire_lots(pg, chunk=2) == 2
    assert figures(pg, "u1") == (0, 0, 0, 0)
    assert_reconciled(pg)


@pytest.mark.postgres_only
def test_a_lot_locked_elsewhere_waits_and_the_balance_moves_by_the_others_only(pg, clock):
    # given u1 with three expired lots: 100, 200 and 300 points
    apply(pg, document(expiry={"mode": "rolling", "days": 10}))
    for n in range(1, 4):
        earn(pg, clock, "u1", f"o{n}", n * 10000)
    clock.advance(days=12)
    # when the job runs while the 200-point lot is locked by another transaction
    middle = lots_of(pg)[1]["id"]
    lock = sa.select(tables.point_lots).where(tables.point_lots.c.id == middle).with_for_update()
    # then the other two expire and the balance drops by their 400 points only
    assert expire_beside(pg, lock) == 2
    assert [lot["status"] for lot in lots_of(pg)] == ["expired", "active", "expired"]
    assert stored_available(pg) == 200
    assert_reconciled(pg)
    # and the next run takes the last one
    assert points_jobs.expire_lots(pg) == 1
    assert figures(pg) == (0, 0, 0, 0)
    assert_reconciled(pg)
