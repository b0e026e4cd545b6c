"""Paid membership (付费会员, like JD PLUS), told as the business tells it, on SQLite and
PostgreSQL.

The membership functions run inside an event's transaction with the member's row locked; these
tests call them the same way, inside ``svc.uow()``, with events that occur at the test clock.
Each story applies the program document first: it takes effect from the clock's now, and an
event is judged by the version in force when it occurred.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from huiyuan.db import members_repo, tables
from huiyuan.domain.errors import DomainError, ErrorKind, MembershipError
from huiyuan.schemas.validation import parse_event
from huiyuan.services import memberships, programs
from huiyuan.services import owners as owner_service
from huiyuan.services.principals import SYSTEM as SYSTEM_PRINCIPAL

from .bodies import cancelled, event, item, paid, registered
from .ledger import apply, iso, send
from .stored import one, rows, the_effect

SHANGHAI = ZoneInfo("Asia/Shanghai")


def sh(year, month, day, hour=10, minute=0):
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


def names(zh, en):
    return {"zh": zh, "en": en}


BENEFITS = [
    {
        "id": "silver_off",
        "kind": "percent_discount",
        "name": names("银牌95折", "Silver 5% off"),
        "percent_off": "5",
    },
    {
        "id": "silver_x",
        "kind": "points_multiplier",
        "name": names("银牌1.5倍积分", "Silver 1.5x points"),
        "multiplier": "1.5",
    },
    {
        "id": "plus_off",
        "kind": "percent_discount",
        "name": names("PLUS 9折", "PLUS 10% off"),
        "percent_off": "10",
    },
    {
        "id": "plus_x",
        "kind": "points_multiplier",
        "name": names("PLUS 双倍积分", "PLUS 2x points"),
        "multiplier": "2",
    },
    {
        "id": "plus_ship",
        "kind": "free_shipping",
        "name": names("每月2次免运费", "2 free shippings a month"),
        "monthly_quota": 2,
    },
]
PLUS_BENEFITS = ["plus_off", "plus_x", "plus_ship"]
PLANS = [
    {
        "id": "plus_annual",
        "name": names("PLUS年卡", "PLUS annual"),
        "price_fen": 9900,
        "period": "annual",
        "trial_days": 7,
        "benefits": PLUS_BENEFITS,
    },
    {
        "id": "plus_monthly",
        "name": names("PLUS月卡", "PLUS monthly"),
        "price_fen": 1500,
        "period": "monthly",
        "benefits": PLUS_BENEFITS,
        "refund_only_if_unused": False,
    },
]


def document(**extra):
    """Bronze (0) and Silver (100 growth, 5% off and 1.5× points): registration alone earns 100
    growth; PLUS annual ¥99 (7-day trial) and monthly ¥15; 1 point per ¥1."""
    doc = {
        "points": {"earning": [{"kind": "per_amount", "id": "base", "per_fen": 100, "points": 1}]},
        "growth": {"rules": [{"id": "reg", "kind": "registration", "points": 100}]},
        "tiers": {
            "tiers": [
                {"id": "bronze", "name": names("铜牌", "Bronze"), "threshold": 0},
                {
                    "id": "silver",
                    "name": names("银牌", "Silver"),
                    "threshold": 100,
                    "benefits": ["silver_off", "silver_x"],
                },
            ]
        },
        "benefits": BENEFITS,
        "plans": PLANS,
    }
    doc.update(extra)
    return doc


@pytest.fixture
def plus(svc):
    """The platform runs the document above; members u1 and u2 registered just now."""
    apply(svc, document())
    for member in ("u1", "u2"):
        send(svc, registered(f"reg-{member}", member, occurred_at=iso(svc.now())))
    return svc


def _event(svc, body):
    return parse_event(body, svc.now())


def _run(svc, member, work):
    with svc.uow() as tx:
        members_repo.lock_member(tx.conn, member)
        effects = work(tx.conn)
        tx.commit()
    return effects


def buy(svc, purchase_id, plan_id="plus_annual", amount=9900, member="u1", store_id=None):
    body = event(
        f"buy-{purchase_id}",
        "membership.purchased",
        member,
        occurred_at=iso(svc.now()),
        store_id=store_id,
        purchase_id=purchase_id,
        plan_id=plan_id,
        amount=amount,
    )
    ev = _event(svc, body)
    return _run(
        svc,
        member,
        lambda conn: memberships.on_membership_purchased(svc, conn, ev, ev.data, "test"),
    )


def refund(svc, purchase_id, refund_id, member="u1"):
    body = event(
        f"refund-{refund_id}",
        "membership.refunded",
        member,
        occurred_at=iso(svc.now()),
        purchase_id=purchase_id,
        refund_id=refund_id,
    )
    ev = _event(svc, body)
    return _run(
        svc, member, lambda conn: memberships.on_membership_refunded(svc, conn, ev, ev.data, "test")
    )


def refused(work):
    with pytest.raises(DomainError) as caught:
        work()
    return caught.value


def subscriptions(svc, member="u1"):
    return {r["purchase_id"]: r for r in rows(svc, tables.subscriptions, member_id=member)}


def view(svc, member="u1"):
    return memberships.membership_view(svc, SYSTEM_PRINCIPAL, member, None)


# ---------------------------------------------------------------- the worked example


def test_plus_annual_bought_twice_extends_to_two_years_and_the_latest_is_refunded(plus, clock):
    svc = plus
    # when u1 buys PLUS annual for ¥99 on 2026-03-01 10:00 Shanghai
    started = the_effect(buy(svc, "p1"), "membership.started")
    # then it runs a calendar year
    assert started["starts_at"] == sh(2026, 3, 1).isoformat()
    assert started["ends_at"] == sh(2027, 3, 1).isoformat()
    assert (started["program_id"], started["plan_id"], started["amount"]) == (
        "platform",
        "plus_annual",
        9900,
    )
    # when they buy it again the next day
    clock.advance(days=1)
    extended = the_effect(buy(svc, "p2"), "membership.extended")
    # then the second year starts where the first ends: two years in all
    assert extended["starts_at"] == sh(2027, 3, 1).isoformat()
    assert extended["ends_at"] == sh(2028, 3, 1).isoformat()
    assert view(svc)["paid_through"] == sh(2028, 3, 1).isoformat()
    assert view(svc)["active"]["purchase_id"] == "p1"
    # when the first purchase is refunded
    clock.advance(days=1)
    error = refused(lambda: refund(svc, "p1", "r1"))
    # then it is refused: only the latest term of a chain may be refunded
    assert (error.kind, error.code) == (ErrorKind.CONFLICT, MembershipError.NOT_LATEST)
    # when the latest (p2) is refunded on day 3, within 7 days and with no benefit used
    refunded = the_effect(refund(svc, "p2", "r2"), "membership.refunded")
    # then it is refunded, the chain ends after the first year again, and the refund is audited
    assert refunded == {
        "kind": "membership.refunded",
        "program_id": "platform",
        "plan_id": "plus_annual",
        "purchase_id": "p2",
        "refund_id": "r2",
        "amount": 9900,
    }
    assert {k: v["status"] for k, v in subscriptions(svc).items()} == {
        "p1": "active",
        "p2": "refunded",
    }
    audit = one(svc, tables.audit_log, action="membership.refunded")
    assert (audit["actor"], audit["detail"]["refund_id"]) == ("test", "r2")
    seen = view(svc)
    assert seen["paid_through"] == sh(2027, 3, 1).isoformat()
    assert [(s["purchase_id"], s["state"]) for s in seen["subscriptions"]] == [
        ("p2", "refunded"),
        ("p1", "active"),
    ]
    # and a second refund of p2 is a conflict
    again = refused(lambda: refund(svc, "p2", "r3"))
    assert again.code is MembershipError.ALREADY_REFUNDED
    # when u1 pays an order during the first year, the benefit is used
    with svc.uow() as tx:
        used = memberships.mark_benefit_used(svc, tx.conn, "u1", clock())
        tx.commit()
    assert used == [
        {
            "kind": "membership.benefit_used",
            "program_id": "platform",
            "plan_id": "plus_annual",
            "purchase_id": "p1",
        }
    ]
    # then p1, now the latest again, can no longer be refunded
    assert refused(lambda: refund(svc, "p1", "r4")).code is MembershipError.BENEFIT_USED


# ---------------------------------------------------------------- purchases


def test_a_bad_purchase_is_refused_naming_the_field_and_writes_nothing(plus):
    svc = plus
    unknown = refused(lambda: buy(svc, "p1", plan_id="gold_card"))
    assert (unknown.kind, unknown.code, unknown.field) == (
        ErrorKind.INVALID,
        MembershipError.PLAN_UNKNOWN,
        "data.plan_id",
    )
    cheap = refused(lambda: buy(svc, "p1", amount=9800))
    assert (cheap.kind, cheap.code, cheap.field) == (
        ErrorKind.INVALID,
        MembershipError.AMOUNT_MISMATCH,
        "data.amount",
    )
    assert subscriptions(svc) == {}
    buy(svc, "p1")
    twice = refused(lambda: buy(svc, "p1"))
    assert (twice.kind, twice.code, twice.field) == (
        ErrorKind.CONFLICT,
        MembershipError.PURCHASE_ID_REUSED,
        "data.purchase_id",
    )
    assert list(subscriptions(svc)) == ["p1"]


def test_a_plan_bought_before_it_was_published_is_unknown(svc, clock):
    # given the plans take effect tomorrow
    clock.advance(days=1)
    tomorrow = clock()
    clock.advance(days=-1)
    programs.apply_document(svc, "platform", document(), actor="test", effective_from=tomorrow)
    send(svc, registered("reg-u1", occurred_at=iso(svc.now())))
    # then a purchase today is judged by today's document, which has no plans
    assert refused(lambda: buy(svc, "p1")).code is MembershipError.PLAN_UNKNOWN
    clock.advance(days=1)
    assert the_effect(buy(svc, "p1"), "membership.started")["config_version"] == 1


def test_a_month_from_the_31st_ends_on_the_last_day_of_a_shorter_month(plus, clock):
    svc = plus
    clock.advance(days=30)  # 2026-03-31 10:00 Shanghai
    first = the_effect(buy(svc, "m1", "plus_monthly", 1500), "membership.started")
    assert first["ends_at"] == sh(2026, 4, 30).isoformat()
    # and a renewal counts from that end
    second = the_effect(buy(svc, "m2", "plus_monthly", 1500), "membership.extended")
    assert second["ends_at"] == sh(2026, 5, 30).isoformat()


def test_switching_plans_queues_the_new_plan_after_the_current_end(plus, clock):
    svc = plus
    buy(svc, "m1", "plus_monthly", 1500)
    clock.advance(days=10)
    queued = the_effect(buy(svc, "a1", "plus_annual", 9900), "membership.extended")
    assert (queued["starts_at"], queued["ends_at"]) == (
        sh(2026, 4, 1).isoformat(),
        sh(2027, 4, 1).isoformat(),
    )
    with svc.engine.connect() as conn:
        now = memberships.active_plan(conn, "platform", "u1", clock())
        later = memberships.active_plan(conn, "platform", "u1", sh(2026, 4, 1))
        after = memberships.active_plan(conn, "platform", "u1", sh(2027, 4, 1))
    assert (now.plan_id, later.plan_id, after) == ("plus_monthly", "plus_annual", None)
    states = {s["purchase_id"]: s["state"] for s in view(svc)["subscriptions"]}
    assert states == {"m1": "active", "a1": "queued"}


def test_a_trial_runs_its_days_once_per_member_and_plan(plus, clock):
    svc = plus
    # when u1 takes the 7-day trial of PLUS annual (amount 0)
    trial = the_effect(buy(svc, "t1", amount=0), "membership.trial_started")
    assert trial["ends_at"] == sh(2026, 3, 8).isoformat()
    assert view(svc)["active"]["trial"] is True
    # then a second trial, even after the first ended, is refused
    clock.advance(days=8)
    again = refused(lambda: buy(svc, "t2", amount=0))
    assert (again.kind, again.code) == (ErrorKind.CONFLICT, MembershipError.TRIAL_USED)
    # and a member who pays already gets no trial either
    buy(svc, "p1", "plus_monthly", 1500, member="u2")
    beside = refused(lambda: buy(svc, "t3", amount=0, member="u2"))
    assert beside.code is MembershipError.TRIAL_WHILE_ACTIVE
    # while the monthly plan has no trial: amount 0 is just the wrong amount
    assert refused(lambda: buy(svc, "t4", "plus_monthly", 0)).code is (
        MembershipError.AMOUNT_MISMATCH
    )


def test_a_store_event_buys_the_stores_own_plan(plus, clock):
    svc = plus
    owner_service.add_store(svc, "s1", "优衣库旗舰店", actor="test")
    apply(svc, document(), program="s1")
    started = the_effect(buy(svc, "s-p1", store_id="s1"), "membership.started")
    assert started["program_id"] == "s1"
    # and the same purchase id may be used by the platform's own program
    assert the_effect(buy(svc, "s-p1"), "membership.started")["program_id"] == "platform"


# ---------------------------------------------------------------- refunds


def test_a_refund_after_the_window_or_of_an_unknown_purchase_is_refused(plus, clock):
    svc = plus
    buy(svc, "p1")
    unknown = refused(lambda: refund(svc, "nope", "r0"))
    assert (unknown.kind, unknown.code) == (ErrorKind.NOT_FOUND, MembershipError.PURCHASE_NOT_FOUND)
    not_theirs = refused(lambda: refund(svc, "p1", "r0", member="u2"))
    assert not_theirs.code is MembershipError.PURCHASE_NOT_FOUND
    clock.advance(days=7, seconds=1)
    late = refused(lambda: refund(svc, "p1", "r1"))
    assert (late.kind, late.code) == (ErrorKind.CONFLICT, MembershipError.REFUND_WINDOW_PASSED)
    assert subscriptions(svc)["p1"]["status"] == "active"


def test_a_plan_may_allow_refunds_after_use(plus, clock):
    svc = plus
    buy(svc, "m1", "plus_monthly", 1500)
    with svc.uow() as tx:
        memberships.mark_benefit_used(svc, tx.conn, "u1", clock())
        tx.commit()
    assert subscriptions(svc)["m1"]["benefit_used"] is True
    assert the_effect(refund(svc, "m1", "r1"), "membership.refunded")["amount"] == 1500


def test_only_running_terms_are_marked_used(plus, clock):
    svc = plus
    buy(svc, "p1")
    clock.advance(days=1)
    buy(svc, "p2")  # queued for 2027
    with svc.uow() as tx:
        effects = memberships.mark_benefit_used(svc, tx.conn, "u1", clock())
        again = memberships.mark_benefit_used(svc, tx.conn, "u1", clock())
        tx.commit()
    assert [e["purchase_id"] for e in effects] == ["p1"]
    assert again == []
    assert {k: v["benefit_used"] for k, v in subscriptions(svc).items()} == {
        "p1": True,
        "p2": False,
    }
    # so the queued term can still be refunded
    assert the_effect(refund(svc, "p2", "r2"), "membership.refunded")["purchase_id"] == "p2"


# ---------------------------------------------------------------- jobs


def test_ended_terms_are_marked_expired(plus, clock):
    svc = plus
    buy(svc, "m1", "plus_monthly", 1500)
    buy(svc, "a1", "plus_annual", 9900, member="u2")
    assert memberships.expire_subscriptions(svc, clock()) == 0
    clock.advance(days=31)
    assert memberships.expire_subscriptions(svc) == 1
    assert memberships.expire_subscriptions(svc) == 0
    assert subscriptions(svc)["m1"]["status"] == "expired"
    assert subscriptions(svc, "u2")["a1"]["status"] == "active"
    assert view(svc)["active"] is None
    assert [s["state"] for s in view(svc)["subscriptions"]] == ["ended"]


def test_a_renewal_reminder_goes_once_and_not_to_a_member_who_renewed(plus, clock):
    svc = plus
    buy(svc, "m1", "plus_monthly", 1500)  # ends 2026-04-01
    buy(svc, "m2", "plus_monthly", 1500, member="u2")
    buy(svc, "m3", "plus_monthly", 1500, member="u2")  # u2 renewed: ends 2026-05-01
    # nothing is due three weeks before the end (the plan reminds 7 days ahead)
    assert memberships.remind_renewals(svc, clock() + timedelta(days=20)) == 0
    clock.advance(days=25)  # 2026-03-26: six days before u1's end
    assert memberships.remind_renewals(svc) == 1
    assert memberships.remind_renewals(svc) == 0
    (message,) = rows(svc, tables.outbox, topic="membership.renewal_due")
    assert message["key"] == "u1"
    assert message["payload"] == {
        "program_id": "platform",
        "member_id": "u1",
        "plan_id": "plus_monthly",
        "purchase_id": "m1",
        "ends_at": sh(2026, 4, 1).isoformat(),
        "renewal_price_fen": 1500,
        "message": {
            "zh": "您的PLUS月卡将于 2026-04-01 到期，续费 ¥15.00",
            "en": "Your PLUS monthly ends on 2026-04-01; renew for ¥15.00",
        },
    }
    assert subscriptions(svc)["m1"]["reminded_at"] == clock()
    # u2's second term is reminded when its own end comes near
    clock.advance(days=30)
    assert memberships.remind_renewals(svc) == 1


# ---------------------------------------------------------------- benefits and savings


def test_benefits_in_force_come_from_the_tier_and_the_plan_resolving_overlaps(plus, clock):
    svc = plus
    # given u1 is Silver (registration gave 100 growth) without a plan
    alone = memberships.benefits_in_force(svc, SYSTEM_PRINCIPAL, "u1", None)
    assert alone["tier"]["id"] == "silver"
    assert alone["plan"] is None
    assert [(b["id"], b["source"], b["superseded_by"]) for b in alone["benefits"]] == [
        ("silver_off", "tier:silver", None),
        ("silver_x", "tier:silver", None),
    ]
    assert alone["effective"] == {
        "percent_off": "5",
        "points_multiplier": "1.5",
        "free_shipping": False,
        "free_shipping_monthly_quota": 0,
    }
    # when they buy PLUS
    buy(svc, "p1")
    both = memberships.benefits_in_force(svc, SYSTEM_PRINCIPAL, "u1", None)
    # then the plan's benefits join, and under "max" the larger discount and multiplier win
    assert both["plan"]["id"] == "plus_annual"
    assert [(b["id"], b["source"], b["superseded_by"]) for b in both["benefits"]] == [
        ("silver_off", "tier:silver", "plus_off"),
        ("silver_x", "tier:silver", "plus_x"),
        ("plus_off", "plan:plus_annual", None),
        ("plus_x", "plan:plus_annual", None),
        ("plus_ship", "plan:plus_annual", None),
    ]
    assert both["effective"] == {
        "percent_off": "10",
        "points_multiplier": "2",
        "free_shipping": True,
        "free_shipping_monthly_quota": 2,
    }
    # when the program makes multipliers multiply
    apply(svc, document(overlap="multiply"))
    multiplied = memberships.benefits_in_force(svc, SYSTEM_PRINCIPAL, "u1", None)
    assert multiplied["effective"]["points_multiplier"] == "3"
    assert multiplied["effective"]["percent_off"] == "10"  # discounts never stack


def order(svc, order_id, when, amount, shipping_fee=0):
    body = paid(
        f"pay-{order_id}",
        order_id,
        amount=amount,
        items=[item(f"sku-{order_id}", amount, category="food")],
        shipping_fee=shipping_fee,
        occurred_at=iso(when),
    )
    send(svc, body)


def test_the_savings_calculator_estimates_a_year_of_plus_and_what_it_saved(plus, clock):
    svc = plus
    # given u1 (Silver: 5% off, 1.5× points) ordered in the last 12 months …
    order(svc, "o1", sh(2026, 1, 10), 19000, shipping_fee=800)
    order(svc, "o2", sh(2026, 1, 20), 9500, shipping_fee=600)
    order(svc, "o3", sh(2026, 1, 25), 9500, shipping_fee=600)  # the 3rd shipping in January
    order(svc, "o4", sh(2026, 2, 5), 9500)
    order(svc, "o5", sh(2026, 2, 10), 9500, shipping_fee=900)
    send(svc, cancelled("cancel-o5", "o5", occurred_at=iso(sh(2026, 2, 11))))
    order(svc, "o0", sh(2025, 2, 20), 9500, shipping_fee=900)  # over a year ago
    # when the calculator estimates PLUS annual
    found = memberships.savings(svc, SYSTEM_PRINCIPAL, "u1", "plus_annual", None)
    # then: 5% more off what was paid at 5% off (19000 × 5/95 + 3 × 9500 × 5/95 = 2500 fen),
    # 0.5× more points (190 × 0.5 = 95, 95 × 0.5 = 47 rounded down, three times: 236 points at
    # 1 fen) and two free shippings in January (800 + 600) — against ¥99 a year
    assert found["window"] == {
        "since": sh(2025, 3, 1).isoformat(),
        "until": sh(2026, 3, 1).isoformat(),
    }
    assert found["estimate"] == {
        "orders": 4,
        "discount_fen": 2500,
        "extra_points": 236,
        "points_fen": 236,
        "shipping_fen": 1400,
        "free_shipping_orders": 2,
        "total_fen": 4136,
        "cost_fen": 9900,
        "net_fen": 4136 - 9900,
        "worth_it": False,
        "message": {
            "zh": "开通可省 ¥41.36（12个月会费 ¥99.00）",
            "en": "Join and save ¥41.36 (12 months' fee ¥99.00)",
        },
    }
    assert found["actual"] is None
    # and monthly PLUS costs 12 × ¥15 for the same savings
    monthly = memberships.savings(svc, SYSTEM_PRINCIPAL, "u1", "plus_monthly", None)
    assert (monthly["estimate"]["total_fen"], monthly["estimate"]["cost_fen"]) == (4136, 18000)
    # when u1 buys PLUS and orders ¥95 with ¥5 shipping the next day
    buy(svc, "p1")
    clock.advance(days=1)
    order(svc, "o6", clock(), 9500, shipping_fee=500)
    # then PLUS has saved them ¥5 off, 47 points and the shipping since it started
    actual = memberships.savings(svc, SYSTEM_PRINCIPAL, "u1", "plus_annual", None)["actual"]
    assert actual["purchase_id"] == "p1"
    assert (actual["orders"], actual["discount_fen"], actual["extra_points"]) == (1, 500, 47)
    assert (actual["shipping_fen"], actual["total_fen"]) == (500, 1047)
    assert actual["message"] == {
        "zh": "PLUS年卡已为您节省 ¥10.47",
        "en": "PLUS annual has saved you ¥10.47",
    }


def test_an_unknown_plan_cannot_be_estimated(plus):
    error = refused(lambda: memberships.savings(plus, SYSTEM_PRINCIPAL, "u1", "gold", None))
    assert (error.kind, error.code, error.field) == (
        ErrorKind.INVALID,
        MembershipError.PLAN_UNKNOWN,
        "plan",
    )


# ---------------------------------------------------------------- HTTP and tenancy


def test_the_member_centre_reads_membership_benefits_and_savings_over_http(api, clock):
    svc = api.svc
    apply(svc, document())
    send(svc, registered("reg-u1", occurred_at=iso(svc.now())))
    buy(svc, "p1")
    membership = api.get("/v1/members/u1/membership")
    assert membership.status_code == 200, membership.json()
    assert membership.json()["active"]["plan_name"] == names("PLUS年卡", "PLUS annual")
    benefits = api.get("/v1/members/u1/benefits")
    assert benefits.status_code == 200, benefits.json()
    assert benefits.json()["effective"]["percent_off"] == "10"
    estimate = api.get("/v1/members/u1/membership/savings", plan="plus_monthly")
    assert estimate.status_code == 200, estimate.json()
    assert estimate.json()["estimate"]["message"]["zh"] == "开通可省 ¥0.00（12个月会费 ¥180.00）"
    assert estimate.json()["actual"]["total_fen"] == 0
    unknown = api.get("/v1/members/u1/membership/savings", plan="gold")
    assert (unknown.status_code, unknown.json()["field"]) == (422, "plan")
    assert api.get("/v1/members/u1/membership/savings").status_code == 422
    assert api.get("/v1/members/nobody/benefits").status_code == 404


def test_a_store_key_reads_only_its_own_program_and_members(api, clock):
    svc = api.svc
    owner_service.add_store(svc, "s1", "优衣库旗舰店", actor="test")
    apply(svc, document())
    apply(svc, document(), program="s1")
    send(svc, registered("reg-u1", occurred_at=iso(svc.now())))
    send(svc, registered("reg-u2", "u2", occurred_at=iso(svc.now()), store_id="s1"))
    buy(svc, "s-p1", member="u2", store_id="s1")
    key = api.new_key("s1", "read")
    # a store's key sees its own member in its own program (the default for the key)
    mine = api.get("/v1/members/u2/membership", key=key)
    assert mine.status_code == 200, mine.json()
    assert (mine.json()["program_id"], mine.json()["active"]["purchase_id"]) == ("s1", "s-p1")
    assert api.get("/v1/members/u2/benefits", key=key).json()["plan"]["id"] == "plus_annual"
    # but not a member who never joined the store, nor the platform's program
    assert api.get("/v1/members/u1/benefits", key=key).status_code == 404
    other = api.get("/v1/members/u2/membership", key=key, program_id="platform")
    assert (other.status_code, other.json()["code"]) == (403, "program_not_enrolled")
    assert other.json()["field"] == "program_id"
    # and a key without the read scope reads nothing
    writer = api.new_key("s1", "write")
    assert api.get("/v1/members/u2/membership", key=writer).status_code == 403


def test_plus_members_earn_double_points_by_a_multiplier_naming_the_plans(svc, clock):
    # given PLUS members earn 2× by a points multiplier conditioned on the PLUS plans
    points = {
        "earning": [{"kind": "per_amount", "id": "base", "per_fen": 100, "points": 1}],
        "multipliers": [
            {
                "id": "plus-2x",
                "factor": "2",
                "conditions": {"plans": ["plus_annual", "plus_monthly"]},
            }
        ],
    }
    apply(svc, document(points=points))
    for member in ("u1", "u2"):
        send(svc, registered(f"reg-{member}", member, occurred_at=iso(svc.now())))
    # and u1 buys PLUS monthly
    buy(svc, "p1", plan_id="plus_monthly", amount=1500)
    clock.advance(minutes=5)

    def pay(member, order_id):
        body = paid(f"pay-{order_id}", order_id, member, amount=29900, occurred_at=iso(clock()))
        return the_effect(send(svc, body)["effects"], "points.pending")

    # when both pay ¥299, then the PLUS member's points are doubled, with the reason saying so
    plus, plain = pay("u1", "o1"), pay("u2", "o2")
    assert (plus["points"], plain["points"]) == (598, 299)
    assert "2倍" in plus["reason"]
    # and once the month is over (the term ended) u1 earns single points again
    clock.advance(days=32)
    assert pay("u1", "o3")["points"] == 299


def test_a_points_condition_naming_an_unknown_plan_is_refused(svc):
    points = {
        "earning": [{"kind": "per_amount", "id": "base", "per_fen": 100, "points": 1}],
        "multipliers": [{"id": "vip-2x", "factor": "2", "conditions": {"plans": ["vip"]}}],
    }
    with pytest.raises(DomainError) as caught:
        programs.apply_document(svc, "platform", document(points=points), actor="test")
    assert caught.value.field == "document.points.multipliers[0].conditions.plans[0]"
