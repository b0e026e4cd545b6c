"""Error codes the services raise. One enum per context; the API maps them to HTTP in one place.

A code is a stable string integrators can branch on; the message is for people.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class ErrorKind(StrEnum):
    """How the caller should read an error; the API turns it into a status code."""

    INVALID = "invalid"  # the request itself is wrong (422)
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # contradicts what is already recorded (409)
    FORBIDDEN = "forbidden"  # the caller may not do this (403)


class EventError(StrEnum):
    ID_REUSED = "event_id_reused"
    UNKNOWN_STORE = "unknown_store"
    STORE_NOT_ALLOWED = "store_not_allowed"
    MEMBER_MISMATCH = "order_member_mismatch"
    REVIEW_MEMBER_MISMATCH = "review_member_mismatch"
    STORE_MISMATCH = "order_store_mismatch"
    ORDER_ALREADY_PAID = "order_already_paid"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_COMPLETED = "order_already_completed"
    ORDER_FULLY_REFUNDED = "order_fully_refunded"
    REFUND_EXCEEDS_ORDER = "refund_exceeds_order"
    REFUND_ITEM_UNKNOWN = "refund_item_unknown"
    REFUND_ID_REUSED = "refund_id_reused"
    RECORD_ID_REUSED = "record_id_reused"
    EVENT_NOT_FOUND = "event_not_found"
    AMOUNT_MISMATCH = "amount_mismatch"
    DUPLICATE_SKU = "duplicate_sku"
    CAUSE_NEVER_ARRIVED = "cause_never_arrived"
    APPLY_FAILED = "event_apply_failed"


class PointsError(StrEnum):
    INSUFFICIENT_POINTS = "insufficient_points"
    RESERVATION_NOT_FOUND = "reservation_not_found"
    RESERVATION_NOT_HELD = "reservation_not_held"
    ID_REUSED = "points_request_id_reused"
    BUDGET_EXHAUSTED = "budget_exhausted"
    NOT_A_STORE = "not_a_store"
    BELOW_MINIMUM_UNIT = "below_minimum_unit"
    DEDUCTION_EXCEEDS_SHARE = "deduction_exceeds_share"
    PROGRAM_NOT_ENROLLED = "program_not_enrolled"
    REDEMPTION_NOT_FOUND = "redemption_not_found"
    MALL_ITEM_NOT_FOUND = "mall_item_not_found"
    MALL_ITEM_UNAVAILABLE = "mall_item_unavailable"
    MALL_ITEM_NOT_FOR_TIER = "mall_item_not_for_tier"
    MALL_ITEM_LIMIT_REACHED = "mall_item_limit_reached"
    MALL_ITEM_OUT_OF_STOCK = "mall_item_out_of_stock"


class WalletError(StrEnum):
    INSUFFICIENT_BALANCE = "insufficient_balance"
    RECHARGE_ID_REUSED = "recharge_id_reused"
    RECHARGE_NOT_FOUND = "recharge_not_found"
    REFUND_EXCEEDS = "wallet_refund_exceeds"
    PAYMENT_NOT_FOUND = "wallet_payment_not_found"
    PAYMENT_ID_REUSED = "wallet_payment_id_reused"
    REFUND_ID_REUSED = "wallet_refund_id_reused"


class TierError(StrEnum):
    PROGRAM_NOT_FOUND = "program_not_found"
    NO_LADDER = "no_tier_ladder"
    UNKNOWN_TIER = "unknown_tier"
    END_IN_PAST = "end_in_past"
    RFM_DISABLED = "rfm_disabled"


class MembershipError(StrEnum):
    PROGRAM_NOT_FOUND = "membership_program_not_found"
    PLAN_UNKNOWN = "membership_plan_unknown"
    AMOUNT_MISMATCH = "membership_amount_mismatch"
    PURCHASE_ID_REUSED = "membership_purchase_id_reused"
    TRIAL_USED = "membership_trial_used"
    TRIAL_WHILE_ACTIVE = "membership_trial_while_active"
    PURCHASE_NOT_FOUND = "membership_purchase_not_found"
    ALREADY_REFUNDED = "membership_already_refunded"
    NOT_LATEST = "membership_not_latest"
    ENDED = "membership_ended"
    REFUND_WINDOW_PASSED = "membership_refund_window_passed"
    BENEFIT_USED = "membership_benefit_used"


class MemberError(StrEnum):
    NOT_FOUND = "member_not_found"
    PHONE_INVALID = "phone_invalid"


class ReadError(StrEnum):
    AS_OF_IN_FUTURE = "as_of_in_future"


class AdminError(StrEnum):
    OWNER_EXISTS = "owner_exists"
    OWNER_NOT_FOUND = "owner_not_found"
    PROGRAM_EXISTS = "program_exists"
    KEY_NOT_FOUND = "api_key_not_found"
    SCOPE_MISSING = "scope_missing"
    DOCUMENT_INVALID = "program_document_invalid"
    PROGRAM_NOT_FOUND = "program_not_found"


Code = (
    EventError
    | MemberError
    | AdminError
    | PointsError
    | WalletError
    | TierError
    | MembershipError
    | ReadError
)


class DomainError(Exception):
    """A rule said no. Nothing of the request has been written when this is raised."""

    def __init__(
        self, code: Code, message: str, *, kind: ErrorKind, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind
        self.field = field


def invalid(code: Code, message: str, field: str | None = None) -> DomainError:
    return DomainError(code, message, kind=ErrorKind.INVALID, field=field)


def past_instant(as_of: datetime, now: datetime) -> datetime:
    """``as_of`` of a balance asked at a past instant: a future one is refused (a balance to
    come is not known yet)."""
    if as_of > now:
        raise invalid(ReadError.AS_OF_IN_FUTURE, "as_of is in the future", field="as_of")
    return as_of


def conflict(code: Code, message: str, field: str | None = None) -> DomainError:
    return DomainError(code, message, kind=ErrorKind.CONFLICT, field=field)


def not_found(code: Code, message: str) -> DomainError:
    return DomainError(code, message, kind=ErrorKind.NOT_FOUND)


def forbidden(code: Code, message: str, field: str | None = None) -> DomainError:
    return DomainError(code, message, kind=ErrorKind.FORBIDDEN, field=field)
