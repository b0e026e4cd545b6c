"""Paid-membership rules without a database: calendar months in the business zone, chains of
terms, refund windows, overlapping benefits and the savings maths."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huiyuan.domain import membership as dm
from huiyuan.domain.errors import DomainError, MembershipError

SHANGHAI = ZoneInfo("Asia/Shanghai")


def sh(year, month, day, hour=10, minute=0):
    """An instant given in Shanghai time, as UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


def local(moment):
    return moment.astimezone(SHANGHAI).replace(tzinfo=None)


# ---------------------------------------------------------------- calendar months


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        ((2026, 1, 31), 1, (2026, 2, 28)),  # clamped to the month's end
        ((2028, 1, 31), 1, (2028, 2, 29)),  # a leap year
        ((2026, 1, 15), 1, (2026, 2, 15)),
        ((2026, 11, 30), 3, (2027, 2, 28)),  # quarterly across the year end
        ((2028, 2, 29), 12, (2029, 2, 28)),  # annual from a leap day
        ((2026, 3, 31), -1, (2026, 2, 28)),  # back a month (the savings window)
        ((2026, 5, 31), 1, (2026, 6, 30)),
    ],
)
def test_months_are_calendar_months_with_the_month_end_clamped(start, months, end):
    moment = sh(*start)
    assert local(dm.add_months(moment, months, SHANGHAI)) == datetime(*end, 10, 0)


def test_months_count_in_the_business_zone_not_in_utc():
    # given 2026-01-31 20:00 UTC, which is already 2026-02-01 04:00 in Shanghai
    moment = datetime(2026, 1, 31, 20, 0, tzinfo=UTC)
    # then a month later is 2026-03-01 04:00 Shanghai (UTC would have clamped to Feb 28)
    assert local(dm.add_months(moment, 1, SHANGHAI)) == datetime(2026, 3, 1, 4, 0)
    assert dm.add_months(moment, 1, SHANGHAI).tzinfo == UTC


def test_a_trial_counts_calendar_days():
    assert local(dm.Length(days=7).after(sh(2026, 2, 25), SHANGHAI)) == datetime(2026, 3, 4, 10)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31)),
    st.integers(min_value=-240, max_value=240),
)
def test_adding_months_lands_in_the_right_month_never_past_its_end(naive, months):
    start = naive.replace(tzinfo=SHANGHAI)
    end = local(dm.add_months(start, months, SHANGHAI))
    index = start.year * 12 + start.month - 1 + months
    assert (end.year, end.month) == (index // 12, index % 12 + 1)
    assert end.day <= start.day
    assert end.time() == start.time().replace(tzinfo=None)


# ---------------------------------------------------------------- chains


def term(purchase_id, starts, ends, plan_id="plus", **kw):
    return dm.Term(purchase_id, plan_id, starts, ends, purchased_at=kw.pop("bought", starts), **kw)


ANNUAL = dm.Length.of_period("annual")
MONTHLY = dm.Length.of_period("monthly")


def test_a_first_purchase_starts_at_once():
    bought = sh(2026, 3, 1)
    assert dm.place([], bought, ANNUAL, SHANGHAI) == (bought, sh(2027, 3, 1))


def test_buying_annual_twice_extends_from_the_current_end_to_two_years():
    first = term("p1", sh(2026, 3, 1), sh(2027, 3, 1))
    starts, ends = dm.place([first], sh(2026, 3, 2), ANNUAL, SHANGHAI)
    assert (starts, ends) == (sh(2027, 3, 1), sh(2028, 3, 1))
    # and a third purchase queues after the second
    second = term("p2", starts, ends)
    assert dm.place([first, second], sh(2026, 3, 3), ANNUAL, SHANGHAI)[0] == sh(2028, 3, 1)
    assert dm.chain_end([first, second], sh(2026, 6, 1)) == sh(2028, 3, 1)


def test_a_monthly_chain_counts_each_term_from_the_last_end_so_clamping_carries():
    # Jan 31 → Feb 28 → Mar 28: each term is one month from where the chain ends
    terms: list[dm.Term] = []
    bought = sh(2026, 1, 31)
    for index in range(3):
        starts, ends = dm.place(terms, bought, MONTHLY, SHANGHAI)
        terms.append(term(f"p{index}", starts, ends, bought=bought))
    assert [local(t.ends_at).date().isoformat() for t in terms] == [
        "2026-02-28",
        "2026-03-28",
        "2026-04-28",
    ]


def test_switching_plans_queues_the_new_plan_after_the_current_end():
    monthly = term("p1", sh(2026, 3, 1), sh(2026, 4, 1), plan_id="plus_monthly")
    starts, ends = dm.place([monthly], sh(2026, 3, 10), ANNUAL, SHANGHAI)
    assert (starts, ends) == (sh(2026, 4, 1), sh(2027, 4, 1))
    annual = term("p2", starts, ends, plan_id="plus_annual", bought=sh(2026, 3, 10))
    # the monthly plan gives the benefits until its end, the annual one from then
    assert dm.in_force([monthly, annual], sh(2026, 3, 31)).plan_id == "plus_monthly"
    assert dm.in_force([monthly, annual], sh(2026, 4, 1)).plan_id == "plus_annual"


def test_refunded_and_ended_terms_do_not_extend_a_chain():
    refunded = term("p1", sh(2026, 3, 1), sh(2027, 3, 1), status=dm.REFUNDED)
    ended = term("p0", sh(2025, 1, 1), sh(2026, 1, 1), status=dm.EXPIRED)
    bought = sh(2026, 3, 5)
    assert dm.place([ended, refunded], bought, ANNUAL, SHANGHAI)[0] == bought
    assert dm.in_force([refunded], sh(2026, 4, 1)) is None
    assert dm.latest([ended, refunded]) == ended


# ---------------------------------------------------------------- trials


def test_a_trial_is_a_priced_plan_with_trial_days_bought_at_zero():
    assert dm.is_trial(plan_price_fen=9900, trial_days=7, amount=0)
    assert not dm.is_trial(plan_price_fen=9900, trial_days=0, amount=0)
    assert not dm.is_trial(plan_price_fen=9900, trial_days=7, amount=9900)
    assert not dm.is_trial(plan_price_fen=0, trial_days=7, amount=0)  # a free plan


def test_a_trial_comes_once_per_plan_and_not_beside_a_running_membership():
    tried = term("t1", sh(2026, 1, 1), sh(2026, 1, 8), price_fen=0, status=dm.EXPIRED)
    with pytest.raises(DomainError) as refused:
        dm.check_trial([tried], "plus", sh(2026, 3, 1))
    assert refused.value.code is MembershipError.TRIAL_USED
    dm.check_trial([tried], "other_plan", sh(2026, 3, 1))
    paying = term("p1", sh(2026, 2, 1), sh(2027, 2, 1), plan_id="other_plan", price_fen=9900)
    with pytest.raises(DomainError) as refused:
        dm.check_trial([paying], "plus", sh(2026, 3, 1))
    assert refused.value.code is MembershipError.TRIAL_WHILE_ACTIVE


# ---------------------------------------------------------------- refunds

BOUGHT = sh(2026, 3, 1)
PLUS = term("p1", BOUGHT, sh(2027, 3, 1), price_fen=9900)


def refund_code(target, terms, at, window_days=7, only_if_unused=True):
    try:
        dm.check_refund(target, terms, at, window_days=window_days, only_if_unused=only_if_unused)
    except DomainError as error:
        assert error.field == "data.purchase_id"
        return error.code
    return None


@pytest.mark.parametrize(
    ("after", "code"),
    [
        (timedelta(days=3), None),
        (timedelta(days=7), None),  # the 7th day's last instant still counts
        (timedelta(days=7, seconds=1), MembershipError.REFUND_WINDOW_PASSED),
        (timedelta(days=30), MembershipError.REFUND_WINDOW_PASSED),
    ],
)
def test_a_refund_comes_within_the_window_of_the_purchase(after, code):
    assert refund_code(PLUS, [PLUS], BOUGHT + after) == code


def test_a_zero_day_window_allows_no_refund_after_the_purchase_instant():
    assert refund_code(PLUS, [PLUS], BOUGHT, window_days=0) is None
    assert refund_code(PLUS, [PLUS], BOUGHT + timedelta(seconds=1), window_days=0) == (
        MembershipError.REFUND_WINDOW_PASSED
    )


def test_a_used_membership_is_refunded_only_where_the_plan_allows_it():
    used = dm.Term("p1", "plus", BOUGHT, sh(2027, 3, 1), purchased_at=BOUGHT, benefit_used=True)
    at = BOUGHT + timedelta(days=2)
    assert refund_code(used, [used], at) == MembershipError.BENEFIT_USED
    assert refund_code(used, [used], at, only_if_unused=False) is None


def test_only_the_latest_term_of_a_chain_is_refunded():
    # given PLUS annual bought twice: the second term runs 2027-03-01 → 2028-03-01
    second = term("p2", sh(2027, 3, 1), sh(2028, 3, 1), bought=BOUGHT + timedelta(days=1))
    chain = [PLUS, second]
    at = BOUGHT + timedelta(days=2)
    # then the first term cannot be refunded (it would leave a hole), the second can
    assert refund_code(PLUS, chain, at) == MembershipError.NOT_LATEST
    assert refund_code(second, chain, at) is None
    # and once the second is refunded, the first is the latest again
    refunded = dm.Term(
        "p2", "plus", second.starts_at, second.ends_at, status=dm.REFUNDED, purchased_at=at
    )
    assert refund_code(refunded, [PLUS, refunded], at) == MembershipError.ALREADY_REFUNDED
    assert refund_code(PLUS, [PLUS, refunded], at) is None


def test_an_ended_term_is_not_refunded():
    short = term("p1", BOUGHT, BOUGHT + timedelta(days=3))
    assert refund_code(short, [short], BOUGHT + timedelta(days=4)) == MembershipError.ENDED
    expired = term("p1", BOUGHT, sh(2027, 3, 1), status=dm.EXPIRED)
    assert refund_code(expired, [expired], BOUGHT) == MembershipError.ENDED


# ---------------------------------------------------------------- benefits


def benefit(benefit_id, kind, source="plan:plus", **kw):
    for name in ("skus", "categories"):
        if name in kw:
            kw[name] = frozenset(kw[name])
    return dm.Benefit(benefit_id, kind, source, **kw)


TIER_OFF = benefit("gold_off", "percent_discount", "tier:gold", percent_off=Decimal(5))
TIER_X = benefit("gold_x", "points_multiplier", "tier:gold", multiplier=Decimal("1.5"))
TIER_SHIP = benefit("gold_ship", "free_shipping", "tier:gold", monthly_quota=1)
PLUS_OFF = benefit("plus_off", "percent_discount", percent_off=Decimal(10))
PLUS_X = benefit("plus_x", "points_multiplier", multiplier=Decimal(2))
PLUS_SHIP = benefit("plus_ship", "free_shipping", monthly_quota=3)
TIER = [TIER_OFF, TIER_X, TIER_SHIP]
BOTH = [*TIER, PLUS_OFF, PLUS_X, PLUS_SHIP]


def test_overlapping_benefits_the_larger_wins_under_max():
    total = dm.effective(BOTH, "max")
    assert (total.percent_off, total.multiplier) == (Decimal(10), Decimal(2))
    assert (total.free_shipping, total.shipping_quota) == (True, 3)
    assert dm.superseded_by(BOTH, "max") == {
        "gold_off": "plus_off",
        "gold_x": "plus_x",
        "gold_ship": "plus_ship",
        "plus_off": None,
        "plus_x": None,
        "plus_ship": None,
    }


def test_multipliers_multiply_under_multiply_but_discounts_never_stack():
    total = dm.effective(BOTH, "multiply")
    assert (total.percent_off, total.multiplier) == (Decimal(10), Decimal(3))
    assert dm.superseded_by(BOTH, "multiply")["gold_x"] is None


def test_a_benefit_named_by_tier_and_plan_counts_once():
    again = benefit("gold_x", "points_multiplier", multiplier=Decimal("1.5"))
    assert dm.multiplier([TIER_X, again], "multiply") == Decimal("1.5")


def test_no_benefits_means_no_discount_no_multiplier_no_free_shipping():
    total = dm.effective([], "max")
    assert (total.percent_off, total.multiplier, total.free_shipping) == (0, 1, False)
    assert total.shipping_quota == 0


def test_free_shipping_without_a_quota_is_unlimited_and_wins():
    unlimited = benefit("ship_all", "free_shipping")
    assert dm.shipping_quota([PLUS_SHIP, unlimited]) is None
    assert dm.effective([PLUS_SHIP, unlimited], "max").free_shipping


def test_a_scoped_discount_applies_to_its_categories_only_and_loses_to_a_larger_general_one():
    food = benefit("food_off", "percent_discount", percent_off=Decimal(15), categories={"food"})
    assert dm.percent_off([TIER_OFF, food], "sku1", "food") == Decimal(15)
    assert dm.percent_off([TIER_OFF, food], "sku1", "toys") == Decimal(5)
    assert dm.effective([TIER_OFF, food], "max").percent_off == Decimal(5)
    small = benefit("food_3", "percent_discount", percent_off=Decimal(3), categories={"food"})
    assert dm.superseded_by([TIER_OFF, food, small], "max") == {
        "gold_off": None,
        "food_off": None,
        "food_3": "food_off",
    }


# ---------------------------------------------------------------- savings maths


def test_the_extra_discount_counts_from_what_was_paid_at_the_tier_discount():
    # ¥95 paid at 5% off was ¥100 before it; 10% off would have been ¥90: ¥5 more saved
    assert dm.extra_discount(9500, Decimal(5), Decimal(10)) == 500
    assert dm.extra_discount(9500, Decimal(10), Decimal(5)) == 0
    assert dm.extra_discount(333, Decimal(0), Decimal(5)) == 17  # 16.65 rounds half up
    assert dm.extra_discount(330, Decimal(0), Decimal(5)) == 17  # 16.5 rounds half up
    assert dm.extra_discount(0, Decimal(0), Decimal(5)) == 0


def order(order_id, paid_at, lines, shipping_fee=0, points=None):
    lines = tuple(dm.SavingsLine(sku, category, paid) for sku, category, paid in lines)
    total = sum(line.paid_fen for line in lines)
    return dm.SavingsOrder(
        order_id, paid_at, shipping_fee, total // 100 if points is None else points, lines
    )


def estimate(orders, before, after, overlap="max", value=1):
    return dm.estimate(orders, before, after, overlap=overlap, point_value_fen=value, zone=SHANGHAI)


def test_extra_points_are_the_rise_of_the_multiplier_on_the_orders_points():
    one = order("o1", sh(2026, 1, 10), [("rice", "food", 19000)])  # 190 points
    assert estimate([one], TIER, BOTH).extra_points == 95  # 190 × (2 − 1.5)
    assert estimate([one], TIER, BOTH, overlap="multiply").extra_points == 285  # × (3 − 1.5)
    assert estimate([one], [], [PLUS_X], value=2).points_fen == 380  # 190 extra, 2 fen each


def test_a_scoped_multiplier_rises_on_its_lines_share_of_the_points_rounded_down():
    food_x = benefit("food_x", "points_multiplier", multiplier=Decimal(3), categories={"food"})
    # 101 points over ¥70 of food and ¥31 of toys: 101 × 70/101 × 2 = 140 extra
    mixed = order("o1", sh(2026, 1, 10), [("rice", "food", 7000), ("car", "toys", 3100)])
    assert estimate([mixed], [], [food_x]).extra_points == 140
    # 7 points over ¥1 of food and ¥2 of toys: 7 × 1/3 × 2 = 4.67 → 4
    small = order("o2", sh(2026, 1, 10), [("rice", "food", 100), ("car", "toys", 200)], points=7)
    assert estimate([small], [], [food_x]).extra_points == 4


def test_free_shipping_covers_the_earliest_orders_with_a_fee_in_each_business_month():
    orders = [
        order("o1", sh(2026, 1, 5), [("a", None, 1000)], shipping_fee=800),
        order("o2", sh(2026, 1, 6), [("a", None, 1000)], shipping_fee=0),  # nothing to save
        order("o3", sh(2026, 1, 7), [("a", None, 1000)], shipping_fee=600),
        order("o4", sh(2026, 1, 9), [("a", None, 1000)], shipping_fee=500),
        # 2026-01-31 17:00 UTC is 2026-02-01 01:00 in Shanghai: February's quota
        order(
            "o5", datetime(2026, 1, 31, 17, 0, tzinfo=UTC), [("a", None, 1000)], shipping_fee=700
        ),
    ]
    only_plus = estimate(orders, [], [PLUS_SHIP])  # 3 a month
    assert (only_plus.shipping_fen, only_plus.free_shipping_orders) == (2600, 4)
    two = benefit("ship_2", "free_shipping", monthly_quota=2)
    assert estimate(orders, [], [two]).shipping_fen == 800 + 600 + 700
    # with the tier's 1 a month already used (those orders show no fee), 3 − 1 more ship free
    beside_tier = estimate(orders, [TIER_SHIP], [TIER_SHIP, PLUS_SHIP])
    assert beside_tier.shipping_fen == 800 + 600 + 700
    assert estimate(orders, [], [benefit("all", "free_shipping")]).shipping_fen == 2600
    assert estimate(orders, [benefit("all", "free_shipping")], BOTH).shipping_fen == 0


def test_the_savings_of_a_plan_add_up_by_order_and_in_total():
    orders = [
        order("o1", sh(2026, 1, 10), [("rice", "food", 19000)], shipping_fee=800),
        order("o2", sh(2026, 1, 20), [("tea", "food", 9500)], shipping_fee=600),
    ]
    found = estimate(orders, [TIER_OFF], [TIER_OFF, PLUS_OFF, PLUS_X, PLUS_SHIP])
    # discount: 19000 × 5/95 + 9500 × 5/95; points: (190 + 95) × (2 − 1); shipping: both
    assert (found.discount_fen, found.extra_points, found.shipping_fen) == (1500, 285, 1400)
    assert found.total_fen == 1500 + 285 + 1400
    assert found.by_order == {"o1": 1000 + 190 + 800, "o2": 500 + 95 + 600}
    assert found.orders == 2
    assert estimate([], TIER, BOTH) == dm.Savings()


@pytest.mark.parametrize(
    ("period", "price", "cost"),
    [("monthly", 1500, 18000), ("quarterly", 4000, 16000), ("annual", 9900, 9900)],
)
def test_twelve_months_of_a_plan_cost_whole_periods(period, price, cost):
    assert dm.cost_fen(price, period) == cost


def test_the_messages_name_the_savings_in_yuan():
    assert (
        dm.estimate_message(12345, 9900)["zh"]
        == "开通可省 ¥123.45（12个月会费 ¥99.00，净省 ¥24.45）"
    )
    assert dm.estimate_message(4375, 9900)["zh"] == "开通可省 ¥43.75（12个月会费 ¥99.00）"
    assert dm.estimate_message(4375, 9900)["en"] == "Join and save ¥43.75 (12 months' fee ¥99.00)"
    assert dm.actual_message(1095, "PLUS会员", "PLUS") == {
        "zh": "PLUS会员已为您节省 ¥10.95",
        "en": "PLUS has saved you ¥10.95",
    }
