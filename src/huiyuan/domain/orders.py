"""Order facts and the moves an order may make.

An order is paid once, then either completed or cancelled; refunds (售后) may come any time after
payment, partial or whole, each with its own ``refund_id``. Only the store an order was placed in
(or the platform) may complete, cancel or refund it. The refunded total never exceeds what
the member paid, and a refund naming items never returns more of an item than was bought or more
money than was paid for it. These checks run before anything is written, so a refused event
leaves no trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from huiyuan.domain.errors import EventError, conflict, invalid


class OrderStatus(StrEnum):
    PAID = "paid"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    quantity: int
    paid_amount: int


@dataclass(frozen=True, slots=True)
class RefundLine:
    sku: str
    quantity: int
    amount: int


@dataclass(frozen=True, slots=True)
class OrderFacts:
    order_id: str
    member_id: str
    status: OrderStatus
    amount: int
    refunded_amount: int
    store_id: str | None = None

    @property
    def refundable(self) -> int:
        return self.amount - self.refunded_amount


def check_same_member(order: OrderFacts, member_id: str) -> None:
    if order.member_id != member_id:
        raise conflict(
            EventError.MEMBER_MISMATCH,
            f"order {order.order_id} belongs to another member",
            field="member_id",
        )


def check_same_store(order: OrderFacts, store_id: str | None) -> None:
    """An event of a store may move only that store's orders; one without a store comes from the
    platform, which speaks for every store."""
    if store_id is not None and order.store_id != store_id:
        raise conflict(
            EventError.STORE_MISMATCH,
            f"order {order.order_id} is not an order of store {store_id}",
            field="store_id",
        )


def check_completion(order: OrderFacts) -> None:
    if order.status is OrderStatus.CANCELLED:
        raise conflict(EventError.ORDER_CANCELLED, f"order {order.order_id} was cancelled")
    if order.status is OrderStatus.COMPLETED:
        raise conflict(EventError.ORDER_COMPLETED, f"order {order.order_id} is already completed")


def check_cancellation(order: OrderFacts) -> None:
    if order.status is OrderStatus.CANCELLED:
        raise conflict(EventError.ORDER_CANCELLED, f"order {order.order_id} is already cancelled")
    if order.status is OrderStatus.COMPLETED:
        raise conflict(
            EventError.ORDER_COMPLETED,
            f"order {order.order_id} is completed; use order.refunded for after-sales",
        )


def check_refund(
    order: OrderFacts,
    amount: int,
    lines: Iterable[RefundLine],
    bought: Mapping[str, OrderLine],
    already_refunded: Mapping[str, RefundLine],
) -> None:
    """Refuse a refund that returns more than was paid, in total or for any item."""
    if order.status is OrderStatus.CANCELLED:
        raise conflict(
            EventError.ORDER_CANCELLED,
            f"order {order.order_id} was cancelled: its payment was already returned",
        )
    if order.refundable <= 0:
        raise conflict(
            EventError.ORDER_FULLY_REFUNDED, f"order {order.order_id} is already fully refunded"
        )
    if amount > order.refundable:
        raise conflict(
            EventError.REFUND_EXCEEDS_ORDER,
            f"refund of {amount} fen exceeds the {order.refundable} fen still refundable",
            field="data.amount",
        )
    seen: set[str] = set()
    for index, line in enumerate(lines):
        field = f"data.items[{index}]"
        if line.sku in seen:
            raise invalid(
                EventError.DUPLICATE_SKU,
                f"sku {line.sku!r} appears twice; merge the lines",
                field=f"{field}.sku",
            )
        seen.add(line.sku)
        item = bought.get(line.sku)
        if item is None:
            raise invalid(
                EventError.REFUND_ITEM_UNKNOWN,
                f"sku {line.sku!r} is not in order {order.order_id}",
                field=f"{field}.sku",
            )
        before = already_refunded.get(line.sku, RefundLine(line.sku, 0, 0))
        if before.quantity + line.quantity > item.quantity:
            raise conflict(
                EventError.REFUND_EXCEEDS_ORDER,
                f"refunds of sku {line.sku!r} would exceed the {item.quantity} bought",
                field=f"{field}.quantity",
            )
        if before.amount + line.amount > item.paid_amount:
            raise conflict(
                EventError.REFUND_EXCEEDS_ORDER,
                f"refunds of sku {line.sku!r} would exceed the {item.paid_amount} fen paid for it",
                field=f"{field}.amount",
            )
