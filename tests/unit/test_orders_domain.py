"""Order moves: paid once, then completed or cancelled; refunds never return more than was paid."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huiyuan.domain.errors import DomainError, ErrorKind, EventError
from huiyuan.domain.orders import (
    OrderFacts,
    OrderLine,
    OrderStatus,
    RefundLine,
    check_cancellation,
    check_completion,
    check_refund,
    check_same_member,
    check_same_store,
)


def an_order(status=OrderStatus.PAID, amount=29900, refunded=0, member="u1"):
    return OrderFacts("o1", member, status, amount, refunded)


# An order of ¥299: a ¥199 coat and two scarves paid ¥50 each.
BOUGHT = {
    "coat": OrderLine("coat", 1, 19900),
    "scarf": OrderLine("scarf", 2, 10000),
}


def refused(call, *args):
    with pytest.raises(DomainError) as caught:
        call(*args)
    return caught.value


def test_a_paid_order_can_be_completed_or_cancelled():
    # given a paid order
    order = an_order()
    # then completing or cancelling it is allowed (neither raises)
    assert check_completion(order) is None
    assert check_cancellation(order) is None


def test_a_cancelled_order_cannot_be_completed_or_cancelled_again():
    # given a cancelled order
    order = an_order(OrderStatus.CANCELLED)
    # when it is completed, or cancelled again
    on_complete = refused(check_completion, order)
    on_cancel = refused(check_cancellation, order)
    # then both are conflicts naming the cancellation
    assert on_complete.code is EventError.ORDER_CANCELLED
    assert on_complete.kind is ErrorKind.CONFLICT
    assert on_cancel.code is EventError.ORDER_CANCELLED


def test_a_completed_order_cannot_be_completed_again_nor_cancelled():
    # given a completed order
    order = an_order(OrderStatus.COMPLETED)
    # then completing it again or cancelling it is refused: after-sales go through refunds
    assert refused(check_completion, order).code is EventError.ORDER_COMPLETED
    error = refused(check_cancellation, order)
    assert error.code is EventError.ORDER_COMPLETED
    assert "order.refunded" in error.message


def test_an_order_event_for_another_member_is_refused():
    # given u1's order
    order = an_order(member="u1")
    # when u2 claims it
    error = refused(check_same_member, order, "u2")
    # then it is a conflict on member_id
    assert error.code is EventError.MEMBER_MISMATCH
    assert error.field == "member_id"
    assert check_same_member(order, "u1") is None


def test_only_the_store_an_order_was_placed_in_or_the_platform_may_move_it():
    # given an order placed in store-a, and one placed with the platform directly
    in_store = OrderFacts("o1", "u1", OrderStatus.PAID, 29900, 0, store_id="store-a")
    direct = OrderFacts("o2", "u1", OrderStatus.PAID, 29900, 0)
    # then store-a and the platform (no store) may move store-a's order
    assert check_same_store(in_store, "store-a") is None
    assert check_same_store(in_store, None) is None
    # while store-b may not, nor may any store move the platform's own order
    for order, store in ((in_store, "store-b"), (direct, "store-a")):
        error = refused(check_same_store, order, store)
        assert error.code is EventError.STORE_MISMATCH
        assert error.kind is ErrorKind.CONFLICT
        assert error.field == "store_id"


def test_a_partial_then_a_final_refund_are_accepted_up_to_the_amount():
    # given a ¥299 order already refunded ¥100
    order = an_order(refunded=10000)
    # then refunding the remaining ¥199 is fine, one fen more is not
    assert check_refund(order, 19900, [], BOUGHT, {}) is None
    error = refused(check_refund, order, 19901, [], BOUGHT, {})
    assert error.code is EventError.REFUND_EXCEEDS_ORDER
    assert error.kind is ErrorKind.CONFLICT
    assert error.field == "data.amount"


def test_a_fully_refunded_order_refuses_any_further_refund():
    # given an order refunded in full
    order = an_order(refunded=29900)
    # when another refund comes
    error = refused(check_refund, order, 1, [], BOUGHT, {})
    # then it is refused as fully refunded
    assert error.code is EventError.ORDER_FULLY_REFUNDED


def test_a_refund_naming_an_item_not_in_the_order_is_invalid():
    # given the ¥299 order
    order = an_order()
    # when a refund names a sku the order does not have (as its second line)
    lines = [RefundLine("scarf", 1, 5000), RefundLine("hat", 1, 100)]
    error = refused(check_refund, order, 5100, lines, BOUGHT, {})
    # then the field names that line's sku
    assert error.code is EventError.REFUND_ITEM_UNKNOWN
    assert error.kind is ErrorKind.INVALID
    assert error.field == "data.items[1].sku"


def test_an_item_cannot_be_returned_more_times_than_it_was_bought():
    # given one of two scarves already returned
    order = an_order(refunded=5000)
    before = {"scarf": RefundLine("scarf", 1, 5000)}
    # when two more scarves are returned
    error = refused(check_refund, order, 5000, [RefundLine("scarf", 2, 5000)], BOUGHT, before)
    # then the quantity is refused
    assert error.code is EventError.REFUND_EXCEEDS_ORDER
    assert error.field == "data.items[0].quantity"
    # while returning the other scarf is fine
    assert check_refund(order, 5000, [RefundLine("scarf", 1, 5000)], BOUGHT, before) is None


def test_an_item_cannot_be_refunded_more_money_than_was_paid_for_it():
    # given the coat was paid ¥199
    order = an_order()
    # when ¥199.01 is refunded for it
    error = refused(check_refund, order, 19901, [RefundLine("coat", 1, 19901)], BOUGHT, {})
    # then the item's amount is refused
    assert error.code is EventError.REFUND_EXCEEDS_ORDER
    assert error.field == "data.items[0].amount"


@given(
    amount=st.integers(min_value=1, max_value=100_000),
    refunds=st.lists(st.integers(min_value=1, max_value=60_000), max_size=12),
)
def test_no_sequence_of_refunds_ever_returns_more_than_was_paid(amount, refunds):
    # given an order of any amount and any sequence of requested refunds
    refunded = 0
    for requested in refunds:
        order = an_order(amount=amount, refunded=refunded)
        # when each refund is checked against what was refunded so far
        try:
            check_refund(order, requested, [], {}, {})
        except DomainError as error:
            # then a refusal happens exactly when the refund would exceed the amount
            assert refunded + requested > amount
            assert error.code in (EventError.REFUND_EXCEEDS_ORDER, EventError.ORDER_FULLY_REFUNDED)
        else:
            assert refunded + requested <= amount
            refunded += requested
        # and the accepted total never exceeds what was paid
        assert refunded <= amount


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["coat", "scarf"]),
            st.integers(min_value=1, max_value=3),
            st.integers(min_value=0, max_value=20_000),
        ),
        max_size=10,
    )
)
def test_no_sequence_of_item_refunds_returns_more_of_an_item_than_was_bought(requests):
    # given the ¥299 order and any sequence of one-line item refunds
    order_refunded = 0
    before: dict[str, RefundLine] = {}
    for sku, quantity, money in requests:
        order = an_order(refunded=order_refunded)
        try:
            check_refund(order, money, [RefundLine(sku, quantity, money)], BOUGHT, before)
        except DomainError:
            continue
        # when a refund is accepted, it is recorded
        done = before.get(sku, RefundLine(sku, 0, 0))
        before[sku] = RefundLine(sku, done.quantity + quantity, done.amount + money)
        order_refunded += money
    # then no item and not the order ever gave back more than it held
    for sku, done in before.items():
        assert done.quantity <= BOUGHT[sku].quantity
        assert done.amount <= BOUGHT[sku].paid_amount
    assert order_refunded <= 29900
