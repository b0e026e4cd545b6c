"""Growth value (成长值) and RFM rules without a database: what an order earns with the tier's
acceleration coefficient, daily caps, what refunds take back, and how RFM bands members and
turns their scores into growth (negative for poor members)."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huiyuan.domain import growth as dg
from huiyuan.domain import rfm as drfm

# 1 growth per ¥1 paid; gold members earn 1.2×, diamond members 1.5×.
PURCHASE = dg.GrowthRule(
    "purchase",
    dg.GrowthKind.PURCHASE,
    1,
    per_fen=100,
    coefficients={"gold": Decimal("1.2"), "diamond": Decimal("1.5")},
)


# ---------------------------------------------------------------- purchase growth


@pytest.mark.parametrize(
    ("paid_fen", "tier", "growth"),
    [
        (29900, None, 299),  # ¥299 by a member without a tier
        (29900, "silver", 299),  # a tier without a coefficient earns 1×
        (29900, "gold", 358),  # 358.8 rounded down
        (29900, "diamond", 448),  # 448.5 rounded down
        (99, "diamond", 1),  # ¥0.99 × 1.5 = 1.485
        (66, "diamond", 0),  # ¥0.66 × 1.5 = 0.99: nothing
        (0, "gold", 0),
    ],
)
def test_purchase_growth_is_paid_times_rate_times_the_tier_coefficient_rounded_down(
    paid_fen, tier, growth
):
    # when a member of ``tier`` completes an order of ``paid_fen``, then they earn ``growth``
    assert dg.purchase_growth(PURCHASE, paid_fen, tier) == growth


def test_purchase_growth_of_an_exact_amount_is_not_lost_to_rounding():
    # given a rule of 3 growth per ¥3 paid (a rate that is not a round decimal per fen)
    rule = dg.GrowthRule("r", dg.GrowthKind.PURCHASE, 3, per_fen=300)
    # when a member pays exactly ¥1, then they earn exactly 1 (not 0.999… rounded down to 0)
    assert dg.purchase_growth(rule, 100, None) == 1
    # and 7 per ¥7 with a 3× coefficient on ¥1 is exactly 3 (not 2.999… rounded down)
    seven = dg.GrowthRule("s", dg.GrowthKind.PURCHASE, 7, per_fen=700, coefficients={"g": 3})
    assert dg.purchase_growth(seven, 100, "g") == 3


@given(
    paid=st.integers(min_value=0, max_value=10**12),
    per_fen=st.integers(min_value=1, max_value=10**6),
    points=st.integers(min_value=1, max_value=10**4),
    coefficient=st.decimals(min_value="0.01", max_value="100", places=2),
)
def test_purchase_growth_is_the_exact_product_rounded_down(paid, per_fen, points, coefficient):
    # whatever the rate and coefficient, the growth is the exact value rounded down
    rule = dg.GrowthRule("r", dg.GrowthKind.PURCHASE, points, per_fen, {"t": coefficient})
    exact = Fraction(paid) * points * Fraction(coefficient) / per_fen
    assert dg.purchase_growth(rule, paid, "t") == exact.numerator // exact.denominator


# ---------------------------------------------------------------- daily caps


@pytest.mark.parametrize(
    ("per_day", "earned_today", "credited"),
    [(None, 99, 5), (3, 0, 3), (3, 2, 1), (3, 3, 0), (3, 7, 0), (10, 0, 5)],
)
def test_a_daily_cap_credits_only_what_is_left_of_the_day(per_day, earned_today, credited):
    # given a share earns 5 and the rule caps ``per_day``, with ``earned_today`` earned already
    # then ``credited`` is credited, never a negative amount
    assert dg.capped_growth(5, per_day, earned_today) == credited


# ---------------------------------------------------------------- refunds


def test_refunds_take_growth_back_in_proportion_and_all_of_it_on_a_full_refund():
    # given a ¥299 order that earned 299 growth
    earned, paid = 299, 29900
    # when ¥100 is refunded, then 100 is taken back
    first = dg.growth_taken_back(earned, 0, 10000, paid)
    assert first == 100
    # when another ¥99 is refunded (¥199 in all), then 99 more (199 of 299)
    second = dg.growth_taken_back(earned, first, 19900, paid)
    assert second == 99
    # when the rest is refunded, then exactly what is left: 100
    assert dg.growth_taken_back(earned, first + second, paid, paid) == 100
    # and a refund above the paid amount (shipping, compensation) takes nothing more
    assert dg.growth_taken_back(earned, earned, paid + 500, paid) == 0


def test_nothing_is_taken_back_from_an_order_that_earned_nothing():
    assert dg.growth_taken_back(0, 0, 100, 100) == 0
    assert dg.growth_taken_back(50, 0, 100, 0) == 0


@given(
    earned=st.integers(min_value=0, max_value=10**9),
    paid=st.integers(min_value=1, max_value=10**9),
    cuts=st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=8),
    full=st.booleans(),
)
def test_partial_refunds_never_take_back_more_than_earned_and_a_full_refund_takes_all(
    earned, paid, cuts, full
):
    # given an order of ``paid`` that earned ``earned`` growth
    # when it is refunded in parts (each part at most what is left)
    refunded = taken = 0
    for cut in cuts:
        part = min(cut, paid - refunded)
        if part <= 0:
            break
        refunded += part
        step = dg.growth_taken_back(earned, taken, refunded, paid)
        # then every step takes back something non-negative
        assert step >= 0
        taken += step
        # and the growth taken back never exceeds what was earned, nor the refunded share
        assert taken <= earned
        assert taken == earned * refunded // paid
    if full and refunded < paid:
        # when the rest is refunded
        taken += dg.growth_taken_back(earned, taken, paid, paid)
        refunded = paid
    if refunded == paid:
        # then exactly all of it has been taken back
        assert taken == earned


# ---------------------------------------------------------------- RFM


def test_quintile_edges_split_the_population_by_nearest_rank():
    # given ten members with 1 to 10 orders, then the edges are 3, 5, 7 and 9 orders
    assert drfm.quantile_edges(list(range(10, 0, -1))) == [3, 5, 7, 9]
    # and an empty population has edges at 0
    assert drfm.quantile_edges([]) == [0, 0, 0, 0]
    # and everyone alike puts the edges on that value
    assert drfm.quantile_edges([4, 4, 4]) == [4, 4, 4, 4]


@pytest.mark.parametrize(
    ("value", "score"), [(0, 1), (3, 1), (4, 2), (5, 2), (6, 3), (8, 4), (9, 4), (10, 5)]
)
def test_a_value_scores_one_plus_the_edges_it_is_above(value, score):
    # given edges 3, 5, 7, 9 (a value equal to an edge is not above it)
    assert drfm.band(value, [3, 5, 7, 9]) == score


@pytest.mark.parametrize(("days", "score"), [(0, 5), (30, 5), (31, 4), (200, 2), (400, 1)])
def test_recency_scores_fewer_days_since_the_last_order_higher(days, score):
    # given recency edges of 30, 90, 180 and 270 days
    assert drfm.band(days, [30, 90, 180, 270], lower_is_better=True) == score


def test_rfm_growth_is_weighted_distance_from_the_average_and_negative_for_poor_members():
    weights = {"r": 20, "f": 30, "m": 50}
    # given a member scoring 5 on everything, then they gain 2 × (20 + 30 + 50) = 200
    assert drfm.growth_change(drfm.Scores(5, 5, 5), weights) == 200
    # given an average member, then nothing changes
    assert drfm.growth_change(drfm.Scores(3, 3, 3), weights) == 0
    # given a lapsed member (long ago, once, a middling amount), then they lose 100
    assert drfm.growth_change(drfm.Scores(1, 1, 3), weights) == -100
    # given the poorest member, then they lose 200
    assert drfm.growth_change(drfm.Scores(1, 1, 1), weights) == -200
    # and a dimension without a weight counts for nothing
    assert drfm.growth_change(drfm.Scores(1, 5, 5), {"m": 10}) == 20


@given(
    values=st.lists(st.integers(min_value=0, max_value=10**6), max_size=50),
    probe=st.integers(min_value=0, max_value=10**6),
    lower_is_better=st.booleans(),
)
def test_bands_are_one_to_five_and_ordered_like_the_values(values, probe, lower_is_better):
    # given quintile edges of any population
    edges = drfm.quantile_edges(values)
    # then they ascend and are drawn from the population
    assert edges == sorted(edges)
    assert all(e in values for e in edges) or not values
    # and every value scores 1–5, a larger value never scoring lower (or higher, for recency)
    low = drfm.band(probe, edges, lower_is_better=lower_is_better)
    high = drfm.band(probe + 1, edges, lower_is_better=lower_is_better)
    assert 1 <= low <= 5 and 1 <= high <= 5
    assert (high <= low) if lower_is_better else (high >= low)
