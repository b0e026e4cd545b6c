"""Money is integer fen: a float, a bool or a string never becomes money."""

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huiyuan.domain.money import ZERO, Money

fen = st.integers(min_value=-(10**13), max_value=10**13)


def test_a_price_reads_as_yuan_and_fen():
    # given a price of 12990 fen and a refund of 5 fen
    price, refund = Money(12990), Money(-5)
    # then they read as yuan with two decimals
    assert str(price) == "¥129.90"
    assert str(refund) == "-¥0.05"
    assert str(ZERO) == "¥0.00"


@pytest.mark.parametrize("not_fen", [129.9, 12990.0, True, False, "12990", Decimal("12990"), None])
def test_money_refuses_anything_but_integer_fen(not_fen):
    # when money is made from a float, a bool, a string, a Decimal or nothing
    # then it is refused, so a rounding error cannot reach the ledger
    with pytest.raises(TypeError, match="integer fen"):
        Money(not_fen)


@pytest.mark.parametrize("other", [1, 1.5, Decimal(1), "1"])
def test_money_only_adds_and_subtracts_money(other):
    # given an amount
    price = Money(100)
    # then adding or subtracting a bare number is refused in both directions
    with pytest.raises(TypeError):
        price + other
    with pytest.raises(TypeError):
        price - other
    with pytest.raises(TypeError):
        other + price


def test_a_discount_rate_rounds_as_stated():
    # given ¥1.05 at half price
    amount = Money(105)
    # then the default rounding is half up and other roundings are honoured
    assert amount.times(Decimal("0.5")) == Money(53)
    assert amount.times(Decimal("0.5"), ROUND_HALF_EVEN) == Money(52)
    assert amount.times(Decimal("0.5"), ROUND_DOWN) == Money(52)
    assert Money(12990).times(Decimal("0.9")) == Money(11691)


@pytest.mark.parametrize("rate", [0.9, 1, "0.9"])
def test_a_rate_must_be_a_decimal(rate):
    # when a discount rate is given as a float, an int or a string
    # then it is refused rather than guessed at
    with pytest.raises(TypeError, match="Decimal"):
        Money(12990).times(rate)


def test_zero_money_is_falsy_and_amounts_order():
    # given amounts of money
    # then zero is falsy, other amounts truthy, and they compare by fen
    assert not ZERO
    assert Money(1)
    assert Money(-1)
    assert Money(99) < Money(100) <= Money(100)
    assert sorted([Money(3), Money(-2), Money(0)]) == [Money(-2), Money(0), Money(3)]


def test_money_is_immutable():
    # given an amount
    price = Money(100)
    # when someone tries to change it in place
    # then it refuses
    with pytest.raises(AttributeError):
        price.fen = 200  # type: ignore[misc]


@given(fen, fen, fen)
def test_adding_money_is_exact_integer_arithmetic(a, b, c):
    # given any three amounts
    x, y, z = Money(a), Money(b), Money(c)
    # then addition is exact, commutative and associative, and subtraction undoes it
    assert (x + y).fen == a + b
    assert x + y == y + x
    assert (x + y) + z == x + (y + z)
    assert (x + y) - y == x
    assert -x == Money(-a)
    assert x + -x == ZERO
    assert isinstance((x + y).fen, int)


@given(st.integers(min_value=0, max_value=10**12), st.decimals(min_value=0, max_value=10, places=4))
def test_a_rate_always_gives_whole_fen_within_half_a_fen(amount, rate):
    # given any amount and any non-negative rate
    result = Money(amount).times(rate)
    # then the result is whole fen and within half a fen of the exact product
    assert isinstance(result.fen, int)
    assert abs(Decimal(result.fen) - Decimal(amount) * rate) <= Decimal("0.5")
