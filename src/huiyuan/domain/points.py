"""Points (积分) rules: what an order or an action earns, when points expire, which lots a spend
draws, and how much a refund takes back. Pure functions over plain values; the services store.

Invariants the functions keep:
- points are whole numbers, and every rate is a ``Decimal`` rounded as the rule states;
- a spend draws lots oldest-expiry first (lots that never expire last), never more than a lot
  holds;
- a refund takes back ``round_down(earned × refunded_so_far / paid)`` *in total*, so a series of
  partial refunds never takes back more — or, once the order is fully refunded, less — than was
  earned, whatever the rounding of each step.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import NamedTuple
from zoneinfo import ZoneInfo

ROUNDING = {"floor": ROUND_FLOOR, "half_up": ROUND_HALF_UP, "ceiling": ROUND_CEILING}


class Trigger(StrEnum):
    """Actions that earn fixed points."""

    REGISTRATION = "registration"
    SIGN_IN = "sign_in"
    REVIEW = "review"
    PHOTO_REVIEW = "photo_review"
    SHARE = "share"
    RECHARGE = "recharge"


@dataclass(frozen=True, slots=True)
class Conditions:
    """When a rule applies. Empty collections mean "any"."""

    categories: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()
    stores: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    plans: frozenset[str] = frozenset()  # paid plans (付费会员) one of which must be running
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    first_n_orders: int | None = None
    exclude_virtual: bool = True


@dataclass(frozen=True, slots=True)
class Caps:
    per_order: int | None = None
    per_day: int | None = None
    per_month: int | None = None


@dataclass(frozen=True, slots=True)
class PerAmountRule:
    """Every ``per_fen`` paid earns ``points`` (pro rata, rounded as stated)."""

    id: str
    per_fen: int
    points: int
    rounding: str = "floor"
    multiplier: Decimal = Decimal(1)
    conditions: Conditions = field(default_factory=Conditions)
    caps: Caps = field(default_factory=Caps)
    funded_by: str | None = None  # a store whose budget pays for these points


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """A one-off bonus when the order's eligible amount reaches ``threshold_fen``."""

    id: str
    threshold_fen: int
    points: int
    conditions: Conditions = field(default_factory=Conditions)
    caps: Caps = field(default_factory=Caps)
    funded_by: str | None = None


@dataclass(frozen=True, slots=True)
class FixedRule:
    """Fixed points for an action (sign-in, review, share …)."""

    id: str
    trigger: Trigger
    points: int
    conditions: Conditions = field(default_factory=Conditions)
    caps: Caps = field(default_factory=Caps)
    funded_by: str | None = None


@dataclass(frozen=True, slots=True)
class Multiplier:
    """A campaign's or a tier's multiplier on order points (10× in double-eleven week)."""

    id: str
    factor: Decimal
    conditions: Conditions = field(default_factory=Conditions)


OrderRule = PerAmountRule | ThresholdRule
Rule = PerAmountRule | ThresholdRule | FixedRule


# Value types made for every order (a batch makes thousands): tuples, which build in a
# third of the time of frozen dataclasses and are as immutable.
class Line(NamedTuple):
    sku: str
    category: str | None
    brand: str | None
    paid_amount: int
    virtual: bool


class OrderView(NamedTuple):
    order_id: str
    store_id: str | None
    channel: str | None
    paid_at: datetime
    amount: int
    lines: Sequence[Line]
    order_number: int  # 1 for the member's first order in this program


class Award(NamedTuple):
    rule_id: str
    points: int
    reason_zh: str
    reason_en: str
    funded_by: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    """What a member already earned under each rule today and this month (business time)."""

    today: Mapping[str, int] = field(default_factory=dict)
    this_month: Mapping[str, int] = field(default_factory=dict)


NO_HISTORY = History()  # nothing earned yet (or no rule is capped by day or month)


def yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def _matches_context(
    c: Conditions,
    *,
    at: datetime,
    store: str | None,
    channel: str | None,
    tier: str | None,
    plans: frozenset[str],
) -> bool:
    if c.starts_at is not None and at < c.starts_at:
        return False
    if c.ends_at is not None and at >= c.ends_at:
        return False
    if c.stores and (store or "platform") not in c.stores:
        return False
    if c.channels and channel not in c.channels:
        return False
    if c.plans and not (c.plans & plans):
        return False
    return not (c.tiers and tier not in c.tiers)


def _line_counts(c: Conditions, line: Line) -> bool:
    if c.exclude_virtual and line.virtual:
        return False
    if c.categories and line.category not in c.categories:
        return False
    if c.brands and line.brand not in c.brands:
        return False
    return not (c.skus and line.sku not in c.skus)


def eligible_amount(c: Conditions, lines: Iterable[Line]) -> int:
    return sum(line.paid_amount for line in lines if _line_counts(c, line))


def _order_applies(
    c: Conditions, order: OrderView, tier: str | None, plans: frozenset[str]
) -> bool:
    if c.first_n_orders is not None and order.order_number > c.first_n_orders:
        return False
    return _matches_context(
        c, at=order.paid_at, store=order.store_id, channel=order.channel, tier=tier, plans=plans
    )


def capped(rule_id: str, points: int, caps: Caps, history: History) -> int:
    """Points after the per-order, per-day and per-month caps."""
    if caps.per_order is not None:
        points = min(points, caps.per_order)
    if caps.per_day is not None:
        points = min(points, max(caps.per_day - history.today.get(rule_id, 0), 0))
    if caps.per_month is not None:
        points = min(points, max(caps.per_month - history.this_month.get(rule_id, 0), 0))
    return max(points, 0)


def order_awards(
    rules: Sequence[OrderRule],
    multipliers: Sequence[Multiplier],
    order: OrderView,
    *,
    tier: str | None,
    history: History,
    plans: frozenset[str] = frozenset(),
) -> list[Award]:
    """What an order earns under each rule that applies (zero awards are left out). ``tier``
    is the member's tier and ``plans`` the paid plans running for them when the order was
    paid, for rules and multipliers conditioned on them (a tier's 2×, PLUS members' 2×)."""
    factor = Decimal(1)
    applied = []
    for m in multipliers:
        if _order_applies(m.conditions, order, tier, plans):
            factor *= m.factor
            applied.append(f"{m.id}×{m.factor}")
    awards = []
    for rule in rules:
        if not _order_applies(rule.conditions, order, tier, plans):
            continue
        base = eligible_amount(rule.conditions, order.lines)
        if isinstance(rule, PerAmountRule):
            # Multiply before dividing: ¥1 at 3 points per ¥3 is exactly 1 point, not 0.999….
            raw = Decimal(base) * rule.points * rule.multiplier * factor / rule.per_fen
            points = int(raw.to_integral_value(rounding=ROUNDING[rule.rounding]))
            zh = (
                f"订单 {order.order_id} 计积分金额 {yuan(base)}，"
                f"每 {yuan(rule.per_fen)} 得 {rule.points} 积分"
            )
            en = (
                f"order {order.order_id}: {yuan(base)} eligible, "
                f"{rule.points} point(s) per {yuan(rule.per_fen)}"
            )
            if rule.multiplier != 1 or factor != 1:
                times = rule.multiplier * factor
                zh += f"，{times}倍"
                en += f", ×{times}"
                if applied:
                    en += f" ({', '.join(applied)})"
        else:
            if base < rule.threshold_fen or base == 0:
                continue
            points = rule.points
            zh = f"订单 {order.order_id} 满 {yuan(rule.threshold_fen)} 奖励"
            en = f"order {order.order_id} reached {yuan(rule.threshold_fen)}: bonus"
        points = capped(rule.id, points, rule.caps, history)
        if points > 0:
            awards.append(Award(rule.id, points, zh, en, rule.funded_by))
    return awards


TRIGGER_WORDS = {
    Trigger.REGISTRATION: ("注册奖励", "registration bonus"),
    Trigger.SIGN_IN: ("签到奖励", "sign-in bonus"),
    Trigger.REVIEW: ("评价奖励", "review bonus"),
    Trigger.PHOTO_REVIEW: ("晒图评价奖励", "photo review bonus"),
    Trigger.SHARE: ("分享奖励", "share bonus"),
    Trigger.RECHARGE: ("充值奖励", "recharge bonus"),
}


def action_awards(
    rules: Sequence[FixedRule],
    trigger: Trigger,
    *,
    at: datetime,
    store: str | None,
    channel: str | None,
    tier: str | None,
    history: History,
    plans: frozenset[str] = frozenset(),
) -> list[Award]:
    awards = []
    for rule in rules:
        if rule.trigger is not trigger:
            continue
        if not _matches_context(
            rule.conditions, at=at, store=store, channel=channel, tier=tier, plans=plans
        ):
            continue
        points = capped(rule.id, rule.points, rule.caps, history)
        if points > 0:
            zh, en = TRIGGER_WORDS[trigger]
            awards.append(Award(rule.id, points, zh, en, rule.funded_by))
    return awards


# ---------------------------------------------------------------- expiry


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """``rolling``: N days after release. ``calendar``: end of month/day, ``years_after`` years
    after the release year (points of 2026 expire on 2027-12-31 with years_after=1).
    ``never``: points do not expire."""

    mode: str = "rolling"
    days: int = 365
    years_after: int = 1
    month: int = 12
    day: int = 31


def expires_at(policy: ExpiryPolicy, released_at: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant a lot released at ``released_at`` expires (end of the stated business day)."""
    if policy.mode == "never":
        return None
    local = released_at.astimezone(zone)
    if policy.mode == "rolling":
        last_day = local.date() + timedelta(days=policy.days)
    else:
        year = local.year + policy.years_after
        day = min(policy.day, calendar.monthrange(year, policy.month)[1])
        last_day = date(year, policy.month, day)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=zone)
    return end.astimezone(UTC)


# ---------------------------------------------------------------- spending and refunds


@dataclass(frozen=True, slots=True)
class LotBalance:
    lot_id: int
    remaining: int
    expires_at: datetime | None


def expiry_order(lot: LotBalance) -> tuple[bool, datetime, int]:
    far = datetime.max.replace(tzinfo=UTC)
    return (lot.expires_at is None, lot.expires_at or far, lot.lot_id)


def plan_draws(lots: Iterable[LotBalance], amount: int) -> list[tuple[int, int]]:
    """Which lots a spend of ``amount`` takes from, oldest expiry first: ``[(lot_id, take)]``.

    Takes as much as the lots hold if they hold less; the caller decides what a shortfall means.
    """
    if amount < 0:
        raise ValueError("a spend is positive")
    plan = []
    left = amount
    for lot in sorted(lots, key=expiry_order):
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            plan.append((lot.lot_id, take))
            left -= take
    return plan


def kept_by_holds(reserved: int, due: Iterable[int]) -> list[int]:
    """What of each lot past its expiry a member's checkout holds keep from expiring; ``due``:
    the lots' points, in the order a spend draws them (``expiry_order``).

    A hold keeps the points its capture will take: the oldest first, as if they had been taken
    at the checkout — so the first ``reserved`` points of the lots past their expiry stay, and
    the rest expire on time. The expiry statements (``points_repo.expire_due_lots``) apply
    the same rule in SQL."""
    kept = []
    left = max(reserved, 0)
    for points in due:
        keep = min(points, left)
        kept.append(keep)
        left -= keep
    return kept


def clawback_due(earned: int, already_taken: int, refunded_total: int, paid: int) -> int:
    """Points still to take back from ``earned`` after refunds totalling ``refunded_total``."""
    if paid <= 0:
        return max(earned - already_taken, 0) if refunded_total > 0 else 0
    refunded_total = min(refunded_total, paid)
    target = earned if refunded_total == paid else earned * refunded_total // paid
    return max(target - already_taken, 0)


@dataclass(frozen=True, slots=True)
class RedemptionPolicy:
    """Order deduction: ``fen_per_point`` value, multiples of ``min_unit``, at most
    ``max_order_share`` of the order."""

    fen_per_point: int = 1
    min_unit: int = 1
    max_order_share: Decimal = Decimal("0.5")


def max_deduction_points(policy: RedemptionPolicy, order_amount: int) -> int:
    """The most points an order of ``order_amount`` fen may use, in whole ``min_unit``s."""
    cap_fen = int((Decimal(order_amount) * policy.max_order_share).to_integral_value(ROUND_FLOOR))
    points = cap_fen // policy.fen_per_point
    return points - points % policy.min_unit
