"""The points mall (积分商城): items priced in points, with stock, a limit per member, a window
and tiers, redeemed through ``POST /v1/members/{id}/points/redemptions`` — on SQLite and
PostgreSQL, and racing on PostgreSQL."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from huiyuan.db import tables
from huiyuan.domain.errors import DomainError
from huiyuan.services import points_jobs, points_mall
from huiyuan.services.principals import SYSTEM

from .bodies import completed, item, paid
from .ledger import BASE_RULE, apply, assert_reconciled, figures, history, iso, send
from .stored import rows
from .threads import all_at_once


def named(text):
    return {"zh": text, "en": text}


CUP = {"id": "cup", "name": {"zh": "保温杯", "en": "thermos"}, "points": 500, "stock": 2,
       "per_member_limit": 1}  # fmt: skip
COUPON = {"id": "coupon-10", "name": {"zh": "10元券", "en": "¥10 coupon"}, "points": 1000}


def mall_document(*items, **extra):
    return {"points": {"earning": [BASE_RULE], "mall": list(items)}, **extra}


def earn(svc, clock, member, points_):
    """``member`` earns ``points_`` points (1 per ¥1), available now."""
    amount = points_ * 100
    order = f"o-{member}-{len(rows(svc, tables.orders))}"
    body = paid(f"pay-{order}", order, member, amount=amount, items=[item("x", amount)],
                occurred_at=iso(clock()))  # fmt: skip
    send(svc, body)
    send(svc, completed(f"done-{order}", order, member, occurred_at=iso(clock())))


def redeem(api, member, redemption_id, item_id, quantity=1, **body):
    return api.post(
        f"/v1/members/{member}/points/redemptions",
        {"id": redemption_id, "item_id": item_id, "quantity": quantity, **body},
    )


def redeem_code(svc, member, redemption_id, item_id):
    """Redeem one through the service: "ok", or the refusal's code."""
    try:
        points_mall.redeem_item(svc, SYSTEM, member, redemption_id, item_id, 1, None)
    except DomainError as error:
        return str(error.code)
    return "ok"


def counts(svc):
    return tuple(len(rows(svc, t)) for t in (tables.point_txns, tables.mall_redemptions))


def test_a_limited_item_is_redeemed_once_per_member_until_it_runs_out(api, clock):
    svc = api.svc
    # given a mall with a thermos (500 points, 2 in stock, 1 per member) and a ¥10 coupon
    # (1,000 points, unlimited), and three members with 2,990 points each
    apply(svc, mall_document(CUP, COUPON))
    for member in ("u1", "u2", "u3"):
        earn(svc, clock, member, 2990)
    # then the catalogue shows both, with what is left of the thermos
    shown = api.get("/v1/points-mall").json()
    assert [(i["id"], i["points"], i["left"]) for i in shown["items"]] == [
        ("cup", 500, 2),
        ("coupon-10", 1000, None),
    ]
    # when u1 redeems a thermos
    response = redeem(api, "u1", "m1", "cup")
    # then it costs 500 points, told in the history by the item's name
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["points"], body["item"], body["replayed"]) == (
        500,
        {"id": "cup", "quantity": 1},
        False,
    )
    assert body["balance"]["available"] == 2490
    (spent,) = history(svc, kind="redeem")
    assert spent["reason"] == {"zh": "积分兑换：保温杯 ×1", "en": "redeemed: thermos ×1"}
    # when u1 asks for a second one
    before = counts(svc)
    response = redeem(api, "u1", "m2", "cup")
    # then the limit per member refuses it, naming the field, and nothing is written
    assert response.status_code == 409
    assert (response.json()["code"], response.json()["field"]) == (
        "mall_item_limit_reached",
        "quantity",
    )
    assert counts(svc) == before
    # when u2 takes the last one, and u3 comes after
    assert redeem(api, "u2", "m3", "cup").status_code == 201
    before = counts(svc)
    response = redeem(api, "u3", "m4", "cup")
    # then u3 is told it is out of stock, and keeps their points
    assert response.status_code == 409
    assert response.json()["code"] == "mall_item_out_of_stock"
    assert counts(svc) == before
    assert figures(svc, "u3")[0] == 2990
    assert api.get("/v1/points-mall").json()["items"][0]["left"] == 0
    # when u1's first request is sent again, it is answered as the first time
    again = redeem(api, "u1", "m1", "cup")
    assert again.status_code == 201
    assert (again.json()["replayed"], again.json()["transaction_id"]) == (
        True,
        body["transaction_id"],
    )
    # but the same id for another quantity, or for an amount, is a conflict
    assert redeem(api, "u1", "m1", "cup", quantity=2).json()["code"] == "points_request_id_reused"
    as_amount = {"id": "m1", "amount": 500, "reason": "thermos"}
    reused = api.post("/v1/members/u1/points/redemptions", as_amount).json()
    assert (reused["code"], reused["field"]) == ("points_request_id_reused", "id")
    # when u3 redeems two coupons, the price is the item's times the quantity
    response = redeem(api, "u3", "m5", "coupon-10", quantity=2)
    assert response.status_code == 201
    assert (response.json()["points"], response.json()["balance"]["available"]) == (2000, 990)
    # and a third would overspend: insufficient points, nothing written
    before = counts(svc)
    response = redeem(api, "u3", "m6", "coupon-10")
    assert (response.status_code, response.json()["code"]) == (409, "insufficient_points")
    assert counts(svc) == before
    # and the mall's own records add up with the ledger
    assert [
        (r["member_id"], r["item_id"], r["points"]) for r in rows(svc, tables.mall_redemptions)
    ] == [
        ("u1", "cup", 500),
        ("u2", "cup", 500),
        ("u3", "coupon-10", 2000),
    ]
    assert rows(svc, tables.mall_stock)[0]["sold"] == 2
    assert_reconciled(svc)


def test_bad_redemption_requests_name_the_field_and_write_nothing(api, clock):
    svc = api.svc
    apply(svc, mall_document(CUP))
    earn(svc, clock, "u1", 1000)
    before = counts(svc)
    cases = [
        ({"id": "b1", "item_id": "teapot"}, 422, "mall_item_not_found", "item_id"),
        ({"id": "b2", "item_id": "cup", "amount": 500}, 422, "validation_failed", "amount"),
        ({"id": "b3"}, 422, "validation_failed", "amount"),
        ({"id": "b4", "amount": 500}, 422, "validation_failed", "reason"),
        ({"id": "b5", "item_id": "cup", "quantity": 0}, 422, "validation_failed", "quantity"),
    ]
    for body, status, code, field in cases:
        response = api.post("/v1/members/u1/points/redemptions", body)
        assert response.status_code == status, (body, response.json())
        assert (response.json()["code"], response.json()["field"]) == (code, field), body
    assert counts(svc) == before


def test_an_item_is_offered_only_in_its_window_and_to_its_tiers(api, clock):
    svc = api.svc
    # given a gift offered from tomorrow for a week, and a lounge pass for VIPs only
    start = clock() + timedelta(days=1)
    gift = {"id": "gift", "name": named("gift"), "points": 100,
            "starts_at": iso(start), "ends_at": iso(start + timedelta(days=7))}  # fmt: skip
    lounge = {"id": "lounge", "name": named("lounge"), "points": 100, "tiers": ["vip"]}
    ladder = {"tiers": [{"id": "member", "name": named("member"), "threshold": 0},
                        {"id": "vip", "name": named("vip"), "threshold": 100000}]}  # fmt: skip
    apply(svc, mall_document(gift, lounge, tiers=ladder))
    earn(svc, clock, "u1", 1000)
    # when u1 asks for the gift today, it is not offered yet
    response = redeem(api, "u1", "w1", "gift")
    assert (response.status_code, response.json()["code"]) == (409, "mall_item_unavailable")
    # and tomorrow it is
    clock.advance(days=1)
    assert redeem(api, "u1", "w2", "gift").status_code == 201
    # and after the week, it is gone from the catalogue and refused
    clock.advance(days=7)
    assert [i["id"] for i in api.get("/v1/points-mall").json()["items"]] == ["lounge"]
    assert redeem(api, "u1", "w3", "gift").json()["code"] == "mall_item_unavailable"
    # when u1, not a VIP, asks for the lounge pass, it is refused
    response = redeem(api, "u1", "w4", "lounge")
    assert (response.status_code, response.json()["code"]) == (409, "mall_item_not_for_tier")
    # once customer service makes u1 a VIP, it is theirs
    override = api.client.put(
        "/v1/members/u1/tier",
        json={"tier_id": "vip", "reason": "补偿"},
        headers=api.headers(),
    )
    assert override.status_code == 200, override.json()
    assert redeem(api, "u1", "w5", "lounge").status_code == 201
    assert figures(svc)[0] == 800
    assert_reconciled(svc)


def test_a_mall_item_must_name_tiers_of_the_ladder_and_be_unique(api):
    for document, field in [
        (mall_document({"id": "x", "name": named("x"), "points": 1, "tiers": ["gold"]}),
         "document.points.mall[0].tiers[0]"),
        (mall_document(CUP, CUP), "document.points.mall[1].id"),
        (mall_document({**CUP, "starts_at": "2026-05-01T00:00:00Z",
                        "ends_at": "2026-04-01T00:00:00Z"}), "document.points.mall[0]"),
    ]:  # fmt: skip
        response = api.client.put(
            "/v1/programs/platform/document", json={"document": document}, headers=api.headers()
        )
        assert response.status_code == 422, response.json()
        assert response.json()["code"] == "program_document_invalid"
        assert response.json()["field"].startswith(field), response.json()


# ---------------------------------------------------------------- PostgreSQL: racing


@pytest.mark.postgres_only
def test_forty_members_racing_for_ten_in_stock_get_exactly_ten(pg, clock):
    # given a thermos with 10 in stock and 40 members who can each afford it
    apply(pg, mall_document({**CUP, "stock": 10}))
    members = [f"m{n:02d}" for n in range(40)]
    for member in members:
        earn(pg, clock, member, 600)

    def attempt(n):
        return redeem_code(pg, members[n], f"r{n}", "cup")

    # when all of them redeem it at once
    outcomes = all_at_once(attempt, 40)
    # then exactly ten get one, the others are told it ran out, and the books agree
    assert sorted(outcomes).count("ok") == 10
    assert set(outcomes) == {"ok", "mall_item_out_of_stock"}
    assert rows(pg, tables.mall_stock)[0]["sold"] == 10
    assert len(rows(pg, tables.mall_redemptions)) == 10
    with pg.engine.connect() as conn:
        redeemed = conn.execute(
            sa.select(sa.func.count()).where(tables.point_txns.c.kind == "redeem")
        ).scalar_one()
    assert redeemed == 10
    assert_reconciled(pg)


@pytest.mark.postgres_only
def test_one_member_racing_for_an_item_gets_no_more_than_the_limit(pg, clock):
    # given an unlimited coupon limited to 3 per member, and a member who could afford 40
    apply(pg, mall_document({**COUPON, "per_member_limit": 3, "points": 10}))
    earn(pg, clock, "u1", 400)

    def attempt(n):
        return redeem_code(pg, "u1", f"r{n}", "coupon-10")

    # when 40 requests for it arrive at once
    outcomes = all_at_once(attempt, 40)
    # then three are granted, the rest refused by the limit
    assert outcomes.count("ok") == 3
    assert set(outcomes) == {"ok", "mall_item_limit_reached"}
    assert figures(pg)[0] == 370
    assert_reconciled(pg)


def test_points_exchanged_for_a_benefit_grant_it_for_a_time(api, clock):
    svc = api.svc
    # given a mall item exchanging 300 points for 30 days of free shipping, and a member with
    # 1,000 points
    free_shipping = {"id": "free-ship", "kind": "free_shipping", "name": named("free shipping")}
    ship = {"id": "ship-30", "name": named("30 days free shipping"), "points": 300,
            "benefit": {"id": "free-ship", "days": 30}}  # fmt: skip
    apply(svc, mall_document(ship, benefits=[free_shipping]))
    earn(svc, clock, "u1", 1000)
    start = clock()
    # when the member redeems it
    response = redeem(api, "u1", "b1", "ship-30")
    # then they hold free shipping for 30 days, from now
    assert response.status_code == 201, response.json()
    first = {
        "id": "free-ship",
        "starts_at": iso(start),
        "ends_at": iso(start + timedelta(days=30)),
    }
    assert response.json()["benefit"] == first
    held = api.get("/v1/members/u1/benefits").json()
    assert [(b["id"], b["source"], b["ends_at"]) for b in held["benefits"]] == [
        ("free-ship", "points", first["ends_at"])
    ]
    assert held["effective"]["free_shipping"] is True
    # when they redeem two more a week later, those follow the first: 60 days after it ends
    clock.advance(days=7)
    again = redeem(api, "u1", "b2", "ship-30", quantity=2)
    assert again.json()["benefit"]["starts_at"] == first["ends_at"]
    until = iso(start + timedelta(days=90))
    assert again.json()["benefit"]["ends_at"] == until
    assert api.get("/v1/members/u1/benefits").json()["benefits"][0]["ends_at"] == until
    # and the first request sent again answers with the first grant
    assert redeem(api, "u1", "b1", "ship-30").json()["benefit"] == first
    # and when the 90 days are over, it is gone
    clock.now = start + timedelta(days=90, seconds=1)
    assert api.get("/v1/members/u1/benefits").json()["benefits"] == []
    assert figures(svc)[0] == 100
    assert_reconciled(svc)


def test_a_mall_item_may_exchange_only_for_a_benefit_of_the_catalog(api):
    item = {"id": "x", "name": named("x"), "points": 1, "benefit": {"id": "ghost", "days": 1}}
    response = api.client.put(
        "/v1/programs/platform/document",
        json={"document": mall_document(item)},
        headers=api.headers(),
    )
    assert response.status_code == 422, response.json()
    assert response.json()["field"] == "document.points.mall[0].benefit.id"


def cancel(api, member, redemption_id, key=None, reason="warehouse out of stock"):
    return api.post(
        f"/v1/members/{member}/points/redemptions/{redemption_id}/cancellation",
        {"reason": reason},
        key=key,
    )


def test_a_cancelled_redemption_gives_back_points_stock_and_benefit(api, clock):
    svc = api.svc
    # given a thermos (2 in stock) and 30 days of free shipping, and a member who redeemed one
    # of each and 200 points for something priced by the caller
    free_shipping = {"id": "free-ship", "kind": "free_shipping", "name": named("free shipping")}
    ship = {"id": "ship-30", "name": named("30 days free shipping"), "points": 300,
            "benefit": {"id": "free-ship", "days": 30}}  # fmt: skip
    apply(svc, mall_document(CUP, ship, benefits=[free_shipping]))
    earn(svc, clock, "u1", 2000)
    assert redeem(api, "u1", "c1", "cup").status_code == 201
    assert redeem(api, "u1", "c2", "ship-30").status_code == 201
    plain = {"id": "c3", "amount": 200, "reason": "gift card"}
    assert api.post("/v1/members/u1/points/redemptions", plain).status_code == 201
    assert figures(svc)[0] == 1000
    # when customer service cancels the thermos (it cannot be shipped)
    response = cancel(api, "u1", "c1")
    # then the 500 points are back, in the lot they came from, and the thermos is on sale again
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["points"], body["replayed"], body["balance"]["available"]) == (500, False, 1500)
    assert [lot["remaining"] for lot in rows(svc, tables.point_lots)] == [1500]
    assert api.get("/v1/points-mall").json()["items"][0]["left"] == 2
    (mall,) = [r for r in rows(svc, tables.mall_redemptions) if r["redemption_id"] == "c1"]
    assert mall["status"] == "cancelled"
    (restored,) = history(svc, kind="restore")
    assert restored["reason"]["en"] == "redemption cancelled: warehouse out of stock"
    assert restored["available"] == 500
    # and the member may have a thermos again: a cancelled one does not count toward the limit
    assert redeem(api, "u1", "c4", "cup").status_code == 201
    assert cancel(api, "u1", "c4").status_code == 200
    # when the free shipping and the caller-priced redemption are cancelled too
    assert cancel(api, "u1", "c2").status_code == 200
    assert cancel(api, "u1", "c3").json()["points"] == 200
    # then the benefit is gone and every point is back
    assert api.get("/v1/members/u1/benefits").json()["benefits"] == []
    assert figures(svc)[0] == 2000
    # and cancelling again changes nothing
    again = cancel(api, "u1", "c1")
    assert (again.json()["replayed"], again.json()["transaction_id"]) == (
        True,
        body["transaction_id"],
    )
    assert figures(svc)[0] == 2000
    audit = [r for r in rows(svc, tables.audit_log) if r["action"] == "points.redemption_cancelled"]
    assert len(audit) == 4
    assert_reconciled(svc)


def test_only_an_administrator_cancels_a_members_own_redemption(api, clock):
    svc = api.svc
    apply(svc, mall_document(CUP))
    earn(svc, clock, "u1", 1000)
    earn(svc, clock, "u2", 1000)
    assert redeem(api, "u1", "c1", "cup").status_code == 201
    # an unknown redemption, or another member's, is not found
    assert cancel(api, "u1", "nope").json()["code"] == "redemption_not_found"
    assert cancel(api, "u2", "c1").status_code == 404
    # a key without the admin scope may not cancel
    writer = api.new_key("platform", "read,write")
    assert cancel(api, "u1", "c1", key=writer).status_code == 403
    assert figures(svc, "u1")[0] == 500


def test_reconcile_tells_a_stock_count_that_does_not_match_the_redemptions(api, clock):
    svc = api.svc
    apply(svc, mall_document(CUP))
    earn(svc, clock, "u1", 1000)
    assert redeem(api, "u1", "m1", "cup").status_code == 201
    assert points_jobs.reconcile(svc).drifts == []
    # when someone edits the stock count by hand
    with svc.engine.begin() as conn:
        conn.execute(sa.update(tables.mall_stock).values(sold=tables.mall_stock.c.sold + 1))
    # then reconcile says which item and by how much
    (drift,) = points_jobs.reconcile(svc).drifts
    assert (drift.kind, drift.subject, drift.expected, drift.found) == (
        "mall_stock_vs_redemptions",
        "platform/cup",
        1,
        2,
    )


def test_a_daily_limit_starts_again_at_midnight_shanghai_time(api, clock):
    svc = api.svc
    # given a coupon limited to one per member a day, and a member with plenty of points
    daily = {**COUPON, "points": 10, "per_member_limit": 1, "limit_period": "day"}
    apply(svc, mall_document(daily))
    earn(svc, clock, "u1", 1000)
    # when they redeem one at 23:30 in Shanghai (15:30 UTC), and ask for another
    clock.now = clock().replace(hour=15, minute=30) + timedelta(days=1)
    assert redeem(api, "u1", "d1", "coupon-10").status_code == 201
    second = redeem(api, "u1", "d2", "coupon-10")
    # then the second is refused for the day
    assert (second.status_code, second.json()["code"]) == (409, "mall_item_limit_reached")
    assert "1 per member a day" in second.json()["detail"]
    # and forty minutes later, a new day in Shanghai though not in UTC, it is granted
    clock.advance(minutes=40)
    assert redeem(api, "u1", "d3", "coupon-10").status_code == 201
    assert api.get("/v1/points-mall").json()["items"][0]["limit_period"] == "day"
    assert_reconciled(svc)


def test_a_member_reads_their_redemptions_newest_first_a_page_at_a_time(api, clock):
    svc = api.svc
    apply(svc, mall_document(CUP, COUPON))
    earn(svc, clock, "u1", 5000)
    assert redeem(api, "u1", "r1", "cup").status_code == 201
    clock.advance(hours=1)
    assert redeem(api, "u1", "r2", "coupon-10", quantity=2).status_code == 201
    assert cancel(api, "u1", "r1").status_code == 200
    page = api.get("/v1/members/u1/points-mall/redemptions", limit=1).json()
    (newest,) = page["redemptions"]
    assert (newest["id"], newest["quantity"], newest["points"], newest["status"]) == (
        "r2",
        2,
        2000,
        "redeemed",
    )
    assert newest["name"] == {"zh": "10元券", "en": "¥10 coupon"}
    rest = api.get(
        "/v1/members/u1/points-mall/redemptions", before=newest["cursor"], limit=5
    ).json()["redemptions"]
    assert [(r["id"], r["status"]) for r in rest] == [("r1", "cancelled")]
    assert rest[0]["cancelled_at"] is not None
    assert api.get("/v1/members/u2/points-mall/redemptions").status_code == 404


@pytest.mark.postgres_only
def test_the_same_cancellation_sent_by_20_threads_at_once_applies_once(pg, clock):
    # given a member who redeemed a thermos for 500 of their 600 points
    apply(pg, mall_document(CUP))
    earn(pg, clock, "u1", 600)
    points_mall.redeem_item(pg, SYSTEM, "u1", "m1", "cup", 1, None)

    def attempt(_):
        return points_mall.cancel_redemption(pg, SYSTEM, "u1", "m1", "retry", None)["replayed"]

    # when customer service's cancellation arrives 20 times at once
    replayed = all_at_once(attempt, 20)
    # then it applied once: the points came back once, the stock once
    assert sorted(replayed) == [False] + [True] * 19
    assert figures(pg)[0] == 600
    assert rows(pg, tables.mall_stock)[0]["sold"] == 0
    assert len([t for t in rows(pg, tables.point_txns) if t["kind"] == "restore"]) == 1
    assert_reconciled(pg)


def test_redemptions_made_while_an_item_had_no_stock_do_not_touch_its_count(api, clock):
    svc = api.svc
    # given a thermos with 2 in stock, one redeemed
    apply(svc, mall_document(CUP))
    earn(svc, clock, "u1", 2000)
    earn(svc, clock, "u2", 2000)
    assert redeem(api, "u1", "s1", "cup").status_code == 201
    # when a later version makes it unlimited, and u2 redeems one and cancels it
    clock.advance(hours=1)
    apply(svc, mall_document({**CUP, "stock": None}))
    assert redeem(api, "u2", "s2", "cup").status_code == 201
    assert cancel(api, "u2", "s2").status_code == 200
    # then the count still says 1 sold (the unlimited one never counted), and reconciles
    assert rows(svc, tables.mall_stock)[0]["sold"] == 1
    assert_reconciled(svc)
    # and once the stock is back, one is left
    clock.advance(hours=1)
    apply(svc, mall_document(CUP))
    assert api.get("/v1/points-mall").json()["items"][0]["left"] == 1
