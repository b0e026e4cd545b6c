"""Event bodies as integrators send them, with business defaults tests can override.

The test clock stands at 2026-03-01 10:00 Shanghai time; events default to a month earlier.
"""

from __future__ import annotations

from typing import Any

WHEN = "2026-02-01T10:00:00+08:00"


def event(
    event_id: str,
    event_type: str,
    member_id: str = "u1",
    *,
    occurred_at: str = WHEN,
    store_id: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id,
        "type": event_type,
        "occurred_at": occurred_at,
        "member_id": member_id,
        "data": data,
    }
    if store_id is not None:
        body["store_id"] = store_id
    return body


def registered(event_id: str, member_id: str = "u1", **data: Any) -> dict[str, Any]:
    data.setdefault("phone", "+86 138-0013-8000")
    data.setdefault("name", "张伟")
    data.setdefault("channel", "app")
    return event(event_id, "member.registered", member_id, **data)


def login(event_id: str, member_id: str = "u1", **kw: Any) -> dict[str, Any]:
    return event(event_id, "member.login", member_id, **kw)


def item(sku: str, paid_amount: int, quantity: int = 1, **kw: Any) -> dict[str, Any]:
    return {
        "sku": sku,
        "name": kw.pop("name", sku.title()),
        "quantity": quantity,
        "unit_price": kw.pop("unit_price", paid_amount // quantity),
        "paid_amount": paid_amount,
        **kw,
    }


def paid(
    event_id: str,
    order_id: str,
    member_id: str = "u1",
    amount: int = 29900,
    items: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """A ¥299 order by default: a ¥199 coat and two ¥50 scarves."""
    if items is None:
        items = [item("coat", 19900), item("scarf", 10000, quantity=2)]
    return event(
        event_id, "order.paid", member_id, order_id=order_id, amount=amount, items=items, **kw
    )


def completed(event_id: str, order_id: str, member_id: str = "u1", **kw: Any) -> dict[str, Any]:
    return event(event_id, "order.completed", member_id, order_id=order_id, **kw)


def cancelled(event_id: str, order_id: str, member_id: str = "u1", **kw: Any) -> dict[str, Any]:
    return event(event_id, "order.cancelled", member_id, order_id=order_id, **kw)


def refunded(
    event_id: str,
    order_id: str,
    refund_id: str,
    amount: int,
    member_id: str = "u1",
    **kw: Any,
) -> dict[str, Any]:
    return event(
        event_id,
        "order.refunded",
        member_id,
        order_id=order_id,
        refund_id=refund_id,
        amount=amount,
        **kw,
    )
