"""Wallet rules without a database: recharge bonuses (充500送50), which part a spend draws, and
refunds returning to the parts they came from."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huiyuan.domain import wallet as dw

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)

# 充500送50, 充1000送150
TIERS = [dw.RechargeBonus(50000, 5000), dw.RechargeBonus(100000, 15000)]


@pytest.mark.parametrize(
    ("amount", "bonus"),
    [(10000, 0), (49999, 0), (50000, 5000), (99999, 5000), (100000, 15000), (500000, 15000)],
)
def test_a_recharge_earns_the_bonus_of_the_largest_tier_it_reaches(amount, bonus):
    assert dw.bonus_for(TIERS, amount, NOW) == bonus


def test_a_bonus_tier_applies_only_within_its_window():
    # given 充500送100 for March only, beside the standing 充500送50
    march = dw.RechargeBonus(
        50000,
        10000,
        starts_at=datetime(2026, 3, 1, tzinfo=UTC),
        ends_at=datetime(2026, 4, 1, tzinfo=UTC),
    )
    tiers = [*TIERS, march]
    # then a March recharge of ¥500 gets ¥100, one in April ¥50, and the end is exclusive
    assert dw.bonus_for(tiers, 50000, NOW) == 10000
    assert dw.bonus_for(tiers, 50000, datetime(2026, 4, 1, tzinfo=UTC)) == 5000
    assert dw.bonus_for(tiers, 50000, datetime(2026, 2, 28, tzinfo=UTC)) == 5000
    assert dw.bonus_for([], 50000, NOW) == 0


def test_a_spend_draws_principal_first_or_bonus_first_as_the_program_says():
    # given a wallet of ¥500 principal and ¥50 bonus
    # when ¥80 is spent principal first, it is all principal; bonus first: ¥50 bonus, ¥30 principal
    assert dw.split_spend(50000, 5000, 8000, bonus_first=False) == (8000, 0)
    assert dw.split_spend(50000, 5000, 8000, bonus_first=True) == (3000, 5000)
    # and a spend larger than one part takes the rest from the other
    assert dw.split_spend(5000, 5000, 8000, bonus_first=False) == (5000, 3000)
    assert dw.split_spend(5000, 1000, 800, bonus_first=True) == (0, 800)


def test_a_partial_refund_of_a_spend_returns_to_the_parts_in_proportion():
    # given ¥80 paid as ¥30 principal and ¥50 bonus
    # when ¥40 is refunded, then the remaining ¥40
    first = dw.spend_refund_split(3000, 5000, 0, 0, 4000)
    second = dw.spend_refund_split(3000, 5000, first[0], first[1], 4000)
    # then each half returns ¥15 principal and ¥25 bonus
    assert first == (1500, 2500)
    assert second == (1500, 2500)


def test_a_refund_of_more_than_was_paid_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        dw.spend_refund_split(3000, 5000, 3000, 4000, 1001)


@st.composite
def a_spend_and_its_refunds(draw):
    principal = draw(st.integers(0, 1_000_000))
    bonus = draw(st.integers(0 if principal else 1, 1_000_000))
    left = principal + bonus
    refunds = []
    for _ in range(draw(st.integers(1, 10))):
        if left == 0:
            break
        amount = draw(st.integers(1, left))
        refunds.append(amount)
        left -= amount
    if draw(st.booleans()) and left:
        refunds.append(left)
    return principal, bonus, refunds


@given(a_spend_and_its_refunds())
def test_partial_refunds_of_a_spend_add_up_exactly_to_how_it_was_paid(case):
    # given a spend paid partly from principal and partly from bonus
    principal, bonus, refunds = case
    back_principal = back_bonus = 0
    # when it is refunded in any number of parts
    for amount in refunds:
        p, b = dw.spend_refund_split(principal, bonus, back_principal, back_bonus, amount)
        # then each part returns exactly its amount, never a negative part
        assert p >= 0 and b >= 0
        assert p + b == amount
        back_principal += p
        back_bonus += b
        # and never more of a part than was paid from it
        assert back_principal <= principal and back_bonus <= bonus
    # and a full refund returns exactly the original principal and bonus
    if sum(refunds) == principal + bonus:
        assert (back_principal, back_bonus) == (principal, bonus)


def test_a_recharge_refund_takes_back_its_bonus_in_proportion():
    # given ¥500 recharged with ¥50 bonus
    # when ¥200 of the principal is refunded, then the remaining ¥300
    first = dw.recharge_bonus_due(5000, 0, 20000, 50000)
    second = dw.recharge_bonus_due(5000, first, 50000, 50000)
    # then ¥20 of the bonus goes back first and ¥30 with the rest
    assert (first, second) == (2000, 3000)
    # and once all is taken back, nothing more is due
    assert dw.recharge_bonus_due(5000, 5000, 50000, 50000) == 0


@given(
    st.integers(1, 10**7),
    st.integers(0, 10**6),
    st.lists(st.integers(1, 10**7), max_size=10),
)
def test_a_recharge_refunded_in_parts_takes_back_exactly_its_bonus(principal, bonus, parts):
    taken = refunded = 0
    for part in parts:
        part = min(part, principal - refunded)
        if part == 0:
            break
        refunded += part
        due = dw.recharge_bonus_due(bonus, taken, refunded, principal)
        assert due >= 0
        taken += due
        assert taken <= bonus
    due = dw.recharge_bonus_due(bonus, taken, principal, principal)
    assert taken + due == bonus
