"""Points rules without a database: what orders and actions earn, when lots expire, which lots a
spend draws, how much a refund takes back and how many points an order may use."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huiyuan.domain import points as dp

SHANGHAI = ZoneInfo("Asia/Shanghai")
PAID_AT = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
NO_HISTORY = dp.History()


def shanghai(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


def line(sku="coat", paid=19900, category="服装", brand="BrandA", virtual=False):
    return dp.Line(sku, category, brand, paid, virtual)


# A ¥299 order: a ¥199 coat of BrandA and a ¥100 scarf of BrandB.
COAT = line()
SCARF = line("scarf", 10000, "配饰", "BrandB")


def order(*lines, store=None, channel="app", paid_at=PAID_AT, number=1, order_id="o1"):
    lines = lines or (COAT, SCARF)
    amount = sum(li.paid_amount for li in lines)
    return dp.OrderView(order_id, store, channel, paid_at, amount, lines, number)


def per_yuan(rule_id="base", points=1, per_fen=100, **kw):
    return dp.PerAmountRule(rule_id, per_fen, points, **kw)


def awards(rules, an_order=None, multipliers=(), tier=None, history=NO_HISTORY):
    return dp.order_awards(rules, multipliers, an_order or order(), tier=tier, history=history)


def points_of(found):
    return {a.rule_id: a.points for a in found}


# ---------------------------------------------------------------- earning on orders


def test_an_order_earns_one_point_per_yuan_paid_with_a_reason_in_both_languages():
    # given a rule of 1 point per ¥1
    # when a member pays ¥299
    found = awards([per_yuan()])
    # then they earn 299 points, and the reason says why in Chinese and English
    assert len(found) == 1
    assert (found[0].rule_id, found[0].points, found[0].funded_by) == ("base", 299, None)
    assert "o1" in found[0].reason_zh and "¥299.00" in found[0].reason_zh
    assert "¥299.00 eligible" in found[0].reason_en


@pytest.mark.parametrize(
    ("rounding", "paid", "expected"),
    [
        ("floor", 1249, 12),
        ("half_up", 1249, 12),
        ("ceiling", 1249, 13),
        ("floor", 1250, 12),
        ("half_up", 1250, 13),
        ("ceiling", 1250, 13),
        ("floor", 1200, 12),
        ("ceiling", 1200, 12),
    ],
)
def test_pro_rata_points_are_rounded_as_the_rule_says(rounding, paid, expected):
    # given 1 point per ¥1, rounded as stated
    rule = per_yuan(rounding=rounding)
    # when an order of ¥12.49 / ¥12.50 / ¥12.00 is paid
    found = awards([rule], order(line(paid=paid)))
    # then the fraction of a point is rounded that way
    assert points_of(found) == {"base": expected}


def test_points_per_amount_can_be_several_points_per_several_yuan():
    # given 3 points for every ¥10 (floor)
    rule = per_yuan(points=3, per_fen=1000)
    # when ¥299 is paid: 29.9 × 3 = 89.7
    # then 89 points are earned
    assert points_of(awards([rule])) == {"base": 89}


def test_a_threshold_bonus_needs_the_eligible_amount_to_reach_it():
    # given a bonus of 50 points for orders of ¥200 or more
    rule = dp.ThresholdRule("big", 20000, 50)
    # when orders of ¥299 and of ¥199 are paid
    # then only the first earns it
    assert points_of(awards([rule])) == {"big": 50}
    assert awards([rule], order(COAT)) == []
    # and exactly ¥200 reaches it
    assert points_of(awards([rule], order(line(paid=20000)))) == {"big": 50}


def test_category_brand_and_sku_conditions_count_only_the_matching_lines():
    # given rules for clothing, for BrandB, and for the coat's sku, each 1 point per ¥1
    rules = [
        per_yuan("clothes", conditions=dp.Conditions(categories=frozenset({"服装"}))),
        per_yuan("brand_b", conditions=dp.Conditions(brands=frozenset({"BrandB"}))),
        per_yuan("coat_sku", conditions=dp.Conditions(skus=frozenset({"coat"}))),
        per_yuan("shoes", conditions=dp.Conditions(categories=frozenset({"鞋"}))),
    ]
    # when the ¥199 coat and the ¥100 scarf are paid
    found = awards(rules)
    # then each rule counts only its lines, and a rule matching nothing earns nothing
    assert points_of(found) == {"clothes": 199, "brand_b": 100, "coat_sku": 199}


def test_virtual_goods_earn_nothing_unless_the_rule_includes_them():
    # given an order of the ¥199 coat and a ¥50 virtual gift card
    gift_card = line("card", 5000, "虚拟", "Card", virtual=True)
    paid = order(COAT, gift_card)
    # when it is judged by a rule excluding virtual goods (the default) and one including them
    rules = [per_yuan("default"), per_yuan("all", conditions=dp.Conditions(exclude_virtual=False))]
    # then the gift card counts only for the second
    assert points_of(awards(rules, paid)) == {"default": 199, "all": 249}


def test_store_conditions_tell_the_platforms_own_orders_from_a_stores():
    # given a rule for the platform's own orders and one for store s1's
    rules = [
        per_yuan("own", conditions=dp.Conditions(stores=frozenset({"platform"}))),
        per_yuan("s1", conditions=dp.Conditions(stores=frozenset({"s1"}))),
    ]
    # when an order without a store and one of s1 and one of s2 are paid
    # then each earns under its own rule only
    assert points_of(awards(rules, order())) == {"own": 299}
    assert points_of(awards(rules, order(store="s1"))) == {"s1": 299}
    assert awards(rules, order(store="s2")) == []


def test_channel_and_tier_conditions():
    # given a rule for the mini program and one for gold members
    rules = [
        per_yuan("mini", conditions=dp.Conditions(channels=frozenset({"mini_program"}))),
        per_yuan("gold", conditions=dp.Conditions(tiers=frozenset({"gold"}))),
    ]
    # then an app order of a silver member earns under neither, a mini-program order of a gold
    # member under both
    assert awards(rules, order(channel="app"), tier="silver") == []
    found = awards(rules, order(channel="mini_program"), tier="gold")
    assert points_of(found) == {"mini": 299, "gold": 299}
    # and an order with no channel does not match a channel condition
    assert points_of(awards(rules, order(channel=None), tier="gold")) == {"gold": 299}


def test_a_date_window_includes_its_start_and_excludes_its_end():
    # given a rule for double-eleven week (Nov 11 00:00 to Nov 18 00:00 Shanghai)
    start, end = shanghai(2026, 11, 11), shanghai(2026, 11, 18)
    rule = per_yuan("d11", conditions=dp.Conditions(starts_at=start, ends_at=end))
    # then orders paid at its first instant and its last second earn, one just before or at its
    # end do not
    assert points_of(awards([rule], order(paid_at=start))) == {"d11": 299}
    last = end - timedelta(seconds=1)
    assert points_of(awards([rule], order(paid_at=last))) == {"d11": 299}
    assert awards([rule], order(paid_at=start - timedelta(seconds=1))) == []
    assert awards([rule], order(paid_at=end)) == []


def test_a_first_orders_rule_applies_to_the_members_first_n_orders_only():
    # given a welcome rule for a member's first 2 orders
    rule = per_yuan("welcome", points=2, conditions=dp.Conditions(first_n_orders=2))
    # then their first and second orders earn double, the third nothing
    assert points_of(awards([rule], order(number=1))) == {"welcome": 598}
    assert points_of(awards([rule], order(number=2))) == {"welcome": 598}
    assert awards([rule], order(number=3)) == []


def test_multipliers_that_apply_multiply_one_another_and_the_rules_own():
    # given a rule of 1 point per ¥1 with its own ×1.5, a ×2 tier multiplier for gold, a ×3
    # campaign multiplier for the app, and a ×10 multiplier for the mini program only
    rule = per_yuan(multiplier=Decimal("1.5"))
    multipliers = [
        dp.Multiplier("gold_x2", Decimal(2), dp.Conditions(tiers=frozenset({"gold"}))),
        dp.Multiplier("app_x3", Decimal(3), dp.Conditions(channels=frozenset({"app"}))),
        dp.Multiplier("mini_x10", Decimal(10), dp.Conditions(channels=frozenset({"mini_program"}))),
    ]
    # when a gold member pays ¥299 in the app
    found = awards([rule], order(), multipliers, tier="gold")
    # then 299 × 1.5 × 2 × 3 = 2691 points, and the reason names the multipliers that applied
    assert points_of(found) == {"base": 2691}
    assert "gold_x2×2" in found[0].reason_en and "app_x3×3" in found[0].reason_en
    assert "mini_x10" not in found[0].reason_en
    # and for a silver member only the campaign applies: 299 × 1.5 × 3 = 1345.5, floored
    assert points_of(awards([rule], order(), multipliers, tier="silver")) == {"base": 1345}


def test_a_multiplier_does_not_multiply_a_threshold_bonus():
    # given a ¥200 threshold bonus of 50 points and a ×10 multiplier
    rule = dp.ThresholdRule("big", 20000, 50)
    multiplier = dp.Multiplier("x10", Decimal(10))
    # then the bonus stays 50 (a fixed bonus, not a rate)
    assert points_of(awards([rule], multipliers=[multiplier])) == {"big": 50}


def test_caps_per_order_per_day_and_per_month_each_limit_the_award():
    # given 1 point per ¥1 capped at 200 an order, 250 a day and 1000 a month
    caps = dp.Caps(per_order=200, per_day=250, per_month=1000)
    rule = per_yuan(caps=caps)
    # when a fresh member pays ¥299: the per-order cap
    assert points_of(awards([rule])) == {"base": 200}
    # when they earned 100 today already: the day has 150 left
    today = dp.History(today={"base": 100}, this_month={"base": 100})
    assert points_of(awards([rule], history=today)) == {"base": 150}
    # when they earned 950 this month (none today): the month has 50 left
    month = dp.History(today={}, this_month={"base": 950})
    assert points_of(awards([rule], history=month)) == {"base": 50}
    # when the day is used up: nothing, and no zero award either
    assert awards([rule], history=dp.History(today={"base": 250}, this_month={"base": 250})) == []
    # and another rule's history does not count against this one
    other = dp.History(today={"other": 1000}, this_month={"other": 1000})
    assert points_of(awards([rule], history=other)) == {"base": 200}


def test_a_rule_funded_by_a_store_says_so_on_its_award():
    rule = per_yuan("s1_promo", funded_by="s1")
    assert [a.funded_by for a in awards([rule], order(store="s1"))] == ["s1"]


def test_capped_never_goes_below_zero():
    caps = dp.Caps(per_day=10)
    assert dp.capped("r", 50, caps, dp.History(today={"r": 30})) == 0
    assert dp.capped("r", 50, dp.Caps(), NO_HISTORY) == 50


# ---------------------------------------------------------------- earning on actions


def sign_in_rule(**kw):
    return dp.FixedRule("daily", dp.Trigger.SIGN_IN, 5, **kw)


def act(rules, trigger=dp.Trigger.SIGN_IN, *, channel="app", store=None, history=NO_HISTORY):
    return dp.action_awards(
        rules, trigger, at=PAID_AT, store=store, channel=channel, tier=None, history=history
    )


def test_an_action_earns_the_fixed_points_of_the_rules_for_its_trigger():
    # given 5 points a sign-in, 10 for a review and 20 for a photo review
    rules = [
        sign_in_rule(),
        dp.FixedRule("review", dp.Trigger.REVIEW, 10),
        dp.FixedRule("photo", dp.Trigger.PHOTO_REVIEW, 20),
    ]
    # when a member signs in, then writes a review
    # then each earns only its own rule, with the reason in both languages
    signed = act(rules)
    assert [(a.rule_id, a.points, a.reason_zh, a.reason_en) for a in signed] == [
        ("daily", 5, "签到奖励", "sign-in bonus")
    ]
    assert points_of(act(rules, dp.Trigger.REVIEW)) == {"review": 10}
    assert act(rules, dp.Trigger.SHARE) == []


def test_an_action_rule_respects_its_channel_store_and_daily_cap():
    # given 5 points a sign-in in the mini program, at most 5 a day
    rule = sign_in_rule(
        conditions=dp.Conditions(channels=frozenset({"mini_program"})), caps=dp.Caps(per_day=5)
    )
    # then an app sign-in earns nothing, a mini-program one 5, and a second one that day nothing
    assert act([rule], channel="app") == []
    assert points_of(act([rule], channel="mini_program")) == {"daily": 5}
    used = dp.History(today={"daily": 5}, this_month={"daily": 5})
    assert act([rule], channel="mini_program", history=used) == []
    # and a rule for store s1's shares applies to s1's events only
    share = dp.FixedRule(
        "s1_share", dp.Trigger.SHARE, 3, conditions=dp.Conditions(stores=frozenset({"s1"}))
    )
    assert act([share], dp.Trigger.SHARE) == []
    assert points_of(act([share], dp.Trigger.SHARE, store="s1")) == {"s1_share": 3}


# ---------------------------------------------------------------- expiry


def test_rolling_expiry_is_the_end_of_the_business_day_n_days_after_release():
    # given points expiring 365 days after release
    policy = dp.ExpiryPolicy("rolling", days=365)
    # when points are released on 2026-03-01 at 10:00 Shanghai
    expiry = dp.expires_at(policy, PAID_AT, SHANGHAI)
    # then they expire at the end of 2027-03-01 Shanghai, i.e. 16:00 UTC that day
    assert expiry == shanghai(2027, 3, 2)
    assert expiry == datetime(2027, 3, 1, 16, 0, tzinfo=UTC)


def test_rolling_expiry_counts_from_the_shanghai_date_not_the_utc_date():
    # given points released at 2026-03-01 23:30 Shanghai (still Mar 1st, 15:30 UTC) and at
    # 2026-03-02 00:30 Shanghai (Mar 1st 16:30 in UTC, but Mar 2nd in Shanghai)
    policy = dp.ExpiryPolicy("rolling", days=30)
    late = shanghai(2026, 3, 1, 23, 30).astimezone(UTC)
    early = shanghai(2026, 3, 2, 0, 30).astimezone(UTC)
    assert late.date() == early.date()
    # then they expire on different days
    assert dp.expires_at(policy, late, SHANGHAI) == shanghai(2026, 4, 1)
    assert dp.expires_at(policy, early, SHANGHAI) == shanghai(2026, 4, 2)


def test_calendar_expiry_points_of_2026_expire_at_the_end_of_2027():
    # given "points released in a year expire at the end of the next year" (Asia/Shanghai)
    policy = dp.ExpiryPolicy("calendar", years_after=1, month=12, day=31)
    # when points are released in March 2026
    # then they expire at the end of 2027-12-31 Shanghai, 16:00 UTC that day
    end_of_2027 = datetime(2027, 12, 31, 16, 0, tzinfo=UTC)
    assert dp.expires_at(policy, PAID_AT, SHANGHAI) == end_of_2027


def test_calendar_expiry_goes_by_the_shanghai_year_across_the_year_boundary():
    policy = dp.ExpiryPolicy("calendar", years_after=1, month=12, day=31)
    # given a release at 2026-12-31 23:30 Shanghai = 2026-12-31 15:30 UTC
    late_2026 = datetime(2026, 12, 31, 15, 30, tzinfo=UTC)
    assert late_2026.astimezone(SHANGHAI) == shanghai(2026, 12, 31, 23, 30)
    # then it is a 2026 release, expiring at the end of 2027-12-31 Shanghai
    assert dp.expires_at(policy, late_2026, SHANGHAI) == datetime(2027, 12, 31, 16, 0, tzinfo=UTC)
    # given a release at 2027-01-01 00:10 Shanghai = 2026-12-31 16:10 UTC (still 2026 in UTC)
    early_2027 = datetime(2026, 12, 31, 16, 10, tzinfo=UTC)
    assert early_2027.astimezone(SHANGHAI) == shanghai(2027, 1, 1, 0, 10)
    # then it is a 2027 release, expiring at the end of 2028-12-31 Shanghai
    assert dp.expires_at(policy, early_2027, SHANGHAI) == datetime(2028, 12, 31, 16, 0, tzinfo=UTC)


def test_calendar_expiry_on_a_day_the_month_lacks_falls_on_its_last_day():
    # given points expiring on "Feb 31st" of the next year (i.e. the end of February)
    policy = dp.ExpiryPolicy("calendar", years_after=1, month=2, day=31)
    # then 2026's points end with Feb 28th 2027, 2027's with Feb 29th 2028 (a leap year)
    assert dp.expires_at(policy, PAID_AT, SHANGHAI) == shanghai(2027, 3, 1)
    in_2027 = shanghai(2027, 6, 1).astimezone(UTC)
    assert dp.expires_at(policy, in_2027, SHANGHAI) == shanghai(2028, 3, 1)


def test_calendar_expiry_in_the_same_year_and_never_expiring_points():
    same_year = dp.ExpiryPolicy("calendar", years_after=0, month=12, day=31)
    assert dp.expires_at(same_year, PAID_AT, SHANGHAI) == shanghai(2027, 1, 1)
    assert dp.expires_at(dp.ExpiryPolicy("never"), PAID_AT, SHANGHAI) is None


# ---------------------------------------------------------------- spending


def lot(lot_id, remaining, expires=None):
    return dp.LotBalance(lot_id, remaining, expires)


def test_a_spend_draws_the_lots_expiring_first_and_never_expiring_lots_last():
    # given a never-expiring lot of 100, one of 50 expiring in 2027 and one of 30 expiring in
    # 2026, listed in that order
    lots = [lot(1, 100), lot(2, 50, shanghai(2027, 12, 31)), lot(3, 30, shanghai(2026, 12, 31))]
    # when 120 points are spent
    # then the 2026 lot goes first, then the 2027 lot, then 40 of the never-expiring one
    assert dp.plan_draws(lots, 120) == [(3, 30), (2, 50), (1, 40)]


def test_lots_expiring_together_are_drawn_in_the_order_they_were_credited():
    same = shanghai(2027, 1, 1)
    lots = [lot(9, 10, same), lot(4, 10, same), lot(7, 10, same)]
    assert dp.plan_draws(lots, 25) == [(4, 10), (7, 10), (9, 5)]


def test_a_spend_takes_no_more_than_the_lots_hold_and_skips_empty_lots():
    lots = [lot(1, 0, shanghai(2026, 6, 1)), lot(2, 30, shanghai(2026, 7, 1))]
    assert dp.plan_draws(lots, 50) == [(2, 30)]
    assert dp.plan_draws(lots, 0) == []
    with pytest.raises(ValueError, match="positive"):
        dp.plan_draws(lots, -1)


@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.one_of(st.none(), st.integers(0, 1000))),
        max_size=8,
    ),
    st.integers(0, 3000),
)
def test_a_spend_plan_never_overdraws_a_lot_and_takes_what_it_can(raw, amount):
    base = datetime(2026, 1, 1, tzinfo=UTC)
    lots = [
        lot(i, rem, None if days is None else base + timedelta(days=days))
        for i, (rem, days) in enumerate(raw)
    ]
    plan = dp.plan_draws(lots, amount)
    held = {x.lot_id: x.remaining for x in lots}
    assert all(0 < take <= held[lot_id] for lot_id, take in plan)
    assert len({lot_id for lot_id, _ in plan}) == len(plan)
    assert sum(take for _, take in plan) == min(amount, sum(held.values()))


# ---------------------------------------------------------------- refunds


def test_a_partial_refund_takes_back_points_in_proportion():
    # given 299 points earned on a ¥299 order
    # when ¥100 of it is refunded
    # then 100 points are taken back; after a further ¥99, 199 in all
    assert dp.clawback_due(299, 0, 10000, 29900) == 100
    assert dp.clawback_due(299, 100, 19900, 29900) == 99
    # and the last fen of the refund takes back whatever is left
    assert dp.clawback_due(299, 199, 29900, 29900) == 100


def test_rounding_of_a_clawback_is_down_until_the_order_is_fully_refunded():
    # given 10 points on a ¥3 order, refunded ¥1 at a time
    assert dp.clawback_due(10, 0, 100, 300) == 3
    assert dp.clawback_due(10, 3, 200, 300) == 3
    assert dp.clawback_due(10, 6, 300, 300) == 4


def test_a_refund_of_a_free_order_takes_back_what_it_earned():
    assert dp.clawback_due(5, 0, 0, 0) == 0
    assert dp.clawback_due(5, 0, 1, 0) == 5
    assert dp.clawback_due(5, 5, 1, 0) == 0


@st.composite
def refunds_of_an_order(draw):
    paid = draw(st.integers(1, 10_000_000))
    earned = draw(st.integers(0, 1_000_000))
    refunds = []
    left = paid
    for _ in range(draw(st.integers(0, 12))):
        if left == 0:
            break
        amount = draw(st.integers(1, left))
        refunds.append(amount)
        left -= amount
    if draw(st.booleans()) and left:
        refunds.append(left)  # often refund the order in full at the end
    return earned, paid, refunds


@given(refunds_of_an_order())
def test_partial_refunds_never_take_back_more_than_was_earned(case):
    # given points earned on an order
    earned, paid, refunds = case
    taken = refunded = 0
    # when any sequence of partial refunds arrives
    for amount in refunds:
        refunded += amount
        due = dp.clawback_due(earned, taken, refunded, paid)
        assert due >= 0
        taken += due
        # then the total taken back is the rounded-down share of what was refunded so far
        assert taken == (earned if refunded == paid else earned * refunded // paid)
        assert taken <= earned
    # and exactly what was earned once the order is fully refunded
    if refunded == paid:
        assert taken == earned


@given(refunds_of_an_order())
def test_a_clawback_replayed_after_it_was_taken_takes_nothing_more(case):
    earned, paid, refunds = case
    refunded = sum(refunds)
    taken = dp.clawback_due(earned, 0, refunded, paid)
    assert dp.clawback_due(earned, taken, refunded, paid) == 0


# ---------------------------------------------------------------- deduction at checkout


@pytest.mark.parametrize(
    ("policy", "order_amount", "expected"),
    [
        (dp.RedemptionPolicy(), 29900, 14950),  # 1 point = 1 fen, at most half: ¥149.50
        (dp.RedemptionPolicy(min_unit=100), 29900, 14900),  # in hundreds of points
        (dp.RedemptionPolicy(fen_per_point=10, min_unit=100), 29900, 1400),  # 1 point = 1 jiao
        (dp.RedemptionPolicy(max_order_share=Decimal("0.1")), 29999, 2999),  # floor of ¥29.999
        (dp.RedemptionPolicy(max_order_share=Decimal(1)), 100, 100),
        (dp.RedemptionPolicy(fen_per_point=100, min_unit=1), 199, 0),  # less than a point
    ],
)
def test_the_most_points_an_order_may_use(policy, order_amount, expected):
    assert dp.max_deduction_points(policy, order_amount) == expected


@given(
    st.integers(1, 1000),
    st.integers(1, 1000),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1), places=2),
    st.integers(0, 10**9),
)
def test_a_deduction_is_worth_no_more_than_the_share_in_whole_units(fen, unit, share, amount):
    policy = dp.RedemptionPolicy(fen, unit, share)
    points = dp.max_deduction_points(policy, amount)
    assert points >= 0
    assert points % unit == 0
    assert points * fen <= amount * share
