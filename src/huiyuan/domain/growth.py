"""Growth value (成长值) rules: behaviour growth per action and purchase growth per order.

Growth is never spent; it decides the tier. Purchase growth is the paid amount times a rate and
an acceleration coefficient that may depend on the member's tier; it is credited when the order
completes and taken back in proportion to refunds (running totals, like points). A review earns
growth only for an item paid at least ``min_item_fen`` and not virtual; a photo review only
among the first N photo reviews of that SKU. Daily caps apply per rule and business day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class GrowthKind(StrEnum):
    LOGIN = "login"
    PURCHASE = "purchase"
    REVIEW = "review"
    PHOTO_REVIEW = "photo_review"
    SHARE = "share"
    SIGN_IN = "sign_in"
    REGISTRATION = "registration"
    PROFILE_COMPLETION = "profile_completion"


@dataclass(frozen=True, slots=True)
class GrowthRule:
    id: str
    kind: GrowthKind
    points: int
    per_fen: int = 100  # purchase: growth per this many fen paid
    coefficients: Mapping[str, Decimal] = field(default_factory=dict)  # tier id → coefficient
    min_item_fen: int = 0  # review: the item must have been paid at least this
    first_n: int | None = None  # photo review: only the first N of the SKU
    skip_lowest_tier: bool = False  # login: members of the lowest tier earn nothing
    per_day: int | None = None


def purchase_growth(rule: GrowthRule, paid_fen: int, tier: str | None) -> int:
    """Growth for ``paid_fen`` paid: ``paid / per_fen × points × coefficient``, rounded down."""
    coefficient = Decimal(rule.coefficients.get(tier or "", Decimal(1)))
    # Exact integer arithmetic: dividing first (¥1 at 3 per ¥3 = 0.999…) would lose a unit.
    numerator, denominator = coefficient.as_integer_ratio()
    return paid_fen * rule.points * numerator // (rule.per_fen * denominator)


def capped_growth(points: int, per_day: int | None, earned_today: int) -> int:
    if per_day is None:
        return max(points, 0)
    return max(min(points, per_day - earned_today), 0)


def growth_taken_back(earned: int, already: int, refunded_total: int, paid: int) -> int:
    """Growth still to take back after refunds totalling ``refunded_total`` of ``paid``."""
    if earned <= 0 or paid <= 0:
        return 0
    target = earned if refunded_total >= paid else earned * refunded_total // paid
    return max(target - already, 0)
