"""What each event type does to the member's records.

Each handler runs inside the caller's transaction with the member's row locked, and either
returns its effects or raises a ``DomainError`` before the transaction commits — so a refused
event changes nothing. ``PREREQUISITES`` name, per type, the earlier fact an event needs (a refund
needs its order): when it is missing the event is deferred, not applied, and the handler of the
fact that arrives later names the waiting key it ``satisfies``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, Row

from huiyuan.db import members_repo, orders_repo
from huiyuan.domain.business_time import business_day
from huiyuan.domain.errors import EventError, MemberError, conflict, invalid
from huiyuan.domain.growth import GrowthKind
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
from huiyuan.domain.phone import normalize_phone
from huiyuan.domain.points import Trigger
from huiyuan.schemas import events as ev_schema
from huiyuan.schemas.validation import ValidEvent
from huiyuan.services import growth_events, memberships, points_events, wallet
from huiyuan.services.context import PLATFORM_OWNER, Services

Effect = dict[str, Any]


@dataclass
class Applied:
    effects: list[Effect] = field(default_factory=list)
    satisfies: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Context:
    svc: Services
    conn: Connection
    sender: str
    member: Row[Any]


Handler = Callable[[Context, ValidEvent], Applied]


def order_key(order_id: str) -> str:
    return f"order:{order_id}"


def review_key(review_id: str) -> str:
    return f"review:{review_id}"


def membership_key(purchase_id: str) -> str:
    return f"membership:{purchase_id}"


def member_key(member_id: str) -> str:
    return f"member:{member_id}"


# ---------------------------------------------------------------- members


PROFILE_COLUMNS = (
    "name",
    "nickname",
    "gender",
    "birthday",
    "region",
    "email",
    "avatar_url",
    "education",
    "occupation",
)


def profile_values(data: ev_schema.Profile, event_field: str = "data") -> dict[str, Any]:
    """The columns a profile payload sets: only the fields it names; ``null`` clears."""
    present = data.model_fields_set
    values: dict[str, Any] = {}
    for column in PROFILE_COLUMNS:
        if column in present:
            value = getattr(data, column)
            values[column] = value.value if hasattr(value, "value") else value
    if "phone" in present:
        values["phone"] = None
        if data.phone:
            phone = normalize_phone(data.phone)
            if phone is None:
                raise invalid(
                    MemberError.PHONE_INVALID, "not a phone number", field=f"{event_field}.phone"
                )
            values["phone"] = phone
    for listed in ("addresses", "invoice_titles"):
        if listed in present:
            items: list[BaseModel] = getattr(data, listed) or []
            values[listed] = [item.model_dump(mode="json") for item in items]
    return values


def _may_write_profile(ctx: Context) -> bool:
    member = ctx.member
    return (
        ctx.sender == PLATFORM_OWNER
        or member.profile_updated_at is None
        or member.registration_store_id == ctx.sender
    )


def apply_profile(ctx: Context, event: ValidEvent, extra: dict[str, Any]) -> list[Effect]:
    assert isinstance(event.data, ev_schema.Profile)
    values = profile_values(event.data)
    stamp = ctx.member.profile_updated_at
    if not _may_write_profile(ctx):
        # The shared profile belongs to the platform (or to the store that registered the
        # member): another store's events enroll the member but leave the profile alone.
        values = {}
        effects: list[Effect] = [{"kind": "profile.not_owned"}]
    elif stamp is not None and event.occurred_at < stamp:
        # An older update arriving late must not overwrite a newer one.
        values = {}
        effects = [{"kind": "profile.stale_ignored", "newer_update_at": stamp.isoformat()}]
    else:
        values["profile_updated_at"] = event.occurred_at
        changed = sorted(k for k in values if k != "profile_updated_at")
        effects = [{"kind": "profile.updated", "fields": changed}]
    values.update(extra)
    if values:
        values["updated_at"] = ctx.svc.now()
        members_repo.update_member(ctx.conn, ctx.member.member_id, values)
    return effects


def on_registered(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.MemberRegistered)
    extra: dict[str, Any] = {}
    effects: list[Effect] = []
    if ctx.member.origin != "registered" or ctx.member.registered_at is None:
        extra = {
            "origin": "registered",
            "registered_at": event.occurred_at,
            "registration_channel": data.channel.value,
            "registration_store_id": event.store_id,
            "inviter_id": data.inviter_id,
        }
        effects.append({"kind": "member.registered", "channel": data.channel.value})
    elif event.occurred_at < ctx.member.registered_at:
        extra = {"registered_at": event.occurred_at}
    if not effects:
        effects.append({"kind": "member.already_registered"})
    effects += apply_profile(ctx, event, extra)
    actor = _actor(ctx, event)
    if any(e["kind"] == "member.registered" for e in effects):
        effects += points_events.on_action(ctx.svc, ctx.conn, event, Trigger.REGISTRATION, actor)
        effects += growth_events.on_action(ctx.svc, ctx.conn, event, GrowthKind.REGISTRATION, actor)
    effects += growth_events.on_profile(ctx.svc, ctx.conn, event, actor)
    return Applied(effects)


def on_updated(ctx: Context, event: ValidEvent) -> Applied:
    effects = apply_profile(ctx, event, {})
    effects += growth_events.on_profile(ctx.svc, ctx.conn, event, _actor(ctx, event))
    return Applied(effects)


def on_login(ctx: Context, event: ValidEvent) -> Applied:
    day = business_day(event.occurred_at, ctx.svc.settings.zone)
    members_repo.record_login(ctx.conn, ctx.member.member_id, day, event.occurred_at)
    growth = growth_events.on_login(ctx.svc, ctx.conn, event, _actor(ctx, event))
    return Applied([{"kind": "login.recorded", "business_day": day.isoformat()}, *growth])


# ---------------------------------------------------------------- orders


def order_facts(row: Row[Any]) -> OrderFacts:
    return OrderFacts(
        order_id=row.order_id,
        member_id=row.member_id,
        status=OrderStatus(row.status),
        amount=row.amount,
        refunded_amount=row.refunded_amount,
        store_id=row.store_id,
    )


def locked_order(ctx: Context, event: ValidEvent, order_id: str) -> OrderFacts:
    row = orders_repo.lock_order(ctx.conn, order_id)
    assert row is not None, "prerequisite checked the order exists"
    order = order_facts(row)
    check_same_member(order, event.member_id)
    check_same_store(order, event.store_id)
    return order


def check_items_add_up(data: ev_schema.OrderPaid) -> None:
    seen: set[str] = set()
    for index, item in enumerate(data.items):
        if item.sku in seen:
            raise invalid(
                EventError.DUPLICATE_SKU,
                f"sku {item.sku!r} appears twice; merge the lines",
                field=f"data.items[{index}].sku",
            )
        seen.add(item.sku)
    total = sum(item.paid_amount for item in data.items)
    if total != data.amount:
        raise invalid(
            EventError.AMOUNT_MISMATCH,
            f"items' paid_amount add up to {total} fen but amount is {data.amount} fen",
            field="data.items",
        )


def paid_order_rows(
    sender: str, event: ValidEvent, data: ev_schema.OrderPaid
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The order row and its item rows an ``order.paid`` records (also set-based, in
    ``order_batch``)."""
    order = {
        "order_id": data.order_id,
        "member_id": event.member_id,
        "store_id": event.store_id,
        "status": OrderStatus.PAID.value,
        "amount": data.amount,
        "shipping_fee": data.shipping_fee,
        "refunded_amount": 0,
        "channel": data.channel.value if data.channel else None,
        "paid_at": event.occurred_at,
        "sender": sender,
        "paid_event_id": event.id,
    }
    items = [
        {
            "order_id": data.order_id,
            "line_no": index,
            "sku": item.sku,
            "name": item.name,
            "category": item.category,
            "brand": item.brand,
            "quantity": item.quantity,
            "unit_price": item.unit_price,
            "paid_amount": item.paid_amount,
            "virtual": item.virtual,
            "refunded_quantity": 0,
            "refunded_amount": 0,
        }
        for index, item in enumerate(data.items)
    ]
    return order, items


def inbox_row(sender: str, event: ValidEvent, now: datetime) -> dict[str, Any]:
    """An event's inbox row as first claimed (applied, no response yet)."""
    return {
        "sender": sender,
        "event_id": event.id,
        "type": event.type,
        "member_id": event.member_id,
        "store_id": event.store_id,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "body_hash": event.body_hash,
        "data": event.envelope.data,
        "status": "applied",
        "waiting_on": None,
        "response_status": 0,
        "response_body": {},
    }


def on_order_paid(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.OrderPaid)
    check_items_add_up(data)
    existing = orders_repo.lock_order(ctx.conn, data.order_id)
    if existing is not None:
        raise conflict(
            EventError.ORDER_ALREADY_PAID,
            f"order {data.order_id} was already paid (event {existing.paid_event_id})",
            field="data.order_id",
        )
    order, items = paid_order_rows(ctx.sender, event, data)
    orders_repo.insert_order(ctx.conn, order, items)
    effect = {"kind": "order.recorded", "order_id": data.order_id, "amount": data.amount}
    points = points_events.on_order_paid(ctx.svc, ctx.conn, event, data, _actor(ctx, event))
    points += memberships.mark_benefit_used(ctx.svc, ctx.conn, event.member_id, event.occurred_at)
    return Applied([effect, *points], satisfies=[order_key(data.order_id)])


def on_order_completed(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.OrderRef)
    order = locked_order(ctx, event, data.order_id)
    check_completion(order)
    orders_repo.set_order_status(
        ctx.conn, data.order_id, {"status": "completed", "completed_at": event.occurred_at}
    )
    row = points_events.order_row(ctx.conn, data.order_id)
    actor = _actor(ctx, event)
    points = points_events.on_order_completed(ctx.svc, ctx.conn, event, row, actor)
    growth = growth_events.on_order_completed(ctx.svc, ctx.conn, event, row, actor)
    return Applied([{"kind": "order.completed", "order_id": data.order_id}, *points, *growth])


def on_order_cancelled(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.OrderCancelled)
    order = locked_order(ctx, event, data.order_id)
    check_cancellation(order)
    orders_repo.set_order_status(
        ctx.conn, data.order_id, {"status": "cancelled", "cancelled_at": event.occurred_at}
    )
    row = points_events.order_row(ctx.conn, data.order_id)
    points = points_events.on_order_cancelled(ctx.svc, ctx.conn, event, row, _actor(ctx, event))
    return Applied([{"kind": "order.cancelled", "order_id": data.order_id}, *points])


def on_order_refunded(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.OrderRefunded)
    order = locked_order(ctx, event, data.order_id)
    if orders_repo.refund_exists(ctx.conn, data.refund_id):
        raise conflict(
            EventError.REFUND_ID_REUSED,
            f"refund {data.refund_id} was already recorded by another event",
            field="data.refund_id",
        )
    lines = [RefundLine(i.sku, i.quantity, i.amount) for i in data.items or []]
    if lines and sum(line.amount for line in lines) != data.amount:
        raise invalid(
            EventError.AMOUNT_MISMATCH,
            "items' amounts must add up to the refund amount",
            field="data.items",
        )
    rows = orders_repo.order_lines(ctx.conn, data.order_id)
    bought = {r.sku: OrderLine(r.sku, r.quantity, r.paid_amount) for r in rows}
    before = {r.sku: RefundLine(r.sku, r.refunded_quantity, r.refunded_amount) for r in rows}
    check_refund(order, data.amount, lines, bought, before)
    orders_repo.record_refund(
        ctx.conn,
        {
            "refund_id": data.refund_id,
            "order_id": data.order_id,
            "member_id": event.member_id,
            "amount": data.amount,
            "items": [i.model_dump() for i in data.items or []],
            "reason": data.reason,
            "refunded_at": event.occurred_at,
        },
        [(line.sku, line.quantity, line.amount) for line in lines],
    )
    effect = {
        "kind": "order.refunded",
        "order_id": data.order_id,
        "refund_id": data.refund_id,
        "amount": data.amount,
        "refunded_total": order.refunded_amount + data.amount,
    }
    row = points_events.order_row(ctx.conn, data.order_id)
    points = points_events.on_order_refunded(
        ctx.svc,
        ctx.conn,
        event,
        row,
        int(row.refunded_amount),
        data.refund_id,
        _actor(ctx, event),
    )
    points += growth_events.on_order_refunded(
        ctx.svc, ctx.conn, event, row, data.refund_id, _actor(ctx, event)
    )
    return Applied([effect, *points])


# ---------------------------------------------------------------- reviews and the rest


def on_review_approved(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.ReviewApproved)
    if orders_repo.get_review(ctx.conn, data.review_id) is not None:
        raise conflict(
            EventError.RECORD_ID_REUSED,
            f"review {data.review_id} was already approved by another event",
            field="data.review_id",
        )
    orders_repo.insert_review(
        ctx.conn,
        {
            "review_id": data.review_id,
            "member_id": event.member_id,
            "order_id": data.order_id,
            "sku": data.sku,
            "rating": data.rating,
            "has_photos": data.has_photos,
            "approved_at": event.occurred_at,
        },
    )
    effect = {"kind": "review.recorded", "review_id": data.review_id}
    actor = _actor(ctx, event)
    subject = f"review:{data.review_id}"
    points = points_events.on_action(
        ctx.svc, ctx.conn, event, Trigger.REVIEW, actor, subject=subject
    )
    if data.has_photos:
        points += points_events.on_action(
            ctx.svc, ctx.conn, event, Trigger.PHOTO_REVIEW, actor, subject=subject
        )
    points += growth_events.on_review_approved(ctx.svc, ctx.conn, event, data, actor)
    return Applied([effect, *points], satisfies=[review_key(data.review_id)])


def on_review_deleted(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.ReviewDeleted)
    review = orders_repo.get_review(ctx.conn, data.review_id)
    assert review is not None, "prerequisite checked the review exists"
    if review.member_id != event.member_id:
        raise conflict(
            EventError.REVIEW_MEMBER_MISMATCH,
            "the review belongs to another member",
            field="member_id",
        )
    if review.deleted_at is None:
        orders_repo.delete_review(ctx.conn, data.review_id, event.occurred_at)
        actor = _actor(ctx, event)
        growth = growth_events.on_review_deleted(ctx.svc, ctx.conn, event, data.review_id, actor)
        growth += points_events.take_back_subject(
            ctx.svc, ctx.conn, event, f"review:{data.review_id}", 1, 1, actor
        )
        return Applied([{"kind": "review.deleted", "review_id": data.review_id}, *growth])
    return Applied([{"kind": "review.already_deleted", "review_id": data.review_id}])


def on_shared(ctx: Context, event: ValidEvent) -> Applied:
    actor = _actor(ctx, event)
    points = points_events.on_action(ctx.svc, ctx.conn, event, Trigger.SHARE, actor)
    points += growth_events.on_action(ctx.svc, ctx.conn, event, GrowthKind.SHARE, actor)
    return Applied([{"kind": "share.recorded"}, *points])


def on_signed_in(ctx: Context, event: ValidEvent) -> Applied:
    """Daily sign-in (签到): once per business day, with a running streak."""
    day = business_day(event.occurred_at, ctx.svc.settings.zone)
    streak = members_repo.record_signin(ctx.conn, ctx.member.member_id, day, event.occurred_at)
    if streak is None:
        return Applied([{"kind": "sign_in.already_today", "business_day": day.isoformat()}])
    data = event.data
    assert isinstance(data, ev_schema.MemberSignedIn)
    channel = data.channel.value if data.channel else None
    points = points_events.on_action(
        ctx.svc, ctx.conn, event, Trigger.SIGN_IN, _actor(ctx, event), channel
    )
    points += growth_events.on_action(
        ctx.svc, ctx.conn, event, GrowthKind.SIGN_IN, _actor(ctx, event)
    )
    effect = {"kind": "sign_in.recorded", "business_day": day.isoformat(), "streak": streak}
    return Applied([effect, *points])


def on_recharged(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.WalletRecharged)
    actor = _actor(ctx, event)
    program = wallet.wallet_program(ctx.svc, ctx.conn, event.store_id)
    book = wallet.open_book(ctx.svc, ctx.conn, program, event.member_id, event.occurred_at, actor)
    effect = book.recharge(data.recharge_id, data.amount)
    channel = data.channel.value if data.channel else None
    points = points_events.on_action(
        ctx.svc,
        ctx.conn,
        event,
        Trigger.RECHARGE,
        actor,
        channel,
        subject=f"recharge:{data.recharge_id}",
    )
    points += growth_events.on_metric_event(ctx.svc, ctx.conn, event, actor)
    return Applied([effect, *points])


def on_recharge_refunded(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.WalletRechargeRefunded)
    program = wallet.wallet_program(ctx.svc, ctx.conn, event.store_id)
    actor = _actor(ctx, event)
    book = wallet.open_book(ctx.svc, ctx.conn, program, event.member_id, event.occurred_at, actor)
    effect = book.refund_recharge(data.recharge_id, data.refund_id, data.amount)
    points = points_events.take_back_subject(
        ctx.svc,
        ctx.conn,
        event,
        f"recharge:{data.recharge_id}",
        effect["refunded_total"],
        effect["recharged"],
        actor,
    )
    growth = growth_events.on_metric_event(ctx.svc, ctx.conn, event, actor)
    return Applied([effect, *points, *growth])


def on_membership_purchased(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.MembershipPurchased)
    effects = memberships.on_membership_purchased(
        ctx.svc, ctx.conn, event, data, _actor(ctx, event)
    )
    return Applied(effects, satisfies=[membership_key(data.purchase_id)])


def on_membership_refunded(ctx: Context, event: ValidEvent) -> Applied:
    data = event.data
    assert isinstance(data, ev_schema.MembershipRefunded)
    return Applied(
        memberships.on_membership_refunded(ctx.svc, ctx.conn, event, data, _actor(ctx, event))
    )


def _actor(ctx: Context, event: ValidEvent) -> str:
    return f"event:{ctx.sender}/{event.id}"[:200]


def on_recorded(ctx: Context, event: ValidEvent) -> Applied:
    """Events kept in the inbox for later capabilities (shares, recharges, plans, custom)."""
    return Applied([{"kind": "event.recorded"}])


HANDLERS: dict[str, Handler] = {
    "member.registered": on_registered,
    "member.updated": on_updated,
    "member.login": on_login,
    "order.paid": on_order_paid,
    "order.completed": on_order_completed,
    "order.cancelled": on_order_cancelled,
    "order.refunded": on_order_refunded,
    "review.approved": on_review_approved,
    "review.deleted": on_review_deleted,
    "content.shared": on_shared,
    "member.signed_in": on_signed_in,
    "wallet.recharged": on_recharged,
    "wallet.recharge_refunded": on_recharge_refunded,
    "membership.purchased": on_membership_purchased,
    "membership.refunded": on_membership_refunded,
}


def handler_for(event_type: str) -> Handler:
    return HANDLERS.get(event_type, on_recorded)


def missing_prerequisite(conn: Connection, event: ValidEvent) -> str | None:
    """The waiting key of the earlier fact this event needs, if that fact is not here yet."""
    data = event.data
    if isinstance(data, ev_schema.OrderRef | ev_schema.OrderRefunded):
        present = orders_repo.order_exists(conn, data.order_id)
        return None if present else order_key(data.order_id)
    if isinstance(data, ev_schema.MembershipRefunded):
        present = memberships.purchase_recorded(conn, event.member_id, data.purchase_id)
        return None if present else membership_key(data.purchase_id)
    if isinstance(data, ev_schema.ReviewDeleted):
        present = orders_repo.get_review(conn, data.review_id) is not None
        return None if present else review_key(data.review_id)
    return None


WAITING_DESCRIPTIONS = {
    "order": "order.paid of order {}",
    "review": "review.approved of review {}",
    "member": "member.registered of member {}",
    "membership": "membership.purchased of purchase {}",
}


def describe_waiting(key: str) -> str:
    kind, _, ident = key.partition(":")
    return WAITING_DESCRIPTIONS[kind].format(ident)
