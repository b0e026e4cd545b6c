"""Worked examples of growth (成长值) and tiers (等级), told as the business tells them, on SQLite
and PostgreSQL.

Each story applies its program document first (it takes effect from the test clock's now, which
stands at 2026-03-01 10:00 Shanghai), then sends events that occur as the clock moves on, and runs
the monthly checkpoint job (保级/降级) when a checkpoint — 00:00 Shanghai on the 1st — comes.
"""

from copy import deepcopy
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from huiyuan.db import tables
from huiyuan.demo import programs as demo
from huiyuan.domain.errors import DomainError
from huiyuan.services import owners as owner_service
from huiyuan.services import tiers
from huiyuan.services.principals import SYSTEM

from .bodies import completed, event, item, login, paid, refunded, registered
from .ledger import apply, balance, history, iso, send
from .stored import effects_of, one, rows, the_effect

SHANGHAI = ZoneInfo("Asia/Shanghai")


def shanghai(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


def move_to(clock, moment):
    """Let time pass until ``moment`` (the clock only moves forward)."""
    assert moment >= clock(), (moment, clock())
    clock.advance(seconds=(moment - clock()).total_seconds())


# ---------------------------------------------------------------- documents


def jd_document(**ladder):
    """The demo's JD-like platform: 注册 0 / 铜牌 500 / 银牌 2000 / 金牌 6000 (kept at 5000) /
    钻石 15000, counted over a rolling 365-day window of growth, 1 growth per ¥1 (gold 1.2×,
    diamond 1.5×), checked monthly after a 30-day stay, each tier's upgrade gift once a year.
    No earning rules for points, so the only points in these stories are upgrade gifts."""
    doc = deepcopy(demo.PLATFORM)
    doc["points"]["earning"] = []
    doc["tiers"].update(ladder)
    return doc


def simple_ladder(**ladder):
    """注册 0 / 铜牌 500 / 银牌 2000 on lifetime growth, checked monthly, no stay."""
    body = {
        "metric": "growth_lifetime",
        "tiers": [
            {"id": "registered", "name": {"zh": "注册会员", "en": "Registered"}, "threshold": 0},
            {"id": "bronze", "name": {"zh": "铜牌会员", "en": "Bronze"}, "threshold": 500},
            {"id": "silver", "name": {"zh": "银牌会员", "en": "Silver"}, "threshold": 2000},
        ],
        "downgrade": {"checkpoint": "monthly"},
    }
    body.update(ladder)
    return body


PURCHASE_RULE = {"kind": "purchase", "id": "purchase", "per_fen": 100, "points": 1}


# ---------------------------------------------------------------- events at the clock


def order(svc, clock, order_id, amount, member="u1", store_id=None, items=None):
    """The member pays ``amount`` fen for one item and the order completes, now."""
    items = items or [item(f"sku-{order_id}", amount)]
    body = paid(
        f"pay-{order_id}",
        order_id,
        member,
        amount=amount,
        items=items,
        occurred_at=iso(clock()),
        store_id=store_id,
    )
    send(svc, body)
    done = completed(f"done-{order_id}", order_id, member, occurred_at=iso(clock()))
    if store_id:
        done["store_id"] = store_id
    return send(svc, done)["effects"]


def refund(svc, clock, order_id, refund_id, amount, member="u1", store_id=None):
    body = refunded(
        f"ref-{refund_id}", order_id, refund_id, amount, member, occurred_at=iso(clock())
    )
    if store_id:
        body["store_id"] = store_id
    return send(svc, body)["effects"]


def tier_card(svc, member="u1", program=None):
    return tiers.tier_view(svc, SYSTEM, member, program)


def tier_of(svc, member="u1", program=None):
    return tier_card(svc, member, program)["tier"]["id"]


def growth_entries(svc, member="u1", program=None):
    """The member's growth entries, oldest first."""
    found = tiers.growth_history(svc, SYSTEM, member, program)["entries"]
    return list(reversed(found))


def moves(svc, member="u1", program="platform"):
    """(from, to, cause) of every tier move, oldest first."""
    found = rows(svc, tables.tier_history, member_id=member, program_id=program)
    return [(h["from_tier"], h["to_tier"], h["cause"]) for h in found]


def gift_points(svc, member="u1"):
    return [
        (e["rule_id"], e["available"]) for e in history(svc, member) if e["rule_id"] is not None
    ]


def checkpoint(svc, clock, *parts):
    """Time passes to 00:00 Shanghai of the day ``parts`` and the checkpoint job runs."""
    move_to(clock, shanghai(*parts))
    return tiers.evaluate_checkpoints(svc)


# ---------------------------------------------------------------- (a) a JD-like ladder


def test_one_big_order_climbs_two_tiers_with_both_gifts_and_an_emptied_window_drops_a_year_on(
    svc, clock
):
    # given the JD-like platform ladder
    apply(svc, jd_document())
    # when a registered member completes one ¥2,500 order
    effects = order(svc, clock, "o1", 250000)
    # then 2,500 growth lifts them past bronze (500) to silver (2,000) at once
    assert the_effect(effects, "growth.credited")["growth"] == 2500
    upgraded = the_effect(effects, "tier.upgraded")
    assert (upgraded["from"], upgraded["to"], upgraded["metric"]) == ("registered", "silver", 2500)
    # and both passed tiers' gifts are granted once: 50 for bronze and 100 for silver
    gifts = effects_of(effects, "tier.gift")
    assert [(g["tier_id"], g["points"]) for g in gifts] == [("bronze", 50), ("silver", 100)]
    assert balance(svc)["available"] == 150
    assert sorted(gift_points(svc)) == [("gift:bronze", 50), ("gift:silver", 100)]
    card = tier_card(svc)
    assert (card["tier"]["id"], card["metric"]["value"], card["metric"]["window_days"]) == (
        "silver",
        2500,
        365,
    )
    assert card["keep"]["next_evaluation_at"] == shanghai(2026, 4, 1).astimezone(UTC).isoformat()
    # when the monthly checkpoints of the following twelve months come
    for month in range(4, 16):
        year, month_of_year = 2026 + (month - 1) // 12, (month - 1) % 12 + 1
        assert checkpoint(svc, clock, year, month_of_year, 1) == 1
        # then silver is retained: the order is still inside the 365-day window
        assert tier_of(svc) == "silver"
    # when the April 2027 checkpoint comes, the order has left the window
    assert checkpoint(svc, clock, 2027, 4, 1) == 1
    # then the member drops to the tier an empty window supports: registered
    card = tier_card(svc)
    assert (card["tier"]["id"], card["metric"]["value"], card["metric"]["growth_lifetime"]) == (
        "registered",
        0,
        2500,
    )
    assert moves(svc) == [
        ("registered", "silver", "upgrade"),
        ("silver", "registered", "downgrade"),
    ]
    # when they climb again with another ¥2,500 order, more than a year after the gifts
    move_to(clock, shanghai(2027, 4, 2, 10))
    effects = order(svc, clock, "o2", 250000)
    # then they are silver again and this year's gifts are granted
    assert the_effect(effects, "tier.upgraded")["to"] == "silver"
    assert [g["tier_id"] for g in effects_of(effects, "tier.gift")] == ["bronze", "silver"]
    assert balance(svc)["available"] == 300


def test_gifts_are_not_granted_twice_when_a_member_climbs_again_within_the_gift_period(svc, clock):
    # given the JD-like ladder (gifts once per 365 days) and a member who climbed to silver
    # with a ¥2,500 order and got 150 points of gifts
    apply(svc, jd_document())
    order(svc, clock, "o1", 250000)
    # when the whole order is refunded the next day, then they keep silver until the
    # checkpoint …
    clock.advance(days=1)
    refund(svc, clock, "o1", "r1", 250000)
    assert (tier_of(svc), tier_card(svc)["metric"]["value"]) == ("silver", 0)
    # … where they drop to registered
    assert checkpoint(svc, clock, 2026, 4, 1) == 1
    assert tier_of(svc) == "registered"
    # when they climb to silver again a month after the first time
    move_to(clock, shanghai(2026, 4, 1, 10))
    effects = order(svc, clock, "o2", 250000)
    # then they are silver, but no gift is granted a second time within the year
    assert the_effect(effects, "tier.upgraded")["to"] == "silver"
    assert effects_of(effects, "tier.gift") == []
    assert balance(svc)["available"] == 150
    assert len(rows(svc, tables.tier_gifts, member_id="u1")) == 2


def test_the_gift_period_is_counted_from_the_last_gift_not_by_the_calendar(svc, clock):
    # given the JD-like ladder (gifts once per 365 days)
    apply(svc, jd_document())
    # and a member who climbs to bronze in early December 2026 and gets its 50-point gift
    move_to(clock, shanghai(2026, 12, 1, 10))
    assert [g["tier_id"] for g in effects_of(order(svc, clock, "o1", 50000), "tier.gift")] == [
        "bronze"
    ]
    # and who refunds the order the next day and drops back at the January checkpoint
    clock.advance(days=1)
    refund(svc, clock, "o1", "r1", 50000)
    checkpoint(svc, clock, 2027, 1, 1)
    assert tier_of(svc) == "registered"
    # when they climb to bronze again in January, a month after the gift
    move_to(clock, shanghai(2027, 1, 1, 10))
    effects = order(svc, clock, "o2", 50000)
    # then no second gift is granted within the 365 days
    assert the_effect(effects, "tier.upgraded")["to"] == "bronze"
    assert effects_of(effects, "tier.gift") == []
    assert balance(svc)["available"] == 50


def test_every_member_who_climbs_gets_their_own_upgrade_gifts(svc, clock):
    # given the JD-like ladder
    apply(svc, jd_document())
    # when two members each climb to silver with a ¥2,500 order
    for member in ("u1", "u2"):
        effects = order(svc, clock, f"o-{member}", 250000, member=member)
        assert len(effects_of(effects, "tier.gift")) == 2
    # then each holds their own 150 points of gifts
    assert balance(svc, "u1")["available"] == 150
    assert balance(svc, "u2")["available"] == 150


def test_a_gold_member_earns_purchase_growth_at_the_gold_coefficient(svc, clock):
    # given the JD-like ladder, where gold members earn 1.2 growth per ¥1
    apply(svc, jd_document())
    # and a member who reached gold with a ¥6,000 order (bronze, silver and gold gifts)
    effects = order(svc, clock, "o1", 600000)
    assert the_effect(effects, "tier.upgraded")["to"] == "gold"
    assert balance(svc)["available"] == 50 + 100 + 300
    # when they complete a ¥299 order
    effects = order(svc, clock, "o2", 29900)
    # then it earns 358 growth (299 × 1.2 = 358.8, rounded down)
    assert the_effect(effects, "growth.credited")["growth"] == 358
    assert tier_card(svc)["metric"]["value"] == 6358


# ---------------------------------------------------------------- (b) a retailer without downgrades


def test_a_retailer_without_downgrades_never_drops_a_member(svc, clock):
    # given a beauty store whose ladder counts spend over ten years and never downgrades
    owner_service.add_store(svc, "store-beauty", "花漾美妆", actor="test")
    apply(svc, demo.STORES["store-beauty"], program="store-beauty")
    # when a member spends ¥1,000 in the store
    effects = order(svc, clock, "b1", 100000, store_id="store-beauty")
    # then they are the store's VIP at once
    upgraded = the_effect(effects, "tier.upgraded")
    assert (upgraded["program_id"], upgraded["to"]) == ("store-beauty", "vip")
    card = tier_card(svc, program="store-beauty")
    assert card["keep"] == {
        "needed": 0,
        "keep_at": 100000,
        "checkpoint": "none",
        "next_evaluation_at": None,
    }
    # when they return everything
    refund(svc, clock, "b1", "br1", 100000, store_id="store-beauty")
    # and two years of checkpoint runs pass
    for year in (2027, 2028):
        assert checkpoint(svc, clock, year, 3, 1) == 0
    # then they are still VIP, though their spend is now nothing
    card = tier_card(svc, program="store-beauty")
    assert (card["tier"]["id"], card["metric"]["value"]) == ("vip", 0)
    assert moves(svc, program="store-beauty") == [("fan", "vip", "upgrade")]


# ---------------------------------------------------------------- (c) a stored-value ladder


def fresh_store(svc, **ladder):
    """A fresh-food store whose tier is decided by cumulative recharge (储值会员): ¥500 makes a
    card member, ¥2,000 a prime card member."""
    owner_service.add_store(svc, "store-fresh", "鲜到家", actor="test")
    doc = deepcopy(demo.STORES["store-fresh"])
    doc["tiers"].update(ladder)
    apply(svc, doc, program="store-fresh")


def recharge(svc, clock, recharge_id, amount):
    body = event(
        f"rc-{recharge_id}",
        "wallet.recharged",
        occurred_at=iso(clock()),
        store_id="store-fresh",
        recharge_id=recharge_id,
        amount=amount,
    )
    return send(svc, body)["effects"]


def refund_recharge(svc, clock, recharge_id, refund_id, amount):
    body = event(
        f"rr-{refund_id}",
        "wallet.recharge_refunded",
        occurred_at=iso(clock()),
        store_id="store-fresh",
        recharge_id=recharge_id,
        refund_id=refund_id,
        amount=amount,
    )
    return send(svc, body)["effects"]


def test_a_recharge_makes_a_card_member_and_its_refund_waits_for_the_checkpoint(svc, clock):
    # given the stored-value ladder, checked monthly, keeping the tier on refunds
    fresh_store(svc, downgrade={"checkpoint": "monthly"}, keep_on_refund=True)
    # when a member recharges ¥300, then ¥200
    assert effects_of(recharge(svc, clock, "c1", 30000), "tier.upgraded") == []
    effects = recharge(svc, clock, "c2", 20000)
    # then ¥500 in all makes them a card member
    upgraded = the_effect(effects, "tier.upgraded")
    assert (upgraded["program_id"], upgraded["to"], upgraded["metric"]) == (
        "store-fresh",
        "card-500",
        50000,
    )
    # when ¥200 of the second recharge is refunded
    effects = refund_recharge(svc, clock, "c2", "cr1", 20000)
    # then the cumulative recharge falls to ¥300 but they stay a card member for now
    assert effects_of(effects, "tier.downgraded") == []
    card = tier_card(svc, program="store-fresh")
    assert (card["tier"]["id"], card["metric"]["value"]) == ("card-500", 30000)
    assert card["keep"]["needed"] == 20000
    # when the April checkpoint comes, then they are an ordinary member again
    assert checkpoint(svc, clock, 2026, 4, 1) == 1
    assert tier_of(svc, program="store-fresh") == "member"
    assert moves(svc, program="store-fresh") == [
        ("member", "card-500", "upgrade"),
        ("card-500", "member", "downgrade"),
    ]


def test_a_recharge_refund_drops_the_tier_at_once_when_the_program_says_so(svc, clock):
    # given the stored-value ladder, where a refund lowers the tier at once
    fresh_store(svc, keep_on_refund=False)
    # and a member who recharged ¥500 and is a card member
    recharge(svc, clock, "c1", 50000)
    assert tier_of(svc, program="store-fresh") == "card-500"
    # when ¥100 of it is refunded
    effects = refund_recharge(svc, clock, "c1", "cr1", 10000)
    # then they are an ordinary member at once
    downgraded = the_effect(effects, "tier.downgraded")
    assert (downgraded["from"], downgraded["to"], downgraded["metric"]) == (
        "card-500",
        "member",
        40000,
    )
    assert tier_of(svc, program="store-fresh") == "member"


# ---------------------------------------------------------------- (d) refunds below a threshold


def test_a_refund_below_the_threshold_keeps_the_upgrade_until_the_next_checkpoint(svc, clock):
    # given the JD-like ladder, which keeps a tier on refunds until the checkpoint
    apply(svc, jd_document())
    # and a member who reached silver with a ¥2,500 order
    order(svc, clock, "o1", 250000)
    # when ¥1,000 of it is refunded a week later
    clock.advance(days=7)
    effects = refund(svc, clock, "o1", "r1", 100000)
    # then 1,000 growth is taken back, leaving 1,500 — but they stay silver for now
    assert the_effect(effects, "growth.taken_back")["growth"] == -1000
    assert effects_of(effects, "tier.downgraded") == []
    card = tier_card(svc)
    assert (card["tier"]["id"], card["metric"]["value"], card["keep"]["needed"]) == (
        "silver",
        1500,
        500,
    )
    # when the April checkpoint comes (after the 30-day stay)
    assert checkpoint(svc, clock, 2026, 4, 1) == 1
    # then they drop to what 1,500 supports: bronze
    assert tier_of(svc) == "bronze"
    assert moves(svc)[-1] == ("silver", "bronze", "downgrade")
    # and the growth history tells why, with the order named
    entries = growth_entries(svc)
    assert [(e["kind"], e["amount"], e["order_id"]) for e in entries] == [
        ("purchase", 2500, "o1"),
        ("purchase_refund", -1000, "o1"),
    ]
    assert "退款扣回成长值" in entries[1]["reason"]["zh"]


def test_a_refund_below_the_threshold_drops_the_tier_at_once_when_the_program_says_so(svc, clock):
    # given the JD-like ladder, changed so that refunds lower the tier at once
    apply(svc, jd_document(keep_on_refund=False))
    order(svc, clock, "o1", 250000)
    # when ¥1,000 of the ¥2,500 order is refunded the next day
    clock.advance(days=1)
    effects = refund(svc, clock, "o1", "r1", 100000)
    # then the member drops from silver to bronze at once, gifts kept
    downgraded = the_effect(effects, "tier.downgraded")
    assert (downgraded["from"], downgraded["to"], downgraded["metric"]) == (
        "silver",
        "bronze",
        1500,
    )
    assert tier_of(svc) == "bronze"
    assert balance(svc)["available"] == 150
    # and a refund that stays above the threshold moves nothing
    effects = refund(svc, clock, "o1", "r2", 50000)
    assert effects_of(effects, "tier.downgraded") == []
    assert tier_of(svc) == "bronze"


def test_a_refund_takes_back_only_the_growth_of_its_own_order(svc, clock):
    # given 1 growth per ¥1, and a member with orders "A_1" (¥300) and "AB1" (¥500) — ids an
    # SQL LIKE pattern would confuse
    apply(svc, {"growth": {"rules": [PURCHASE_RULE]}})
    order(svc, clock, "A_1", 30000)
    order(svc, clock, "AB1", 50000)
    # when order A_1 is refunded in full the next day
    clock.advance(days=1)
    effects = refund(svc, clock, "A_1", "r1", 30000)
    # then exactly its 300 growth is taken back, and AB1's 500 stay
    assert the_effect(effects, "growth.taken_back")["growth"] == -300
    assert tier_card_free_growth(svc) == 500


def test_each_purchase_rule_takes_back_only_what_it_earned(svc, clock):
    # given two purchase rules whose ids share a prefix: 1 per ¥1 and 1 per ¥10 more
    extra = {**PURCHASE_RULE, "id": "purchase-plus", "per_fen": 1000}
    apply(svc, {"growth": {"rules": [PURCHASE_RULE, extra]}})
    # and a member whose ¥500 order earned 500 + 50 growth
    effects = order(svc, clock, "o1", 50000)
    assert credited(effects) == [("purchase", 500), ("purchase-plus", 50)]
    # when the order is refunded in full the next day
    clock.advance(days=1)
    effects = refund(svc, clock, "o1", "r1", 50000)
    # then each rule takes back exactly what it earned, and no growth is left
    taken = sorted((e["rule_id"], e["growth"]) for e in effects_of(effects, "growth.taken_back"))
    assert taken == [("purchase", -500), ("purchase-plus", -50)]
    assert tier_card_free_growth(svc) == 0


def test_a_refund_reported_late_still_takes_back_its_share_of_growth(svc, clock):
    # given 1 growth per ¥1 and a ¥500 order paid on March 1st
    apply(svc, {"growth": {"rules": [PURCHASE_RULE]}})
    paid_at = clock()
    send(
        svc, paid("pay-o1", "o1", amount=50000, items=[item("a", 50000)], occurred_at=iso(paid_at))
    )
    # and completed on March 3rd, earning 500 growth
    clock.advance(days=2)
    send(svc, completed("done-o1", "o1", occurred_at=iso(clock())))
    assert tier_card_free_growth(svc) == 500
    # when a ¥200 refund made on March 2nd is only reported now
    late = refunded("ref-r1", "o1", "r1", 20000, occurred_at=iso(paid_at.replace(day=2)))
    send(svc, late)
    # then 200 growth is taken back all the same
    assert tier_card_free_growth(svc) == 300


def pay_on(svc, order_id, amount, at, member="u1", store_id=None):
    """The member pays ``amount`` fen for one item at ``at``."""
    items = [item(f"sku-{order_id}", amount)]
    body = paid(
        f"pay-{order_id}",
        order_id,
        member,
        amount=amount,
        items=items,
        occurred_at=iso(at),
        store_id=store_id,
    )
    send(svc, body)


def in_store(body, store_id):
    return {**body, "store_id": store_id} if store_id else body


def complete_on(svc, order_id, at, member="u1", store_id=None):
    body = completed(f"done-{order_id}", order_id, member, occurred_at=iso(at))
    return send(svc, in_store(body, store_id))["effects"]


def refund_on(svc, order_id, refund_id, amount, at, member="u1", store_id=None):
    body = refunded(f"ref-{refund_id}", order_id, refund_id, amount, member, occurred_at=iso(at))
    return send(svc, in_store(body, store_id))["effects"]


def taken_back(effects):
    return [e["growth"] for e in effects_of(effects, "growth.taken_back")]


def test_refunds_before_and_after_completion_take_back_what_completion_credited_in_any_order(
    svc, clock
):
    # given 1 growth per ¥1 and a ¥1,000 order paid on March 1st
    apply(svc, {"growth": {"rules": [PURCHASE_RULE]}})
    march = {day: shanghai(2026, 3, day, 10) for day in range(1, 8)}
    pay_on(svc, "o1", 100000, march[1])
    # and ¥200 of it refunded on March 2nd, reported at once
    move_to(clock, march[2])
    assert taken_back(refund_on(svc, "o1", "r1", 20000, march[2])) == []
    # when the order completes on March 4th
    move_to(clock, march[4])
    effects = complete_on(svc, "o1", march[4])
    # then it earns 800 growth, for the ¥800 still paid
    assert credited(effects) == [("purchase", 800)]
    assert (growth_entries(svc)[0]["kind"], growth_entries(svc)[0]["basis_fen"]) == (
        "purchase",
        80000,
    )
    # when a ¥300 refund made on March 3rd is only reported now, on March 5th
    move_to(clock, march[5])
    effects = refund_on(svc, "o1", "r2", 30000, march[3])
    # then 300 of the 800 are taken back: 800 × 300 ÷ 800
    assert taken_back(effects) == [-300]
    # when ¥100 more is refunded on March 6th
    move_to(clock, march[6])
    assert taken_back(refund_on(svc, "o1", "r3", 10000, march[6])) == [-100]
    # and the last ¥400 on March 7th
    move_to(clock, march[7])
    assert taken_back(refund_on(svc, "o1", "r4", 40000, march[7])) == [-400]
    # then all 800 are taken back, never more, and the ¥200 refunded before completion took
    # nothing (the completion never credited it)
    assert tier_card_free_growth(svc) == 0
    assert [(e["kind"], e["amount"]) for e in growth_entries(svc)] == [
        ("purchase", 800),
        ("purchase_refund", -300),
        ("purchase_refund", -100),
        ("purchase_refund", -400),
    ]
    # and the last refund sent again answers as the first time and writes nothing
    again = send(svc, refunded("ref-r4", "o1", "r4", 40000, occurred_at=iso(march[7])))
    assert taken_back(again["effects"]) == [-400]
    assert len(growth_entries(svc)) == 4
    assert tier_card_free_growth(svc) == 0


def test_a_late_refund_of_a_store_order_takes_back_its_share_in_both_programs(svc, clock):
    # given 1 platform growth per ¥1, and a store whose own program gives 2 growth per ¥1
    owner_service.add_store(svc, "s1", "优衣库", actor="test")
    apply(svc, {"growth": {"rules": [PURCHASE_RULE]}})
    apply(svc, {"growth": {"rules": [{**PURCHASE_RULE, "points": 2}]}}, program="s1")
    # and a ¥500 order paid in the store on March 1st and completed on March 3rd
    paid_at = clock()
    pay_on(svc, "o1", 50000, paid_at, store_id="s1")
    move_to(clock, shanghai(2026, 3, 3, 10))
    effects = complete_on(svc, "o1", clock(), store_id="s1")
    assert sorted(
        (e["program_id"], e["growth"]) for e in effects_of(effects, "growth.credited")
    ) == [
        ("platform", 500),
        ("s1", 1000),
    ]
    # when a ¥100 refund made on March 2nd is only reported now
    effects = refund_on(svc, "o1", "r1", 10000, shanghai(2026, 3, 2, 10), store_id="s1")
    # then each program takes back a fifth of what it credited
    taken = sorted((e["program_id"], e["growth"]) for e in effects_of(effects, "growth.taken_back"))
    assert taken == [("platform", -100), ("s1", -200)]
    assert tier_card_free_growth(svc) == 400
    assert sum(e["amount"] for e in growth_entries(svc, program="s1")) == 800


def test_a_refund_at_the_instant_of_completion_but_reported_after_it_takes_back_its_share(
    svc, clock
):
    # given 1 growth per ¥1 and a ¥600 order paid and completed at the same instant
    apply(svc, {"growth": {"rules": [PURCHASE_RULE]}})
    at = clock()
    pay_on(svc, "o1", 60000, at)
    assert credited(complete_on(svc, "o1", at)) == [("purchase", 600)]
    # when a ¥150 refund dated at that same instant is reported after the completion
    clock.advance(hours=1)
    effects = refund_on(svc, "o1", "r1", 15000, at)
    # then its share, 150, is taken back
    assert taken_back(effects) == [-150]
    assert tier_card_free_growth(svc) == 450


def test_refunds_in_thirds_take_back_running_totals_and_exactly_what_was_credited(svc, clock):
    # given 1 growth per ¥1 and a ¥100.00 order completed for 100 growth
    apply(svc, {"growth": {"rules": [PURCHASE_RULE]}})
    order(svc, clock, "o1", 10000)
    # when it is refunded in three parts of ¥33.33, ¥33.33 and ¥33.34
    taken = []
    for n, amount in enumerate((3333, 3333, 3334)):
        clock.advance(days=1)
        taken += taken_back(refund(svc, clock, "o1", f"r{n}", amount))
    # then each refund takes what the running total says (⌊100 × 3333 ÷ 10000⌋ = 33, then
    # ⌊100 × 6666 ÷ 10000⌋ − 33 = 33, then the rest), and together exactly the 100 credited
    assert taken == [-33, -33, -34]
    assert tier_card_free_growth(svc) == 0


def test_a_refund_takes_back_in_proportion_to_the_growth_actually_credited_under_a_daily_cap(
    svc, clock
):
    # given 1 growth per ¥1 capped at 300 a day, and a ¥500 order that earned only the cap
    apply(svc, {"growth": {"rules": [{**PURCHASE_RULE, "per_day": 300}]}})
    assert credited(order(svc, clock, "o1", 50000)) == [("purchase", 300)]
    # when half of the order is refunded the next day
    clock.advance(days=1)
    effects = refund(svc, clock, "o1", "r1", 25000)
    # then half of what was credited is taken back: 150, not 250
    assert taken_back(effects) == [-150]
    assert tier_card_free_growth(svc) == 150


def test_a_refund_takes_back_growth_of_a_rule_since_removed_or_with_growth_turned_off(svc, clock):
    # given 1 growth per ¥1 and a ¥400 order that earned 400
    apply(svc, {"growth": {"rules": [PURCHASE_RULE]}})
    order(svc, clock, "o1", 40000)
    order(svc, clock, "o2", 40000)
    # when the operator removes the purchase rule, and ¥100 of o1 is refunded
    clock.advance(days=1)
    apply(svc, {"growth": {"rules": []}})
    effects = refund(svc, clock, "o1", "r1", 10000)
    # then the refund still takes back its share of what the order earned
    assert taken_back(effects) == [-100]
    # when growth is then turned off altogether, and o2 is refunded in full
    clock.advance(days=1)
    apply(svc, {"growth": {"enabled": False}})
    effects = refund(svc, clock, "o2", "r2", 40000)
    # then o2's 400 are taken back too
    assert taken_back(effects) == [-400]
    assert tier_card_free_growth(svc) == 300


def tier_card_free_growth(svc, member="u1"):
    """The member's growth total, for a program without a ladder."""
    return sum(e["amount"] for e in growth_entries(svc, member))


# ---------------------------------------------------------------- (e) RFM


def rfm_document():
    """Lifetime growth on a 3-tier ladder checked monthly, with RFM scored on fixed bands."""
    return {
        "growth": {
            "rules": [PURCHASE_RULE],
            "rfm": {
                "enabled": True,
                "recency_edges_days": [30, 90, 180, 270],
                "frequency_edges": [1, 2, 4, 8],
                "monetary_edges_fen": [10000, 50000, 100000, 500000],
                "weights": {"r": 20, "f": 30, "m": 50},
            },
        },
        "tiers": simple_ladder(),
    }


def test_rfm_takes_growth_from_a_lapsed_member_who_then_drops_at_the_checkpoint(svc, clock):
    # given a program scoring RFM monthly
    apply(svc, rfm_document())
    # and a member who spent ¥550 once in March and reached bronze
    order(svc, clock, "o-lapsed", 55000, member="lapsed")
    assert tier_of(svc, "lapsed") == "bronze"
    # and, in December, a loyal member who completes three ¥1,000 orders and a newcomer who
    # only logs in
    move_to(clock, shanghai(2026, 12, 20, 10))
    for n in range(3):
        order(svc, clock, f"o-loyal-{n}", 100000, member="loyal")
    send(svc, login("login-new", "newcomer", occurred_at=iso(clock())))
    # and the checkpoints missed so far have run (the lapsed member kept bronze)
    assert tiers.evaluate_checkpoints(svc) == 1
    # when the December RFM scoring runs
    report = tiers.score_rfm(svc, "platform")
    # then the lapsed member (294 days, 1 order, ¥550: R1 F1 M3) loses 100 growth, the loyal
    # member (R5 F3 M4) gains 90, and the newcomer, who joined within the window and has not
    # ordered yet, is not scored at all (a newcomer is not a lapsed customer)
    assert (report["period"], report["members"], report["entries"]) == ("2026-12", 2, 2)
    assert report["changes"] == {-100: 1, 90: 1}
    assert [e for e in growth_entries(svc, "newcomer") if e["kind"] == "rfm"] == []
    lapsed = growth_entries(svc, "lapsed")[-1]
    assert (lapsed["kind"], lapsed["amount"]) == ("rfm", -100)
    assert "R1F1M3" in lapsed["reason"]["zh"]
    assert growth_entries(svc, "loyal")[-1]["amount"] == 90
    # and the lapsed member keeps bronze until the checkpoint, with 450 growth
    card = tier_card(svc, "lapsed")
    assert (card["tier"]["id"], card["metric"]["value"]) == ("bronze", 450)
    # when the scoring runs again in the same month
    clock.advance(days=5)
    again = tiers.score_rfm(svc, "platform")
    # then it writes nothing
    assert (again["period"], again["entries"]) == ("2026-12", 0)
    assert len(growth_entries(svc, "lapsed")) == 2
    # when the January checkpoint comes (for the two members who have a tier to keep)
    assert checkpoint(svc, clock, 2027, 1, 1) == 2
    # then the lapsed member drops to registered and the loyal member keeps silver
    assert tier_of(svc, "lapsed") == "registered"
    assert tier_of(svc, "loyal") == "silver"
    assert moves(svc, "lapsed") == [
        ("registered", "bronze", "upgrade"),
        ("bronze", "registered", "downgrade"),
    ]


def test_rfm_scoring_needs_rfm_enabled(svc, clock):
    # given a program without RFM
    apply(svc, {"growth": {"rules": [PURCHASE_RULE]}, "tiers": simple_ladder()})
    # when the scoring job runs, then it is refused and writes nothing
    with pytest.raises(DomainError) as refused:
        tiers.score_rfm(svc, "platform")
    assert refused.value.code == "rfm_disabled"
    assert rows(svc, tables.growth_entries) == []


# ---------------------------------------------------------------- (f) the checkpoint job


def test_the_checkpoint_job_is_idempotent_and_resumable(svc, clock):
    # given the JD-like ladder and five members who reached bronze in March
    apply(svc, jd_document())
    members = [f"m{n}" for n in range(5)]
    for member in members:
        order(svc, clock, f"o-{member}", 60000, member=member)
    # and two of them who refunded everything the next day
    clock.advance(days=1)
    for member in members[:2]:
        refund(svc, clock, f"o-{member}", f"r-{member}", 60000, member=member)
    # when the job runs before the April checkpoint, then nobody is due
    assert tiers.evaluate_checkpoints(svc, now=shanghai(2026, 3, 31, 23, 59)) == 0
    # when the April checkpoint comes and the job runs one member per transaction
    move_to(clock, shanghai(2026, 4, 1))
    assert tiers.evaluate_checkpoints(svc, chunk=1) == 5
    # then every member was evaluated once: the two who refunded dropped, three kept bronze
    assert [tier_of(svc, m) for m in members] == ["registered"] * 2 + ["bronze"] * 3
    # when the job runs again, then there is nothing left to do and nothing changes
    assert tiers.evaluate_checkpoints(svc) == 0
    assert tiers.evaluate_checkpoints(svc, chunk=2) == 0
    assert len(rows(svc, tables.tier_history)) == 5 + 2
    # and every member's next evaluation is the May checkpoint
    nexts = {r["next_check_at"] for r in rows(svc, tables.member_tiers, program_id="platform")}
    assert nexts == {shanghai(2026, 5, 1).astimezone(UTC)}


def test_a_member_whose_checkpoints_were_missed_is_evaluated_once_and_rescheduled(svc, clock):
    # given a member who reached bronze in March, and a job that did not run for months
    apply(svc, jd_document())
    order(svc, clock, "o1", 60000)
    clock.advance(days=1)
    refund(svc, clock, "o1", "r1", 60000)
    # when the job finally runs in mid-July, in small chunks
    move_to(clock, shanghai(2026, 7, 15, 10))
    assert tiers.evaluate_checkpoints(svc, chunk=1) == 1
    # then the member was evaluated once, dropped, and is next evaluated on August 1st
    assert tier_of(svc) == "registered"
    row = one(svc, tables.member_tiers, program_id="platform", member_id="u1")
    assert row["next_check_at"] == shanghai(2026, 8, 1).astimezone(UTC)
    assert tiers.evaluate_checkpoints(svc) == 0


# ---------------------------------------------------------------- (g) business days


def test_logins_either_side_of_midnight_in_shanghai_are_two_business_days(svc, clock):
    # given 2 growth for the first login of each business day (Asia/Shanghai)
    apply(svc, {"growth": {"rules": [{"kind": "login", "id": "daily-login", "points": 2}]}})
    # when a member logs in at 23:59 on March 1st and at 00:01 on March 2nd, Shanghai time —
    # the same UTC date (15:59 and 16:01 UTC)
    move_to(clock, shanghai(2026, 3, 1, 23, 59))
    first = send(svc, login("l1", occurred_at=iso(clock())))["effects"]
    clock.advance(minutes=2)
    second = send(svc, login("l2", occurred_at=iso(clock())))["effects"]
    # then each login is the first of its business day and earns 2 growth
    assert the_effect(first, "growth.credited")["growth"] == 2
    assert the_effect(second, "growth.credited")["growth"] == 2
    # when they log in again at 10:00 on March 2nd
    clock.advance(hours=10)
    third = send(svc, login("l3", occurred_at=iso(clock())))["effects"]
    # then it is the same business day and earns nothing
    assert effects_of(third, "growth.credited") == []
    entries = growth_entries(svc)
    assert [(e["kind"], e["amount"]) for e in entries] == [("login", 2), ("login", 2)]
    assert [e["reason"]["zh"] for e in entries] == ["2026-03-01 首次登录", "2026-03-02 首次登录"]


def test_every_member_earns_their_own_first_login_of_the_day(svc, clock):
    # given 2 growth for the first login of each business day
    apply(svc, {"growth": {"rules": [{"kind": "login", "id": "daily-login", "points": 2}]}})
    # when two members log in on the same day
    first = send(svc, login("l1", "u1", occurred_at=iso(clock())))["effects"]
    second = send(svc, login("l2", "u2", occurred_at=iso(clock())))["effects"]
    # then each earns their own 2 growth
    assert the_effect(first, "growth.credited")["growth"] == 2
    assert the_effect(second, "growth.credited")["growth"] == 2
    assert [e["amount"] for e in growth_entries(svc, "u2")] == [2]


def test_every_member_earns_profile_completion_growth_once(svc, clock):
    # given 30 growth for completing the profile (name, gender, birthday, region, phone)
    rule = {"kind": "profile_completion", "id": "profile", "points": 30}
    apply(svc, {"growth": {"rules": [rule]}})
    profile = {"gender": "female", "birthday": "1990-05-01", "region": "上海"}
    # when two members register with complete profiles
    for n, member in enumerate(["u1", "u2"]):
        body = registered(f"reg-{member}", member, phone=f"1380013800{n}", **profile)
        body["occurred_at"] = iso(clock())
        effects = send(svc, body)["effects"]
        # then each earns 30 growth
        assert the_effect(effects, "growth.credited")["growth"] == 30
    # and updating a complete profile again earns nothing more
    body = event("upd-1", "member.updated", "u1", occurred_at=iso(clock()), region="北京")
    assert effects_of(send(svc, body)["effects"], "growth.credited") == []
    assert [e["amount"] for e in growth_entries(svc, "u1")] == [30]


def test_the_daily_login_earns_nothing_on_the_lowest_tier_when_so_set(svc, clock):
    # given the JD-like ladder, where registered members earn no daily-login growth
    apply(svc, jd_document())
    # when a registered member logs in, then nothing is earned
    assert (
        effects_of(send(svc, login("l1", occurred_at=iso(clock())))["effects"], "growth.credited")
        == []
    )
    # when they reach bronze and log in the next day, then they earn 2
    order(svc, clock, "o1", 50000)
    clock.advance(days=1)
    effects = send(svc, login("l2", occurred_at=iso(clock())))["effects"]
    assert the_effect(effects, "growth.credited")["growth"] == 2


def test_shares_earn_growth_up_to_the_daily_cap_and_registration_and_sign_in_earn_once(svc, clock):
    # given 1 growth per share (3 a day), 1 per daily sign-in and 50 for registering
    rules = [
        {"kind": "share", "id": "share", "points": 1, "per_day": 3},
        {"kind": "sign_in", "id": "sign-in", "points": 1},
        {"kind": "registration", "id": "welcome", "points": 50},
    ]
    apply(svc, {"growth": {"rules": rules}})
    # when a member registers, signs in twice and shares four times on one day
    send(svc, registered("reg-1", occurred_at=iso(clock())))
    for n in range(2):
        send(svc, event(f"sign-{n}", "member.signed_in", occurred_at=iso(clock())))
    for n in range(4):
        send(svc, event(f"share-{n}", "content.shared", occurred_at=iso(clock())))
    # then registration earns 50, the sign-in 1 once, and shares 3 (the fourth is over the cap)
    kinds = [(e["kind"], e["amount"]) for e in growth_entries(svc)]
    assert kinds == [("registration", 50), ("sign_in", 1)] + [("share", 1)] * 3
    # when the member shares again the next business day, then it earns again
    clock.advance(days=1)
    effects = send(svc, event("share-next", "content.shared", occurred_at=iso(clock())))["effects"]
    assert the_effect(effects, "growth.credited")["growth"] == 1


# ---------------------------------------------------------------- (h) reviews


def review_document():
    """20 growth for a review of an item paid at least ¥20 and not virtual; 20 more for a photo
    review among the first 2 photo reviews of the SKU."""
    return {
        "growth": {
            "rules": [
                {"kind": "review", "id": "review", "points": 20, "min_item_fen": 2000},
                {"kind": "photo_review", "id": "photo-review", "points": 20, "first_n": 2},
            ]
        }
    }


def review(svc, clock, review_id, member="u1", **data):
    body = event(
        f"rv-{review_id}",
        "review.approved",
        member,
        occurred_at=iso(clock()),
        review_id=review_id,
        **data,
    )
    return send(svc, body)["effects"]


def credited(effects):
    return sorted((e["rule_id"], e["growth"]) for e in effects_of(effects, "growth.credited"))


def test_review_growth_needs_an_item_paid_at_least_20_yuan_and_not_virtual(svc, clock):
    # given the review rules, and a member who bought ¥15 socks, a ¥30 book and a ¥50 e-card
    apply(svc, review_document())
    items = [item("socks", 1500), item("book", 3000), item("ecard", 5000, virtual=True)]
    order(svc, clock, "o1", 9500, items=items)
    # when their reviews of the socks and the e-card are approved, then they earn nothing
    assert credited(review(svc, clock, "socks", order_id="o1", sku="socks")) == []
    assert credited(review(svc, clock, "ecard", order_id="o1", sku="ecard")) == []
    # when their review of the book is approved, then it earns 20
    assert credited(review(svc, clock, "book", order_id="o1", sku="book")) == [("review", 20)]
    # and a review naming no order earns nothing either
    assert credited(review(svc, clock, "loose", sku="book")) == []


def test_photo_review_growth_goes_to_the_first_photo_reviews_of_a_sku_and_deletion_takes_it_back(
    svc, clock
):
    # given the review rules (photo growth for the first 2 photo reviews of a SKU)
    apply(svc, review_document())
    buyers = ["u2", "u3", "u4"]
    for buyer in buyers:
        order(svc, clock, f"o-{buyer}", 3000, member=buyer, items=[item("book", 3000)])
    # when three buyers' photo reviews of the book are approved in turn
    earned = [
        credited(review(svc, clock, f"p-{b}", b, order_id=f"o-{b}", sku="book", has_photos=True))
        for b in buyers
    ]
    # then the first two earn review and photo growth, the third only review growth
    both = [("photo-review", 20), ("review", 20)]
    assert earned == [both, both, [("review", 20)]]
    # when the first buyer's review is deleted
    body = event("del-1", "review.deleted", "u2", occurred_at=iso(clock()), review_id="p-u2")
    effects = send(svc, body)["effects"]
    # then the 40 growth it earned is taken back
    assert the_effect(effects, "growth.taken_back")["growth"] == -40
    entries = growth_entries(svc, "u2")
    assert [(e["kind"], e["amount"]) for e in entries] == [
        ("review", 20),
        ("photo_review", 20),
        ("review_deleted", -40),
    ]
    # and the deletion sent again takes nothing more
    body = event("del-2", "review.deleted", "u2", occurred_at=iso(clock()), review_id="p-u2")
    assert effects_of(send(svc, body)["effects"], "growth.taken_back") == []
    assert len(growth_entries(svc, "u2")) == 3
