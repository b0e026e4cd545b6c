"""Worked examples of points (积分), told as the business tells them, on SQLite and PostgreSQL.

Each story applies the platform's program document first (it takes effect from the test clock's
now), then sends events that occur as the clock moves on. After every story the ledger
reconciles: every balance equals the sum of its entries and its lots.
"""

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from huiyuan.cli.main import app as cli
from huiyuan.db import tables
from huiyuan.services import points_jobs

from .bodies import cancelled, completed, item, paid, refunded
from .ledger import (
    apply,
    assert_reconciled,
    balance,
    document,
    figures,
    history,
    iso,
    lots_of,
    send,
    system_total,
)
from .stored import one, problem_of, rows, the_effect

COAT, SCARF = item("coat", 19900), item("scarf", 10000)


def pay(svc, clock, order_id, amount, **kw):
    """The member u1 pays ``amount`` fen for one item, now."""
    items = kw.pop("items", None) or [item(f"sku-{order_id}", amount)]
    body = paid(f"pay-{order_id}", order_id, amount=amount, items=items, occurred_at=iso(clock()))
    body["data"].update(kw)
    return send(svc, body)["effects"]


def complete(svc, clock, order_id):
    return send(svc, completed(f"done-{order_id}", order_id, occurred_at=iso(clock())))["effects"]


def refund(svc, clock, order_id, refund_id, amount, **kw):
    body = refunded(f"ref-{refund_id}", order_id, refund_id, amount, occurred_at=iso(clock()), **kw)
    return send(svc, body)["effects"]


def earn(svc, clock, order_id, amount):
    """Pay and complete an order at once: ``amount // 100`` points released now."""
    pay(svc, clock, order_id, amount)
    return complete(svc, clock, order_id)


def end_of_shanghai_day(year, month, day):
    """The instant a business day in Asia/Shanghai ends (16:00 UTC that day)."""
    return datetime(year, month, day, 16, 0, tzinfo=UTC)


def reserve(api, amount, reservation_id="res-1", **body):
    return api.post(
        "/v1/members/u1/points/reservations", {"id": reservation_id, "amount": amount, **body}
    )


def redeem(api, amount, redemption_id="red-1", reason="¥15 coupon"):
    return api.post(
        "/v1/members/u1/points/redemptions",
        {"id": redemption_id, "amount": amount, "reason": reason},
    )


# ---------------------------------------------------------------- earning and refunds


def test_a_member_pays_299_completes_returns_one_item_and_redeems_the_rest(api, clock):
    svc = api.svc
    # given the platform gives 1 point per ¥1, pending until the order completes, and points
    # living 365 days after release
    version = apply(svc, document())
    # when a member pays ¥299 for a ¥199 coat and a ¥100 scarf
    effects = pay(svc, clock, "o1", 29900, items=[COAT, SCARF])
    # then 299 points are pending, by the base rule
    pending = the_effect(effects, "points.pending")
    assert (pending["program_id"], pending["rule_id"], pending["points"]) == (
        "platform",
        "base",
        299,
    )
    assert figures(svc) == (0, 299, 0, 0)
    # when the order completes three days later (2026-03-04 10:00 Shanghai)
    clock.advance(days=3)
    effects = complete(svc, clock, "o1")
    # then the 299 points are available until the end of 2027-03-04 Shanghai
    assert the_effect(effects, "points.released")["points"] == 299
    assert figures(svc) == (299, 0, 0, 0)
    (lot,) = lots_of(svc)
    assert (lot["status"], lot["remaining"]) == ("active", 299)
    assert lot["expires_at"] == end_of_shanghai_day(2027, 3, 4)
    # when the ¥100 scarf is returned
    clock.advance(days=1)
    effects = refund(
        svc, clock, "o1", "r1", 10000, items=[{"sku": "scarf", "quantity": 1, "amount": 10000}]
    )
    # then 100 of the released points are taken back (299 × 100/299), from the order's own lot
    clawed = the_effect(effects, "points.clawed_back")
    assert (clawed["points"], clawed["debt"], clawed["lot_id"]) == (100, 0, lot["id"])
    assert figures(svc) == (199, 0, 0, 0)
    lot = one(svc, tables.point_lots, id=lot["id"])
    assert (lot["remaining"], lot["clawed"]) == (199, 100)
    # when they redeem 150 points for a ¥15 coupon
    response = redeem(api, 150)
    # then 49 are left
    assert response.status_code == 201, response.json()
    assert response.json()["balance"]["available"] == 49
    assert figures(svc) == (49, 0, 0, 0)
    # and their history tells the story, newest first, each step with its reasons and version
    story = history(svc)
    assert [(e["kind"], e["available"], e["pending"]) for e in story] == [
        ("redeem", -150, 0),
        ("clawback", -100, 0),
        ("release", 299, -299),
        ("earn", 0, 299),
    ]
    assert [e["config_version"] for e in story] == [version] * 4
    assert story[0]["reason"] == {"zh": "积分兑换：¥15 coupon", "en": "redeemed: ¥15 coupon"}
    assert "r1" in story[1]["reason"]["zh"] and "taken back" in story[1]["reason"]["en"]
    assert story[3]["rule_id"] == "base" and "¥299.00" in story[3]["reason"]["zh"]
    assert_reconciled(svc)


def test_a_refund_before_completion_cancels_pending_points_in_proportion(svc, clock):
    # given a ¥299 order whose 299 points are still pending
    apply(svc, document())
    pay(svc, clock, "o1", 29900, items=[COAT, SCARF])
    # when ¥100 is refunded, then the order completes
    cancelled_part = the_effect(refund(svc, clock, "o1", "r1", 10000), "points.cancelled")
    released = the_effect(complete(svc, clock, "o1"), "points.released")
    # then 100 pending points were cancelled and only 199 released
    assert cancelled_part["points"] == 100
    assert released["points"] == 199
    assert figures(svc) == (199, 0, 0, 0)
    # and a refund of the rest takes back the 199 released
    assert the_effect(refund(svc, clock, "o1", "r2", 19900), "points.clawed_back")["points"] == 199
    assert figures(svc) == (0, 0, 0, 0)
    assert_reconciled(svc)


def test_a_cancelled_order_earns_nothing(svc, clock):
    # given a paid order with 299 points pending
    apply(svc, document())
    pay(svc, clock, "o1", 29900)
    # when it is cancelled
    effects = send(svc, cancelled("cancel-1", "o1", occurred_at=iso(clock())))["effects"]
    # then its points are cancelled and its lot too
    assert the_effect(effects, "points.cancelled")["points"] == 299
    assert figures(svc) == (0, 0, 0, 0)
    assert [lot["status"] for lot in lots_of(svc)] == ["cancelled"]
    assert_reconciled(svc)


# ---------------------------------------------------------------- redemption and its refund


def test_points_reserved_at_checkout_are_captured_and_a_refund_restores_their_lots(api, clock):
    svc = api.svc
    # given a member with 100 points from an order on Mar 1st and 200 from one on Mar 11th
    apply(svc, document())
    earn(svc, clock, "o1", 10000)
    clock.advance(days=10)
    earn(svc, clock, "o2", 20000)
    first, second = lots_of(svc)
    assert first["expires_at"] < second["expires_at"]
    # when 150 points are reserved at the checkout of a ¥300 order
    response = reserve(api, 150, order_id="o3")
    # then they are held: still available but no longer spendable
    assert response.status_code == 201, response.json()
    held = response.json()
    assert (held["id"], held["status"], held["amount"]) == ("res-1", "held", 150)
    assert (held["balance"]["available"], held["balance"]["spendable"]) == (300, 150)
    assert figures(svc) == (300, 0, 150, 0)
    # when the order is paid, naming the reservation
    effects = pay(svc, clock, "o3", 30000, points_reservation_id="res-1")
    # then the hold is captured: the older lot is drawn empty first, then 50 of the newer
    captured = the_effect(effects, "points.captured")
    assert (captured["reservation_id"], captured["points"]) == ("res-1", 150)
    assert figures(svc) == (150, 300, 0, 0)
    assert [lot["remaining"] for lot in lots_of(svc)[:2]] == [0, 150]
    assert one(svc, tables.point_reservations, reservation_id="res-1")["status"] == "captured"
    # when half of the order is refunded
    effects = refund(svc, clock, "o3", "r1", 15000)
    # then half of the deducted points come back, to the lot they were first drawn from
    assert the_effect(effects, "points.restored")["points"] == 75
    assert the_effect(effects, "points.cancelled")["points"] == 150
    assert [lot["remaining"] for lot in lots_of(svc)[:2]] == [75, 150]
    # when the rest is refunded
    effects = refund(svc, clock, "o3", "r2", 15000)
    # then every deducted point is back in its lot, with the expiry it always had
    assert the_effect(effects, "points.restored")["points"] == 75
    again = lots_of(svc)[:2]
    assert [lot["remaining"] for lot in again] == [100, 200]
    assert [lot["expires_at"] for lot in again] == [first["expires_at"], second["expires_at"]]
    assert figures(svc) == (300, 0, 0, 0)
    restores = history(svc, kind="restore")
    assert [e["available"] for e in restores] == [75, 75]
    assert_reconciled(svc)


def test_a_hold_on_a_paid_order_is_released_when_the_order_is_cancelled(api, clock):
    svc = api.svc
    # given a member with 299 points and a ¥100 order paid on delivery terms, against which 50
    # points are then held for the balance due
    apply(svc, document())
    earn(svc, clock, "o1", 29900)
    pay(svc, clock, "o2", 10000)
    assert reserve(api, 50, order_id="o2").status_code == 201
    assert figures(svc) == (299, 100, 50, 0)
    # when the order is cancelled
    effects = send(svc, cancelled("cancel-o2", "o2", occurred_at=iso(clock())))["effects"]
    # then the hold is released and the order's pending points cancelled
    assert {"kind": "points.reservation_released", "reservation_id": "res-1"} in effects
    assert the_effect(effects, "points.cancelled")["points"] == 100
    assert figures(svc) == (299, 0, 0, 0)
    assert one(svc, tables.point_reservations, reservation_id="res-1")["status"] == "released"
    assert_reconciled(svc)


def test_a_cancelled_order_gives_back_the_points_it_used(api, clock):
    svc = api.svc
    # given 299 points, 100 of them used on a ¥200 order
    apply(svc, document())
    earn(svc, clock, "o1", 29900)
    assert reserve(api, 100, order_id="o2").status_code == 201
    pay(svc, clock, "o2", 20000, points_reservation_id="res-1")
    assert figures(svc) == (199, 200, 0, 0)
    # when the order is cancelled
    effects = send(svc, cancelled("cancel-o2", "o2", occurred_at=iso(clock())))["effects"]
    # then the 100 points come back and the order's own points are cancelled
    assert the_effect(effects, "points.restored")["points"] == 100
    assert figures(svc) == (299, 0, 0, 0)
    assert_reconciled(svc)


def test_an_unused_hold_lapses_after_its_time_and_the_sweep_releases_it(api, clock):
    svc = api.svc
    # given a member with 299 points, 100 held for a minute and 50 held for an hour
    apply(svc, document())
    earn(svc, clock, "o1", 29900)
    assert reserve(api, 100, "res-short", ttl_seconds=60).status_code == 201
    assert reserve(api, 50, "res-long", ttl_seconds=3600).status_code == 201
    assert figures(svc) == (299, 0, 150, 0)
    # when the sweep runs before the minute is up, nothing lapses
    clock.advance(seconds=59)
    assert points_jobs.sweep_reservations(svc) == 0
    # when it runs after the minute
    clock.advance(seconds=2)
    assert points_jobs.sweep_reservations(svc) == 1
    # then the short hold is released (as expired), the long one still holds
    assert figures(svc) == (299, 0, 50, 0)
    assert one(svc, tables.point_reservations, reservation_id="res-short")["status"] == "expired"
    assert one(svc, tables.point_reservations, reservation_id="res-long")["status"] == "held"
    # and a second sweep changes nothing
    assert points_jobs.sweep_reservations(svc) == 0
    assert figures(svc) == (299, 0, 50, 0)
    assert_reconciled(svc)


def test_a_hold_released_by_the_checkout_is_spendable_again(api, clock):
    svc = api.svc
    apply(svc, document())
    earn(svc, clock, "o1", 29900)
    assert reserve(api, 200).status_code == 201
    # when the checkout gives up and releases the hold
    response = api.client.delete("/v1/members/u1/points/reservations/res-1", headers=api.headers())
    # then it is released and the points spendable again; a second release changes nothing
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "released"
    assert response.json()["balance"]["spendable"] == 299
    again = api.client.delete("/v1/members/u1/points/reservations/res-1", headers=api.headers())
    assert again.status_code == 200
    assert figures(svc) == (299, 0, 0, 0)
    assert_reconciled(svc)


def test_an_order_paid_with_a_lapsed_hold_the_member_spent_meanwhile_is_recorded_short(api, clock):
    svc = api.svc
    # given a member with 299 points who held 150 at a checkout for a minute
    apply(svc, document())
    earn(svc, clock, "o1", 29900)
    assert reserve(api, 150, ttl_seconds=60).status_code == 201
    # and the hold lapsed, and the member redeemed 200 of the points elsewhere
    clock.advance(seconds=61)
    assert points_jobs.sweep_reservations(svc) == 1
    assert redeem(api, 200).status_code == 201
    # when the order of that checkout is paid after all, naming the lapsed hold
    effects = pay(svc, clock, "o2", 10000, points_reservation_id="res-1")
    # then the order is recorded and earns its points; the 99 points left are taken and the
    # 51 missing are reported short, not invented
    captured = the_effect(effects, "points.captured")
    assert (captured["points"], captured["shortfall"]) == (99, 51)
    assert the_effect(effects, "points.pending")["points"] == 100
    assert one(svc, tables.orders, order_id="o2")["amount"] == 10000
    assert figures(svc) == (0, 100, 0, 0)
    assert one(svc, tables.point_reservations, reservation_id="res-1")["status"] == "captured"
    # and operators hear of it through the outbox
    (short,) = rows(svc, tables.outbox, topic="points.capture_short")
    assert short["payload"]["shortfall"] == 51 and short["payload"]["order_id"] == "o2"
    # and a refund of the order gives back only what was taken
    restored = refund(svc, clock, "o2", "r1", 10000)
    assert the_effect(restored, "points.restored")["points"] == 99
    assert figures(svc)[0] == 99
    assert_reconciled(svc)


# ---------------------------------------------------------------- expiry


CALENDAR = {"mode": "calendar", "years_after": 1, "month": 12, "day": 31}


def test_points_expire_on_a_fixed_calendar_day_across_the_year_boundary(api, clock):
    svc = api.svc
    # given points released in a year expire at the end of the next year, Shanghai time
    apply(svc, document(expiry=CALENDAR))
    # and a member earned 100 points on 2026-03-01, 200 at 2026-12-31 23:30 Shanghai and 300
    # at 2027-01-01 00:10 Shanghai (still Dec 31st in UTC)
    earn(svc, clock, "o1", 10000)
    clock.now = datetime(2026, 12, 31, 15, 30, tzinfo=UTC)
    earn(svc, clock, "o2", 20000)
    clock.now = datetime(2026, 12, 31, 16, 10, tzinfo=UTC)
    earn(svc, clock, "o3", 30000)
    # and redeemed 50, drawn from the oldest lot
    assert redeem(api, 50).status_code == 201
    # then the 2026 lots end with 2027, the 2027 lot with 2028
    assert [lot["expires_at"] for lot in lots_of(svc)] == [
        end_of_shanghai_day(2027, 12, 31),
        end_of_shanghai_day(2027, 12, 31),
        end_of_shanghai_day(2028, 12, 31),
    ]
    assert [lot["remaining"] for lot in lots_of(svc)] == [50, 200, 300]
    # when the expiry job runs in the last minute of 2027 in Shanghai, nothing expires
    clock.now = datetime(2027, 12, 31, 15, 59, tzinfo=UTC)
    assert points_jobs.expire_lots(svc) == 0
    assert figures(svc) == (550, 0, 0, 0)
    # when it runs just after midnight
    clock.now = datetime(2027, 12, 31, 16, 1, tzinfo=UTC)
    assert points_jobs.expire_lots(svc) == 2
    # then the 250 points left of 2026 are gone and the lots are closed as expired
    assert figures(svc) == (300, 0, 0, 0)
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(svc)] == [
        ("expired", 0),
        ("expired", 0),
        ("active", 300),
    ]
    # and the history says so, at the instant they expired
    expiries = history(svc, kind="expire")
    assert [e["available"] for e in expiries] == [-200, -50]
    assert {e["occurred_at"] for e in expiries} == {end_of_shanghai_day(2027, 12, 31).isoformat()}
    assert expiries[0]["reason"] == {"zh": "积分过期", "en": "points expired"}
    assert system_total(svc, "system:expired") == 250
    # and a balance asked as of the minute before still shows them
    before = api.get("/v1/members/u1/points", as_of="2027-12-31T15:59:00Z").json()
    assert before["available"] == 550
    # when the job runs again, nothing changes
    transactions = len(rows(svc, tables.point_txns))
    assert points_jobs.expire_lots(svc) == 0
    assert figures(svc) == (300, 0, 0, 0)
    assert len(rows(svc, tables.point_txns)) == transactions
    assert_reconciled(svc)


def test_a_member_is_reminded_once_of_each_lot_about_to_expire(svc, clock):
    # given points live 40 days and members are reminded 7 days ahead
    apply(svc, document(expiry={"mode": "rolling", "days": 40, "reminder_days": 7}))
    # and a member earned 100 points on Mar 1st (ending with Apr 10th) and 50 on Mar 3rd
    # (ending with Apr 12th)
    earn(svc, clock, "o1", 10000)
    clock.advance(days=2)
    earn(svc, clock, "o2", 5000)
    first_end = end_of_shanghai_day(2026, 4, 10)
    # when the reminder job runs 8 days before the first lot ends, nobody is reminded
    clock.now = first_end - timedelta(days=8)
    assert points_jobs.remind_expiring(svc) == 0
    # when it runs 6 days before, the member is told of the 100 points ending within the week
    clock.now = first_end - timedelta(days=6)
    assert points_jobs.remind_expiring(svc) == 1
    (message,) = rows(svc, tables.outbox, topic="points.expiring_soon")
    assert message["key"] == "u1"
    assert message["payload"] == {
        "program_id": "platform",
        "member_id": "u1",
        "points": 100,
        "first_expires_at": first_end.isoformat(),
    }
    # and running it again the same day sends nothing more
    assert points_jobs.remind_expiring(svc) == 0
    # when it runs the next day, only the 50 points now within the week are news
    clock.advance(days=1)
    assert points_jobs.remind_expiring(svc) == 1
    messages = rows(svc, tables.outbox, topic="points.expiring_soon")
    assert [m["payload"]["points"] for m in messages] == [100, 50]
    assert_reconciled(svc)


def test_points_past_their_expiry_cannot_be_spent_before_the_job_runs(api, clock):
    svc = api.svc
    # given 100 points expiring after 10 days and 50 earned 5 days later
    two_lots(svc, clock, 100, 50)
    first, second = lots_of(svc)
    # when the first lot's expiry has passed and the expiry job has not run yet
    clock.advance(days=7)
    # then the member is shown 50 available, and only the second lot as expiring
    shown = api.get("/v1/members/u1/points").json()
    assert (shown["available"], shown["spendable"]) == (50, 50)
    assert shown["expiring_30d"]["lots"] == [
        {"expires_at": second["expires_at"].isoformat(), "points": 50}
    ]
    # when they try to redeem 80
    transactions = len(rows(svc, tables.point_txns))
    response = redeem(api, 80)
    # then it is refused with what they have, and nothing is written, not even the expiry
    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_points"
    assert "50 available" in response.json()["detail"]
    assert len(rows(svc, tables.point_txns)) == transactions
    assert one(svc, tables.point_lots, id=first["id"])["status"] == "active"
    # when they redeem 50
    response = redeem(api, 50, "red-2")
    # then the first lot expires (dated at its expiry, by the expiry's own reasons) and the
    # 50 come from the second one
    assert response.status_code == 201, response.json()
    assert response.json()["balance"]["available"] == 0
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(svc)] == [
        ("expired", 0),
        ("active", 0),
    ]
    (expiry,) = history(svc, kind="expire")
    assert expiry["available"] == -100
    assert expiry["occurred_at"] == first["expires_at"].isoformat()
    assert expiry["reason"] == {"zh": "积分过期", "en": "points expired"}
    assert system_total(svc, "system:expired") == 100
    # and the job, when it comes, finds nothing left to expire
    assert points_jobs.expire_lots(svc) == 0
    assert_reconciled(svc)


def test_a_balance_as_of_an_instant_after_an_expiry_leaves_the_points_out_before_the_job(
    api, clock
):
    svc = api.svc
    # given 100 points expiring after 10 days and 50 earned 5 days later
    two_lots(svc, clock, 100, 50)
    first, _ = lots_of(svc)
    expired_at = first["expires_at"]
    moments = [expired_at - timedelta(minutes=1), expired_at, expired_at + timedelta(hours=1)]

    def as_of() -> list[int]:
        return [
            api.get("/v1/members/u1/points", as_of=iso(at)).json()["available"] for at in moments
        ]

    # when the balance is asked as of instants around the first lot's expiry, two hours
    # after it, before the expiry job ran
    clock.now = expired_at + timedelta(hours=2)
    before_job = as_of()
    # then the 100 count until they expired and not from then on
    assert before_job == [150, 50, 50]
    # and the job, when it runs, records exactly that: the answers do not change
    assert points_jobs.expire_lots(svc) == 1
    assert as_of() == before_job
    # and a balance as of an instant still to come is refused, naming the parameter
    future = api.get("/v1/members/u1/points", as_of=iso(clock() + timedelta(minutes=1)))
    assert problem_of(future, 422, "as_of_in_future")["field"] == "as_of"
    assert_reconciled(svc)


def test_points_a_hold_keeps_from_expiring_count_as_of_an_instant_after_their_expiry(api, clock):
    # given 100 points held across their expiry by a hold of 60, and 50 later ones
    held_across_expiry(api, clock, first=100, later=50, hold=60)
    expired_at = lots_of(api.svc)[0]["expires_at"]

    # when the balance is asked as of half an hour after the expiry
    def then() -> int:
        at = iso(expired_at + timedelta(minutes=30))
        return api.get("/v1/members/u1/points", as_of=at).json()["available"]

    # then the 60 the hold keeps still count, the other 40 are gone, as in the live balance
    assert then() == 110
    live = api.get("/v1/members/u1/points").json()
    assert (live["available"], live["reserved"], live["spendable"]) == (110, 60, 50)
    # and the job, when it runs, records just that: the answers do not change
    assert points_jobs.expire_lots(api.svc) == 1
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(api.svc)] == [
        ("active", 60),
        ("active", 50),
    ]
    assert then() == 110
    assert api.get("/v1/members/u1/points").json()["available"] == 110
    assert_reconciled(api.svc)


def test_points_a_released_hold_kept_past_their_expiry_expire_when_it_ends(api, clock):
    # given 100 points held across their expiry by a hold of 60, and 50 later ones; the job
    # ran an hour after the expiry and took the 40 the hold does not keep
    held_across_expiry(api, clock, first=100, later=50, hold=60)
    expired_at = lots_of(api.svc)[0]["expires_at"]
    assert points_jobs.expire_lots(api.svc) == 1

    def then(minutes: int) -> int:
        at = iso(expired_at + timedelta(minutes=minutes))
        return api.get("/v1/members/u1/points", as_of=at).json()["available"]

    assert (then(30), then(60)) == (110, 110)
    # when the checkout releases the hold three hours after the expiry
    clock.now = expired_at + timedelta(hours=3)
    released = api.client.delete("/v1/members/u1/points/reservations/res-1", headers=api.headers())
    assert released.status_code == 200
    # then the 60 it kept expire now, and the answer says so
    assert released.json()["balance"]["available"] == 50
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(api.svc)] == [
        ("expired", 0),
        ("active", 50),
    ]
    # and, an hour later, the balance as of any instant before the release is what it was:
    # the 60 were the member's, kept for the capture, until the hold ended
    clock.now = expired_at + timedelta(hours=4)
    assert (then(30), then(60), then(179)) == (110, 110, 110)
    assert then(181) == 50
    expiries = [e for e in history(api.svc) if e["kind"] == "expire"]
    assert [(e["available"], e["occurred_at"]) for e in expiries] == [
        (-60, iso(expired_at + timedelta(hours=3))),
        (-40, iso(expired_at)),
    ]
    assert_reconciled(api.svc)


def two_lots(svc, clock, first, later):
    """Points living 10 days: ``first`` from o1, then ``later`` from o2 five days after."""
    apply(svc, document(expiry={"mode": "rolling", "days": 10}))
    earn(svc, clock, "o1", first * 100)
    clock.advance(days=5)
    earn(svc, clock, "o2", later * 100)


def held_across_expiry(api, clock, *, first, later, hold):
    """``two_lots``, a hold of ``hold`` for order o3 placed an hour before the first expire;
    then the clock moves to an hour after."""
    two_lots(api.svc, clock, first, later)
    expires_at = lots_of(api.svc)[0]["expires_at"]
    clock.now = expires_at - timedelta(hours=1)
    assert reserve(api, hold, order_id="o3", ttl_seconds=86_400).status_code == 201
    clock.now = expires_at + timedelta(hours=1)


def test_a_hold_placed_before_expiry_is_captured_in_full_after_it(api, clock):
    svc = api.svc
    # given 100 points expiring after 10 days, 50 more expiring later, and 120 held at a
    # checkout an hour before the first 100 expire
    # when their expiry passes while the order is being paid
    held_across_expiry(api, clock, first=100, later=50, hold=120)
    # then the hold keeps the points its capture will take, the oldest first: all 100 past
    # their expiry, and 20 of the later 50 — the other 30 are the member's to spend
    shown = api.get("/v1/members/u1/points").json()
    assert (shown["available"], shown["reserved"], shown["spendable"]) == (150, 120, 30)
    response = redeem(api, 31)
    assert (response.status_code, response.json()["code"]) == (409, "insufficient_points")
    assert "30 available" in response.json()["detail"]
    # and a spend of those 30 takes them from the later lot, not from what the hold keeps
    assert redeem(api, 30).status_code == 201
    assert [lot["remaining"] for lot in lots_of(svc)[:2]] == [100, 20]
    # when the order is paid with the hold
    effects = pay(svc, clock, "o3", 30000, points_reservation_id="res-1")
    # then all 120 are captured, the expired lot first, and nothing expires
    assert the_effect(effects, "points.captured")["points"] == 120
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(svc)[:2]] == [
        ("active", 0),
        ("active", 0),
    ]
    assert history(svc, kind="expire") == []
    assert figures(svc)[0] == 0
    assert_reconciled(svc)


def test_a_small_hold_keeps_only_its_own_points_of_a_large_expired_balance(api, clock):
    svc = api.svc
    # given 1,000 points expiring after 10 days and 5 earned later, and a 10-point hold placed
    # an hour before the 1,000 expire
    # when, after the expiry, the member tries to spend what expired
    held_across_expiry(api, clock, first=1000, later=5, hold=10)
    response = redeem(api, 990)
    # then only the later 5 are free: the hold keeps its 10, the other 990 are gone
    assert (response.status_code, response.json()["code"]) == (409, "insufficient_points")
    assert "5 available" in response.json()["detail"]
    shown = api.get("/v1/members/u1/points").json()
    assert (shown["available"], shown["reserved"], shown["spendable"]) == (15, 10, 5)
    assert shown["expiring_30d"]["lots"][0]["points"] == 10  # past its expiry, kept
    # and the job records it so
    assert points_jobs.expire_lots(svc) == 1
    assert figures(svc) == (15, 0, 10, 0)
    assert system_total(svc, "system:expired") == 990
    (lapse,) = rows(svc, tables.point_txns, kind="expire")
    assert lapse["idem_key"] == f"expire:{lots_of(svc)[0]['id']}:10"  # expired down to 10
    assert reserve(api, 6, "res-2").json()["code"] == "insufficient_points"
    assert reserve(api, 5, "res-2").status_code == 201
    # when the first hold is captured, it takes its 10 from the expired lot
    effects = pay(svc, clock, "o3", 5000, points_reservation_id="res-1")
    assert the_effect(effects, "points.captured")["points"] == 10
    # and nothing is left to expire: the later 5 are held by the second hold
    assert points_jobs.expire_lots(svc) == 0
    assert figures(svc) == (5, 50, 5, 0)  # and o3's 50 pending
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(svc)] == [
        ("closed", 0),  # spent out past its expiry: the job closed it
        ("active", 5),
        ("pending", 50),
    ]
    assert system_total(svc, "system:expired") == 990
    assert_reconciled(svc)


def test_a_refund_after_its_points_expired_takes_back_the_lapse_not_other_points(api, clock):
    svc = api.svc
    # given 100 points from o1 expiring after 10 days, and 50 from o2 earned 5 days later
    two_lots(svc, clock, 100, 50)
    # when o1 is refunded in full after its points' expiry, before the expiry job ran
    clock.advance(days=7)
    clawed = the_effect(refund(svc, clock, "o1", "r1", 10000), "points.clawed_back")
    # then the 100 points are taken back from what lapsed: o2's 50 are untouched, no debt
    assert (clawed["points"], clawed["debt"]) == (100, 0)
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(svc)] == [
        ("expired", 0),
        ("active", 50),
    ]
    assert figures(svc) == (50, 0, 0, 0)
    assert system_total(svc, "system:expired") == 0  # the lapse, taken back
    assert_reconciled(svc)


def test_expiry_leaves_a_hold_the_points_it_covers_and_takes_the_rest(api, clock):
    svc = api.svc
    # given 100 points expiring after 10 days, 60 of them held at a checkout
    apply(svc, document(expiry={"mode": "rolling", "days": 10}))
    earn(svc, clock, "o1", 10000)
    assert reserve(api, 60, ttl_seconds=86_400).status_code == 201
    # when the expiry job runs after they expired
    clock.advance(days=12)
    # then the 40 the hold does not need expire, and the lot keeps the 60 it covers
    assert points_jobs.expire_lots(svc) == 1
    assert figures(svc) == (60, 0, 60, 0)
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(svc)] == [("active", 60)]
    # and a second run changes nothing
    assert points_jobs.expire_lots(svc) == 0
    assert figures(svc) == (60, 0, 60, 0)
    # when the job finds the hold lapsed, the rest of the lot expires as the hold is swept,
    # dated then (until then the 60 were kept for the capture)
    swept_at = clock()
    points_jobs.sweep_reservations(svc)
    assert figures(svc) == (0, 0, 0, 0)
    assert [(lot["status"], lot["remaining"]) for lot in lots_of(svc)] == [("expired", 0)]
    assert system_total(svc, "system:expired") == 100
    expiries = [(e["available"], e["occurred_at"]) for e in history(svc) if e["kind"] == "expire"]
    assert expiries == [(-60, iso(swept_at)), (-40, iso(lots_of(svc)[0]["expires_at"]))]
    assert points_jobs.expire_lots(svc) == 0
    assert_reconciled(svc)


def test_points_released_after_the_return_window_wait_for_the_nightly_release(svc, clock):
    # given pending points are released 7 days after the order completes
    apply(svc, document(pending={"release": "after_return_window", "return_window_days": 7}))
    pay(svc, clock, "o1", 29900)
    # when the order completes
    effects = complete(svc, clock, "o1")
    # then the release is scheduled 7 days later and the points stay pending
    due = clock() + timedelta(days=7)
    scheduled = the_effect(effects, "points.release_scheduled")
    assert scheduled["release_at"] == due.isoformat()
    assert figures(svc) == (0, 299, 0, 0)
    # when the job runs on day 6, nothing is released; a ¥100 return that day cancels 100
    clock.advance(days=6)
    assert points_jobs.release_due_lots(svc) == 0
    assert the_effect(refund(svc, clock, "o1", "r1", 10000), "points.cancelled")["points"] == 100
    # when it runs on day 7
    clock.advance(days=1)
    assert points_jobs.release_due_lots(svc) == 1
    # then the rest is released as of the end of the window, its expiry counted from then
    assert figures(svc) == (199, 0, 0, 0)
    (lot,) = lots_of(svc)
    assert lot["released_at"] == due
    assert lot["expires_at"] == end_of_shanghai_day(2027, 3, 8)
    # and a second run releases nothing more
    assert points_jobs.release_due_lots(svc) == 0
    assert figures(svc) == (199, 0, 0, 0)
    assert_reconciled(svc)


# ---------------------------------------------------------------- spent points taken back


def spend_all_then_refund(api, clock, policy):
    """A member earns 299 on o1 (Mar 1st) and 50 on o2 (Mar 2nd), spends o1's 299 and returns
    o1 in full."""
    svc = api.svc
    apply(svc, document(negative_balance=policy))
    earn(svc, clock, "o1", 29900)
    clock.advance(days=1)
    earn(svc, clock, "o2", 5000)
    assert redeem(api, 299).status_code == 201
    assert [lot["remaining"] for lot in lots_of(svc)] == [0, 50]
    return the_effect(refund(api.svc, clock, "o1", "r1", 29900), "points.clawed_back")


def test_points_spent_before_a_refund_become_a_debt_repaid_from_later_points(api, clock):
    svc = api.svc
    # given a program that lets a balance go into debt
    # when a member spends an order's 299 points and then returns the order
    clawed = spend_all_then_refund(api, clock, "debt")
    # then the 50 points they have left are taken and the other 249 are owed
    assert (clawed["points"], clawed["debt"]) == (299, 249)
    assert figures(svc) == (0, 0, 0, 249)
    assert balance(svc)["debt"] == 249
    # when their next order of ¥100 completes, it repays the debt first
    clock.advance(days=1)
    effects = earn(svc, clock, "o3", 10000)
    assert the_effect(effects, "points.released")["points"] == 100
    assert figures(svc) == (0, 0, 0, 149)
    repaid = history(svc, kind="release")[0]
    assert (repaid["available"], repaid["debt"]) == (0, -100)
    # and once the debt is repaid the rest is theirs to spend
    earn(svc, clock, "o4", 20000)
    assert figures(svc) == (51, 0, 0, 0)
    assert_reconciled(svc)


def test_a_restore_to_several_lots_repays_a_debt_once(api, clock):
    svc = api.svc
    # given a program that lets a balance go into debt, 100 points from o1 and 100 from o2,
    # and an order o3 that paid with 150 of them: o1's 100 and 50 of o2's
    apply(svc, document(negative_balance="debt"))
    earn(svc, clock, "o1", 10000)
    clock.advance(days=1)
    earn(svc, clock, "o2", 10000)
    assert reserve(api, 150, order_id="o3").status_code == 201
    pay(svc, clock, "o3", 15000, points_reservation_id="res-1")
    assert [lot["remaining"] for lot in lots_of(svc)][:2] == [0, 50]
    # and o1 is returned: its 100 points are taken back, 50 from what is left, 50 owed
    clawed = the_effect(refund(svc, clock, "o1", "r1", 10000), "points.clawed_back")
    assert (clawed["points"], clawed["debt"]) == (100, 50)
    assert figures(svc) == (0, 150, 0, 50)
    # when o3 is returned too, its 150 points going back to the two lots they came from
    effects = refund(svc, clock, "o3", "r3", 15000)
    # then the debt is repaid once, from the first lot given back: 100 are left to spend
    assert the_effect(effects, "points.restored")["points"] == 150
    assert figures(svc) == (100, 0, 0, 0)
    restore = history(svc, kind="restore")[0]
    assert (restore["available"], restore["debt"]) == (100, -50)
    assert_reconciled(svc)


def test_points_spent_before_a_refund_are_written_off_when_the_program_says_so(api, clock):
    svc = api.svc
    # given a program that writes off what a member cannot give back
    # when a member spends an order's 299 points and then returns the order
    clawed = spend_all_then_refund(api, clock, "write_off")
    # then the 50 points they have left are taken, the other 249 recorded as written off
    assert (clawed["points"], clawed["debt"]) == (299, 0)
    assert figures(svc) == (0, 0, 0, 0)
    assert system_total(svc, "system:written_off") == -249
    # and the month's flow says the 299 were taken back, 249 of them forgiven
    (month,) = api.get("/v1/reports/points-flow", months=1).json()["months"]
    assert (month["taken_back"], month["written_off"], month["balance"]) == (299, 249, 0)
    assert month["change"] == (
        month["issued"]
        - month["taken_back"]
        - month["redeemed"]
        - month["expired"]
        - month["adjusted_out"]
        + month["written_off"]
    )
    # and the next order's points are theirs at once
    clock.advance(days=1)
    earn(svc, clock, "o3", 10000)
    assert figures(svc) == (100, 0, 0, 0)
    assert_reconciled(svc)


def test_a_refund_leaves_points_held_at_a_checkout_alone(api, clock):
    svc = api.svc
    # given a program that writes off what a member cannot give back, and a member whose only
    # point is held for a checkout
    apply(svc, document(negative_balance="write_off"))
    earn(svc, clock, "o1", 100)
    assert reserve(api, 1).status_code == 201
    # when the order that earned it is refunded
    clawed = the_effect(refund(svc, clock, "o1", "r1", 100), "points.clawed_back")
    # then the held point stays held (the checkout may still capture it) and the point taken
    # back is written off
    assert (clawed["points"], clawed["debt"]) == (1, 0)
    assert figures(svc) == (1, 0, 1, 0)
    assert system_total(svc, "system:written_off") == -1
    assert_reconciled(svc)


def test_a_refund_after_the_lot_expired_counts_the_lapse_as_taken_back(svc, clock):
    # given 299 points earned on o1 that expired unspent, and 100 later points from o2
    apply(svc, document(expiry={"mode": "rolling", "days": 10}))
    earn(svc, clock, "o1", 29900)
    clock.advance(days=12)
    assert points_jobs.expire_lots(svc) == 1
    earn(svc, clock, "o2", 10000)
    # when o1 is returned in full
    clawed = the_effect(refund(svc, clock, "o1", "r1", 29900), "points.clawed_back")
    # then the lapsed points count as taken back: the later points and the debt are untouched
    assert (clawed["points"], clawed["debt"]) == (299, 0)
    assert figures(svc) == (100, 0, 0, 0)
    assert system_total(svc, "system:expired") == 0
    assert_reconciled(svc)


@pytest.mark.parametrize(
    ("mode", "available_after", "expired_total"),
    [("reissue", 100, 100), ("forfeit", 0, 200)],
)
def test_a_refund_of_points_whose_lot_expired_meanwhile(
    api, clock, mode, available_after, expired_total
):
    svc = api.svc
    # given points live 30 days, and a refund of points whose lot expired meanwhile is
    # reissued (for 15 days) or forfeited
    doc = document(
        expiry={"mode": "rolling", "days": 30}, refund_of_expired={"mode": mode, "days": 15}
    )
    apply(svc, doc)
    # and a member used 100 of their 200 points on a ¥100 order
    earn(svc, clock, "o1", 20000)
    assert reserve(api, 100, order_id="o2").status_code == 201
    pay(svc, clock, "o2", 10000, points_reservation_id="res-1")
    # and the rest of that lot expired
    clock.advance(days=32)
    assert points_jobs.expire_lots(svc) == 1
    assert figures(svc) == (0, 100, 0, 0)
    # when the order is refunded in full
    effects = refund(svc, clock, "o2", "r1", 10000)
    # then the 100 points come back as a fresh lot, or are forfeited as expired
    assert the_effect(effects, "points.restored")["points"] == 100
    assert figures(svc) == (available_after, 0, 0, 0)
    assert system_total(svc, "system:expired") == expired_total
    fresh = [lot for lot in lots_of(svc) if lot["status"] == "active"]
    if mode == "reissue":
        (lot,) = fresh
        assert (lot["amount"], lot["remaining"]) == (100, 100)
        assert lot["expires_at"] == clock() + timedelta(days=15)
    else:
        assert fresh == []
    # and the liability report agrees with the ledger: the forfeited 100 count as expired, no
    # longer as redeemed; reissued, they are outstanding again
    (report,) = points_jobs.liability(svc)
    outstanding, redeemed = (100, 0) if mode == "reissue" else (0, 0)
    assert (report["outstanding"], report["redeemed"], report["expired"]) == (
        outstanding,
        redeemed,
        expired_total,
    )
    assert_reconciled(svc)


# ---------------------------------------------------------------- the ledger proves itself


def test_reconcile_detects_a_balance_changed_behind_the_ledgers_back(
    svc, clock, db_url, monkeypatch
):
    # given a member with 299 points, and a ledger that reconciles, as the operator's
    # `huiyuan ledger reconcile` says too
    monkeypatch.setenv("HUIYUAN_DATABASE_URL", db_url)
    apply(svc, document())
    earn(svc, clock, "o1", 29900)
    assert_reconciled(svc)
    clean = CliRunner().invoke(cli, ["ledger", "reconcile"])
    assert clean.exit_code == 0, clean.output
    assert "no drift" in clean.stdout
    # when someone adds 5 points to the balance row directly
    with svc.engine.begin() as conn:
        conn.execute(
            tables.point_accounts.update()
            .where(tables.point_accounts.c.member_id == "u1")
            .values(available=tables.point_accounts.c.available + 5)
        )
    # then reconcile finds the balance disagreeing with both the entries and the lots
    drifts = {(d.kind, d.subject, d.expected, d.found) for d in points_jobs.reconcile(svc).drifts}
    assert drifts == {
        ("available_vs_entries", "platform/u1", 299, 304),
        ("available_vs_lots", "platform/u1", 299, 304),
    }
    # and the command fails, naming the drifts
    drifted = CliRunner().invoke(cli, ["ledger", "reconcile"])
    assert drifted.exit_code == 1
    assert "available_vs_entries" in drifted.stdout and "2 drifts" in drifted.stderr


def test_reconcile_detects_an_unbalanced_transaction_and_an_overdrawn_lot(svc, clock):
    # given a member with 299 points
    apply(svc, document())
    earn(svc, clock, "o1", 29900)
    (lot,) = lots_of(svc)
    txn = rows(svc, tables.point_txns, kind="earn")[0]
    # when a stray entry is added to a transaction and a draw beyond the lot is recorded
    with svc.engine.begin() as conn:
        conn.execute(
            tables.point_entries.insert().values(
                txn_id=txn["id"],
                program_id="platform",
                member_id=None,
                account="system:adjustments",
                bucket="total",
                amount=7,
                lot_id=None,
                occurred_at=clock(),
            )
        )
        conn.execute(
            tables.point_draws.insert().values(
                txn_id=txn["id"], lot_id=lot["id"], kind="redeem", amount=300, restored=0
            )
        )
    # then reconcile names both
    drifts = {(d.kind, d.subject) for d in points_jobs.reconcile(svc).drifts}
    assert drifts == {
        ("unbalanced_transaction", f"txn {txn['id']}"),
        ("lot_overdrawn", f"lot {lot['id']}"),
    }
