"""Merchant budgets: a store buys platform points and its promotions hand them out; a grant
beyond the budget is refused, and points taken back return to it."""

import pytest
import sqlalchemy as sa

from huiyuan.db import tables
from huiyuan.services import owners as owner_service

from .bodies import cancelled, completed, item, paid, refunded
from .ledger import BASE_RULE, apply, assert_reconciled, figures, iso, lots_of, send, system_total
from .stored import effects_of, row_counts, rows, the_effect

# The platform's 1 point per ¥1, plus 1 more per ¥1 on store s1's orders paid from s1's budget.
S1_PROMO = {
    "kind": "per_amount",
    "id": "s1_promo",
    "per_fen": 100,
    "points": 1,
    "funded_by": "s1",
    "conditions": {"stores": ["s1"]},
}
FUNDED = {"points": {"earning": [BASE_RULE, S1_PROMO]}}


@pytest.fixture
def store(api):
    owner_service.add_store(api.svc, "s1", "优衣库", program=False, actor="test")
    owner_service.add_store(api.svc, "s2", "李宁", program=False, actor="test")
    api.s1 = api.new_key("s1")
    return api


def buy(api, points, purchase_id="buy-1", paid_fen=None, key=None, store_id="s1"):
    body = {
        "id": purchase_id,
        "points": points,
        "paid_fen": points if paid_fen is None else paid_fen,
    }
    return api.post(f"/v1/stores/{store_id}/points-budget/purchases", body, key)


def remaining(api, store_id="s1"):
    response = api.get(f"/v1/stores/{store_id}/points-budget")
    assert response.status_code == 200, response.json()
    return response.json()["remaining"]


def order_in_s1(svc, clock, order_id, amount, member="u1"):
    body = paid(
        f"pay-{order_id}",
        order_id,
        member,
        amount=amount,
        items=[item(f"sku-{order_id}", amount)],
        occurred_at=iso(clock()),
        store_id="s1",
    )
    return send(svc, body)["effects"]


def test_the_platform_sells_a_store_a_budget_once_per_purchase_id(store):
    # when the platform records s1 buying 1000 points for ¥10
    response = buy(store, 1000, paid_fen=1000)
    # then the budget holds 1000, and the purchase is audited
    assert response.status_code == 201, response.json()
    assert response.json() == {
        "store_id": "s1",
        "program_id": "platform",
        "remaining": 1000,
        "replayed": False,
    }
    audit = rows(store.svc, tables.audit_log, action="budget.purchased")
    assert [(a["subject"], a["detail"]["points"]) for a in audit] == [("store:s1", 1000)]
    # and the same purchase sent again adds nothing
    again = buy(store, 1000, paid_fen=1000)
    assert (again.status_code, again.json()["replayed"]) == (201, True)
    assert remaining(store) == 1000
    # and the purchase id reused for another purchase is a conflict
    other = buy(store, 2000)
    assert other.status_code == 409
    assert (other.json()["code"], other.json()["field"]) == ("points_request_id_reused", "id")
    assert remaining(store) == 1000
    # and a second purchase adds up
    assert buy(store, 500, "buy-2").status_code == 201
    assert remaining(store) == 1500


def test_only_the_platforms_administrators_sell_budgets_and_only_to_stores(store):
    writer = store.new_key("platform", "read,write")
    before = row_counts(store.svc)
    # a store's own key may not buy itself points
    by_store = buy(store, 1000, key=store.s1)
    assert (by_store.status_code, by_store.json()["code"]) == (403, "scope_missing")
    # nor may a platform key without the admin scope
    assert buy(store, 1000, key=writer).status_code == 403
    # and there is no budget for an owner that is not a store
    unknown = buy(store, 1000, store_id="nowhere")
    assert (unknown.status_code, unknown.json()["code"]) == (422, "not_a_store")
    assert row_counts(store.svc) == before
    # and a store reads its own budget, not another's
    assert store.get("/v1/stores/s1/points-budget", store.s1).json()["remaining"] == 0
    other = store.get("/v1/stores/s2/points-budget", store.s1)
    assert (other.status_code, other.json()["code"]) == (403, "scope_missing")
    # and even a store's admin key may not sell itself points
    store_admin = buy(store, 1000, key=store.new_key("s1", "admin"))
    assert (store_admin.status_code, store_admin.json()["code"]) == (403, "scope_missing")
    assert remaining(store) == 0


def test_a_promotion_hands_out_the_stores_points_until_the_budget_runs_out(store, clock):
    svc = store.svc
    # given s1 bought 1000 points and the platform runs s1's promotion from that budget
    buy(store, 1000)
    apply(svc, FUNDED)
    # when a member pays ¥300 in s1
    effects = order_in_s1(svc, clock, "o1", 30000)
    # then they earn 300 platform points and 300 from s1's budget, both pending
    pending = {e["rule_id"]: e["points"] for e in effects_of(effects, "points.pending")}
    assert pending == {"base": 300, "s1_promo": 300}
    assert remaining(store) == 700
    assert figures(svc) == (0, 600, 0, 0)
    assert {lot["rule_id"]: lot["issuer"] for lot in lots_of(svc)} == {
        "base": "platform",
        "s1_promo": "s1",
    }
    # when another member pays ¥800 in s1, more than is left
    effects = order_in_s1(svc, clock, "o2", 80000, member="u2")
    # then the promotion gives nothing, says why, and the budget is untouched
    exhausted = the_effect(effects, "points.budget_exhausted")
    assert (exhausted["store_id"], exhausted["rule_id"], exhausted["points"]) == (
        "s1",
        "s1_promo",
        800,
    )
    assert the_effect(effects, "points.pending")["rule_id"] == "base"
    assert remaining(store) == 700
    # and the points issued by s1 are recorded against s1 as issuer
    assert system_total(svc, "system:issued:s1") == -300
    # and an order in another store gets nothing from s1's budget
    other = paid("pay-o3", "o3", amount=10000, items=[item("x", 10000)], occurred_at=iso(clock()))
    other["store_id"] = "s2"
    assert [e["rule_id"] for e in effects_of(send(svc, other)["effects"], "points.pending")] == [
        "base"
    ]
    assert remaining(store) == 700
    assert_reconciled(svc)


def test_points_taken_back_return_to_the_stores_budget(store, clock):
    svc = store.svc
    buy(store, 1000)
    apply(svc, FUNDED)
    order_in_s1(svc, clock, "o1", 30000)
    order_in_s1(svc, clock, "o2", 20000)
    assert remaining(store) == 500
    # when ¥100 of the first order is refunded before it completes
    body = refunded("ref-1", "o1", "r1", 10000, occurred_at=iso(clock()), store_id="s1")
    send(svc, body)
    # then the 100 promotion points cancelled go back to the budget
    assert remaining(store) == 600
    # when the first order completes and the rest of it is refunded
    done = completed("done-1", "o1", occurred_at=iso(clock()))
    done["store_id"] = "s1"
    send(svc, done)
    body = refunded("ref-2", "o1", "r2", 20000, occurred_at=iso(clock()), store_id="s1")
    clawed = effects_of(send(svc, body)["effects"], "points.clawed_back")
    assert sorted(e["points"] for e in clawed) == [200, 200]
    assert remaining(store) == 800
    # when the second order is cancelled
    cancel = cancelled("cancel-2", "o2", occurred_at=iso(clock()))
    cancel["store_id"] = "s1"
    send(svc, cancel)
    # then the whole budget is back
    assert remaining(store) == 1000
    assert figures(svc) == (0, 0, 0, 0)
    assert_reconciled(svc)


def test_the_liability_report_names_the_store_that_issued_the_points(store, clock):
    svc = store.svc
    buy(store, 1000)
    apply(svc, FUNDED)
    order_in_s1(svc, clock, "o1", 30000)
    done = completed("done-1", "o1", occurred_at=iso(clock()))
    done["store_id"] = "s1"
    send(svc, done)
    report = store.get("/v1/reports/points-liability").json()["liability"]
    by_issuer = {r["issuer"]: r for r in report if r["program_id"] == "platform"}
    assert (by_issuer["s1"]["outstanding"], by_issuer["platform"]["outstanding"]) == (300, 300)
    assert by_issuer["s1"]["pending"] == 0
    # and the month's flow says who issued what
    (month,) = store.get("/v1/reports/points-flow", months=1).json()["months"]
    assert (month["issued"], month["issued_by"]) == (600, {"platform": 300, "s1": 300})


def test_a_budget_slice_can_never_go_below_zero(store):
    # given s1's budget in the database
    buy(store, 16)
    # when a slice is pushed below zero behind the service's back
    # then the database refuses it
    refused = pytest.raises(sa.exc.IntegrityError, match=r"(?i)check")
    with refused, store.svc.engine.begin() as conn:
        conn.execute(
            tables.budget_slices.update()
            .where(tables.budget_slices.c.store_id == "s1", tables.budget_slices.c.slice == 0)
            .values(remaining=-1)
        )
    assert remaining(store) == 16


def test_a_promotion_of_a_store_that_bought_no_budget_gives_nothing(store, clock):
    # given s1's promotion is on but s1 never bought points
    apply(store.svc, FUNDED)
    # when a member pays ¥100 in s1
    effects = order_in_s1(store.svc, clock, "o1", 10000)
    # then the promotion says the budget is exhausted and nothing is taken from anywhere
    assert the_effect(effects, "points.budget_exhausted")["points"] == 100
    assert [e["rule_id"] for e in effects_of(effects, "points.pending")] == ["base"]
    assert remaining(store) == 0
    assert rows(store.svc, tables.budget_slices) == []
    assert_reconciled(store.svc)
