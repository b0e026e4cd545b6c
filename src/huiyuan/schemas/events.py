"""The event envelope and the ``data`` of each event type.

Money is integer fen and strictly an integer: ``"12990"`` and ``129.9`` are refused rather than
guessed at. Unknown fields are refused too, so a typo (``"ammount"``) is an error naming the
field instead of a silently missing value. Field paths in errors read like the JSON
(``data.items[0].paid_amount``).
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt

Fen = Annotated[StrictInt, Field(ge=0, le=10**13, description="money in integer fen")]
PositiveFen = Annotated[StrictInt, Field(gt=0, le=10**13, description="money in integer fen")]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@\-]+$")]
Text = Annotated[str, Field(max_length=200)]

CUSTOM_TYPE = re.compile(r"^custom\.[a-z][a-z0-9_]{0,47}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


class Channel(StrEnum):
    APP = "app"
    MINI_PROGRAM = "mini_program"
    H5 = "h5"
    WEB = "web"
    OFFLINE_STORE = "offline_store"
    CAMPAIGN = "campaign"
    CUSTOMER_SERVICE = "customer_service"
    OTHER = "other"


class Address(Strict):
    recipient: Annotated[str, Field(max_length=100)]
    phone: Annotated[str, Field(max_length=30)]
    region: Annotated[str, Field(max_length=100)]
    detail: Annotated[str, Field(max_length=300)]
    postal_code: Annotated[str | None, Field(max_length=12)] = None
    is_default: StrictBool = False


class InvoiceTitle(Strict):
    kind: Literal["personal", "company"]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    tax_id: Annotated[str | None, Field(max_length=30)] = None
    is_default: StrictBool = False


class Profile(Strict):
    """Profile fields. ``member.updated`` changes only the fields present; ``null`` clears."""

    phone: Annotated[str | None, Field(max_length=30)] = None
    name: Annotated[str | None, Field(max_length=100)] = None
    nickname: Annotated[str | None, Field(max_length=100)] = None
    gender: Gender | None = None
    birthday: date | None = None
    region: Annotated[str | None, Field(max_length=100)] = None
    email: Annotated[str | None, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")] = None
    avatar_url: Annotated[str | None, Field(max_length=500)] = None
    education: Annotated[str | None, Field(max_length=50)] = None
    occupation: Annotated[str | None, Field(max_length=100)] = None
    addresses: Annotated[list[Address] | None, Field(max_length=50)] = None
    invoice_titles: Annotated[list[InvoiceTitle] | None, Field(max_length=20)] = None


class MemberRegistered(Profile):
    channel: Channel = Channel.OTHER
    inviter_id: Ident | None = None


class MemberUpdated(Profile):
    pass


class MemberLogin(Strict):
    channel: Channel | None = None
    device: Text | None = None


class OrderItem(Strict):
    sku: Ident
    name: Annotated[str, Field(min_length=1, max_length=200)]
    category: Text | None = None
    brand: Text | None = None
    quantity: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    unit_price: Fen
    paid_amount: Fen
    virtual: StrictBool = False


class OrderPaid(Strict):
    order_id: Ident
    amount: Fen = Field(description="what the member paid, excluding shipping")
    shipping_fee: Fen = 0
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=500)]
    channel: Channel | None = None
    points_reservation_id: Ident | None = Field(
        default=None, description="a points hold to capture for this order"
    )


class OrderRef(Strict):
    order_id: Ident


class OrderCancelled(OrderRef):
    reason: Text | None = None


class RefundItem(Strict):
    sku: Ident
    quantity: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    amount: Fen


class OrderRefunded(Strict):
    order_id: Ident
    refund_id: Ident
    amount: PositiveFen
    items: Annotated[list[RefundItem] | None, Field(max_length=500)] = None
    reason: Text | None = None


class ReviewApproved(Strict):
    review_id: Ident
    order_id: Ident | None = None
    sku: Ident | None = None
    rating: Annotated[StrictInt | None, Field(ge=1, le=5)] = None
    has_photos: StrictBool = False


class ReviewDeleted(Strict):
    review_id: Ident


class ContentShared(Strict):
    content_id: Ident | None = None
    target: Text | None = Field(default=None, description="where it was shared: wechat, weibo …")


class WalletRecharged(Strict):
    recharge_id: Ident
    amount: PositiveFen
    channel: Channel | None = None


class WalletRechargeRefunded(Strict):
    recharge_id: Ident
    refund_id: Ident
    amount: PositiveFen = Field(description="principal returned, in fen")


class MemberSignedIn(Strict):
    channel: Channel | None = None


class MembershipPurchased(Strict):
    purchase_id: Ident
    plan_id: Ident
    amount: Fen
    channel: Channel | None = None


class MembershipRefunded(Strict):
    purchase_id: Ident
    refund_id: Ident


class CustomData(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


DATA_MODELS: dict[str, type[BaseModel]] = {
    "member.registered": MemberRegistered,
    "member.updated": MemberUpdated,
    "member.login": MemberLogin,
    "order.paid": OrderPaid,
    "order.completed": OrderRef,
    "order.cancelled": OrderCancelled,
    "order.refunded": OrderRefunded,
    "review.approved": ReviewApproved,
    "review.deleted": ReviewDeleted,
    "content.shared": ContentShared,
    "wallet.recharged": WalletRecharged,
    "wallet.recharge_refunded": WalletRechargeRefunded,
    "member.signed_in": MemberSignedIn,
    "membership.purchased": MembershipPurchased,
    "membership.refunded": MembershipRefunded,
}

EVENT_TYPES = (*DATA_MODELS, "custom.<name>")


class Envelope(Strict):
    """What every event carries. ``data`` is checked against its type's model afterwards."""

    id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
    type: Annotated[str, Field(min_length=1, max_length=64)]
    occurred_at: AwareDatetime
    member_id: Ident
    store_id: Ident | None = None
    data: dict[str, Any] = Field(default_factory=dict)


def data_model_for(event_type: str) -> type[BaseModel] | None:
    if event_type in DATA_MODELS:
        return DATA_MODELS[event_type]
    if CUSTOM_TYPE.match(event_type):
        return CustomData
    return None
