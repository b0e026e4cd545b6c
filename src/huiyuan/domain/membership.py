"""Paid membership (付费会员, like JD PLUS): terms, chains, refunds, overlapping benefits and the
savings calculator's maths. Pure functions over plain values; the services store.

Rules:
- **Periods.** A plan runs ``monthly`` (1), ``quarterly`` (3) or ``annual`` (12) calendar months,
  counted in the business time zone and keeping the local time of day. A day the target month
  lacks is clamped to its last day: Jan 31 + 1 month is Feb 28 (29 in a leap year). A trial runs
  ``trial_days`` calendar days.
- **Extension.** A purchase while the member holds a subscription that has not ended starts at
  the *current end of the chain* (the latest end among subscriptions not refunded) and runs one
  period from there, so buying an annual plan twice gives two years. Each term counts from the
  previous term's end, so clamping carries on (Jan 31 → Feb 28 → Mar 28).
- **Switching plans** never cuts the current term short: another plan bought while one is
  active is queued after the current end, and its benefits apply from then.
- **Trials.** A plan with ``trial_days > 0`` and a price, bought at amount 0, is a trial: once
  per member and plan, and only for a member with no subscription running or queued.
- **Refunds.** Only the latest subscription of a chain (the one ending last) may be refunded —
  refunding an earlier term would leave a hole in the chain — and only before it ends, within
  ``refund_window_days`` of its purchase and, when the plan says so, while no benefit has been
  used. A refunded term gives no benefits.
- **Overlaps.** A tier's and a plan's benefits of one kind overlap. Percent discounts never stack:
  the largest that applies to an item wins. Points multipliers follow the program's
  ``overlap``: ``max`` (the largest wins) or ``multiply`` (they multiply). Free-shipping monthly
  quotas do not add up: the largest wins (no quota means unlimited).
- **Savings.** What a plan would have saved is what it adds to the member's tier benefits, on
  their real orders: the extra discount (the paid amounts already carry the tier's discount, so
  the extra on an item is ``paid × (with − without) / (100 − without)``, rounded half up per
  line), the extra points the higher multiplier gives on each order's points (rounded down per
  order, valued at the program's fen per point) and the shipping fees the larger free-shipping
  quota covers, the earliest orders with a fee first in each business month.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from huiyuan.domain.business_time import require_aware
from huiyuan.domain.errors import MembershipError, conflict
from huiyuan.domain.money import Money

PERIOD_MONTHS = {"monthly": 1, "quarterly": 3, "annual": 12}
PERIOD_WORDS = {
    "monthly": ("月", "month"),
    "quarterly": ("季", "quarter"),
    "annual": ("年", "year"),
}
ACTIVE, REFUNDED, EXPIRED = "active", "refunded", "expired"
HUNDRED = Decimal(100)
ONE = Decimal(1)


# ---------------------------------------------------------------- periods


def add_months(moment: datetime, months: int, zone: ZoneInfo) -> datetime:
    """``moment`` plus whole calendar months in ``zone`` (same local time, month end clamped)."""
    local = require_aware(moment).astimezone(zone)
    index = local.year * 12 + local.month - 1 + months
    year, month = index // 12, index % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return datetime.combine(date(year, month, day), local.time(), tzinfo=zone).astimezone(UTC)


def add_days(moment: datetime, days: int, zone: ZoneInfo) -> datetime:
    """``moment`` plus calendar days in ``zone`` (same local time)."""
    local = require_aware(moment).astimezone(zone)
    day = local.date() + timedelta(days=days)
    return datetime.combine(day, local.time(), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Length:
    """How long a term runs: calendar months (a paid period) or days (a trial)."""

    months: int = 0
    days: int = 0

    @classmethod
    def of_period(cls, period: str) -> Length:
        return cls(months=PERIOD_MONTHS[period])

    def after(self, start: datetime, zone: ZoneInfo) -> datetime:
        return add_days(add_months(start, self.months, zone), self.days, zone)


# ---------------------------------------------------------------- chains


@dataclass(frozen=True, slots=True)
class Term:
    """One subscription as the rules see it."""

    purchase_id: str
    plan_id: str
    starts_at: datetime
    ends_at: datetime
    status: str = ACTIVE
    purchased_at: datetime | None = None
    benefit_used: bool = False
    price_fen: int = 0

    @property
    def counts(self) -> bool:
        return self.status != REFUNDED


def chain_end(terms: Iterable[Term], at: datetime) -> datetime | None:
    """Where the member's chain ends, if a subscription not refunded runs past ``at``."""
    ends = [t.ends_at for t in terms if t.counts and t.ends_at > at]
    return max(ends) if ends else None


def place(
    terms: Sequence[Term], purchased_at: datetime, length: Length, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """Where a new purchase runs: from the purchase, or from the current chain's end."""
    start = chain_end(terms, purchased_at) or purchased_at
    return start, length.after(start, zone)


def latest(terms: Iterable[Term]) -> Term | None:
    """The subscription a chain ends with (refunded ones do not count)."""
    counted = [t for t in terms if t.counts]
    return max(counted, key=lambda t: (t.ends_at, t.starts_at)) if counted else None


def in_force(terms: Iterable[Term], at: datetime) -> Term | None:
    """The subscription giving benefits at ``at``."""
    running = [t for t in terms if t.counts and t.starts_at <= at < t.ends_at]
    return max(running, key=lambda t: t.starts_at) if running else None


def is_trial(plan_price_fen: int, trial_days: int, amount: int) -> bool:
    return trial_days > 0 and plan_price_fen > 0 and amount == 0


def check_trial(terms: Sequence[Term], plan_id: str, at: datetime) -> None:
    if any(t.plan_id == plan_id and t.price_fen == 0 for t in terms):
        raise conflict(
            MembershipError.TRIAL_USED,
            f"the member already had the trial of plan {plan_id}",
            field="data.amount",
        )
    if chain_end(terms, at) is not None:
        raise conflict(
            MembershipError.TRIAL_WHILE_ACTIVE,
            "a trial is for members without a paid membership running or queued",
            field="data.amount",
        )


def check_refund(
    term: Term,
    terms: Sequence[Term],
    refund_at: datetime,
    *,
    window_days: int,
    only_if_unused: bool,
) -> None:
    """Raise unless ``term`` may be refunded at ``refund_at``."""
    if term.status == REFUNDED:
        raise conflict(
            MembershipError.ALREADY_REFUNDED,
            f"purchase {term.purchase_id} was refunded already",
            field="data.purchase_id",
        )
    last = latest(terms)
    if last is None or last.purchase_id != term.purchase_id:
        raise conflict(
            MembershipError.NOT_LATEST,
            f"purchase {term.purchase_id} is followed by a later term; refund that one first",
            field="data.purchase_id",
        )
    if term.status == EXPIRED or term.ends_at <= refund_at:
        raise conflict(
            MembershipError.ENDED,
            f"purchase {term.purchase_id} ended at {term.ends_at.isoformat()}",
            field="data.purchase_id",
        )
    bought = term.purchased_at or term.starts_at
    if refund_at > bought + timedelta(days=window_days):
        raise conflict(
            MembershipError.REFUND_WINDOW_PASSED,
            f"a refund must come within {window_days} days of the purchase",
            field="data.purchase_id",
        )
    if only_if_unused and term.benefit_used:
        raise conflict(
            MembershipError.BENEFIT_USED,
            "a benefit of this membership was used; it can no longer be refunded",
            field="data.purchase_id",
        )


# ---------------------------------------------------------------- benefits


@dataclass(frozen=True, slots=True)
class Benefit:
    """A catalog benefit as granted by one source (``tier:<id>``, ``plan:<id>``, or
    ``points`` for one exchanged for points in the mall)."""

    id: str
    kind: str
    source: str
    percent_off: Decimal | None = None
    multiplier: Decimal | None = None
    monthly_quota: int | None = None
    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()

    @property
    def scoped(self) -> bool:
        return bool(self.skus or self.categories)

    def applies_to(self, sku: str | None, category: str | None) -> bool:
        if not self.scoped:
            return True
        return (sku is not None and sku in self.skus) or (
            category is not None and category in self.categories
        )


def _unique(benefits: Iterable[Benefit], kind: str) -> list[Benefit]:
    """Benefits of one kind, each catalog id once (a tier and a plan may name the same)."""
    seen: dict[str, Benefit] = {}
    for b in benefits:
        if b.kind == kind and b.id not in seen:
            seen[b.id] = b
    return list(seen.values())


def percent_off(benefits: Iterable[Benefit], sku: str | None, category: str | None) -> Decimal:
    """The discount an item gets: the largest percent that applies (discounts never stack)."""
    rates = [
        b.percent_off
        for b in _unique(benefits, "percent_discount")
        if b.percent_off is not None and b.applies_to(sku, category)
    ]
    return max(rates, default=Decimal(0))


def multiplier(
    benefits: Iterable[Benefit], overlap: str, sku: str | None = None, category: str | None = None
) -> Decimal:
    """The points multiplier on an item: the largest, or the product under ``multiply``."""
    factors = [
        b.multiplier
        for b in _unique(benefits, "points_multiplier")
        if b.multiplier is not None and b.applies_to(sku, category)
    ]
    if not factors:
        return ONE
    if overlap == "multiply":
        product = ONE
        for factor in factors:
            product *= factor
        return product
    return max(factors)


UNLIMITED = None


def shipping_quota(benefits: Iterable[Benefit]) -> int | None:
    """Free-shipping orders per month: 0 without the benefit, ``None`` for unlimited."""
    quotas = [b.monthly_quota for b in _unique(benefits, "free_shipping")]
    if not quotas:
        return 0
    if any(q is None for q in quotas):
        return UNLIMITED
    return max(q for q in quotas if q is not None)


@dataclass(frozen=True, slots=True)
class Effective:
    """What the benefits add up to on an ordinary item (scoped benefits aside)."""

    percent_off: Decimal
    multiplier: Decimal
    free_shipping: bool
    shipping_quota: int | None  # None: unlimited (when free_shipping)


def effective(benefits: Sequence[Benefit], overlap: str) -> Effective:
    general = [b for b in benefits if not b.scoped]
    quota = shipping_quota(benefits)
    return Effective(
        percent_off=percent_off(general, None, None),
        multiplier=multiplier(general, overlap),
        free_shipping=quota != 0,
        shipping_quota=quota,
    )


def superseded_by(benefits: Sequence[Benefit], overlap: str) -> dict[str, str | None]:
    """For each benefit id, the id of a benefit that overrides it everywhere it applies."""
    result: dict[str, str | None] = {b.id: None for b in benefits}

    def covers(winner: Benefit, loser: Benefit) -> bool:
        if not winner.scoped:
            return True
        return loser.scoped and loser.skus <= winner.skus and loser.categories <= winner.categories

    for kind, value in (("percent_discount", "percent_off"), ("points_multiplier", "multiplier")):
        if kind == "points_multiplier" and overlap == "multiply":
            continue
        group = _unique(benefits, kind)
        rated = [(b, getattr(b, value)) for b in group if getattr(b, value) is not None]
        for loser, mine in rated:
            better = [
                (theirs, winner.id)
                for winner, theirs in rated
                if winner.id != loser.id
                and (theirs > mine or (theirs == mine and winner.id < loser.id))
                and covers(winner, loser)
            ]
            if better:
                result[loser.id] = max(better, key=lambda pair: (pair[0], pair[1]))[1]
    group = _unique(benefits, "free_shipping")
    best = shipping_quota(group)
    for b in group:
        if b.monthly_quota != best:
            winner = next(w for w in group if w.monthly_quota == best)
            result[b.id] = winner.id
    return result


# ---------------------------------------------------------------- savings


@dataclass(frozen=True, slots=True)
class SavingsLine:
    sku: str
    category: str | None
    paid_fen: int  # net of refunds


@dataclass(frozen=True, slots=True)
class SavingsOrder:
    order_id: str
    paid_at: datetime
    shipping_fee: int
    points: int  # points the order earned in the program (net of clawbacks)
    lines: tuple[SavingsLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Savings:
    discount_fen: int = 0
    extra_points: int = 0
    points_fen: int = 0
    shipping_fen: int = 0
    free_shipping_orders: int = 0
    orders: int = 0
    by_order: dict[str, int] = field(default_factory=dict)

    @property
    def total_fen(self) -> int:
        return self.discount_fen + self.points_fen + self.shipping_fen


def extra_discount(paid_fen: int, without: Decimal, with_: Decimal) -> int:
    """What a better percent saves on an amount already paid at ``without`` percent off."""
    if with_ <= without or paid_fen <= 0:
        return 0
    extra = Decimal(paid_fen) * (with_ - without) / (HUNDRED - without)
    return int(extra.to_integral_value(rounding=ROUND_HALF_UP))


def extra_points(
    order: SavingsOrder, before: Sequence[Benefit], after: Sequence[Benefit], overlap: str
) -> int:
    """Points a higher multiplier adds to an order: each line's share of the order's points
    times the rise of its multiplier, rounded down once for the order."""
    total = sum(line.paid_fen for line in order.lines)
    if order.points <= 0 or total <= 0:
        return 0
    extra = Decimal(0)
    for line in order.lines:
        rise = multiplier(after, overlap, line.sku, line.category) - multiplier(
            before, overlap, line.sku, line.category
        )
        if rise > 0:
            extra += Decimal(order.points) * Decimal(line.paid_fen) / Decimal(total) * rise
    return int(extra.to_integral_value(rounding=ROUND_FLOOR))


def extra_free_shipping(before: int | None, after: int | None) -> int | None:
    """How many more orders a month ship free (``None``: all of them)."""
    if before is None:
        return 0
    if after is None:
        return None
    return max(after - before, 0)


def estimate(
    orders: Sequence[SavingsOrder],
    before: Sequence[Benefit],
    after: Sequence[Benefit],
    *,
    overlap: str,
    point_value_fen: int,
    zone: ZoneInfo,
) -> Savings:
    """What ``after`` (the tier's benefits plus a plan's) saves over ``before`` (the tier's)."""
    discount = points = shipping = shipped = 0
    by_order: dict[str, int] = defaultdict(int)
    for order in orders:
        for line in order.lines:
            saved = extra_discount(
                line.paid_fen,
                percent_off(before, line.sku, line.category),
                percent_off(after, line.sku, line.category),
            )
            discount += saved
            by_order[order.order_id] += saved
        extra = extra_points(order, before, after, overlap)
        points += extra
        by_order[order.order_id] += extra * point_value_fen
    quota = extra_free_shipping(shipping_quota(before), shipping_quota(after))
    months: dict[tuple[int, int], list[SavingsOrder]] = defaultdict(list)
    for order in sorted(orders, key=lambda o: (o.paid_at, o.order_id)):
        if order.shipping_fee > 0:
            local = order.paid_at.astimezone(zone)
            months[(local.year, local.month)].append(order)
    for month_orders in months.values():
        covered = month_orders if quota is UNLIMITED else month_orders[:quota]
        for order in covered:
            shipping += order.shipping_fee
            by_order[order.order_id] += order.shipping_fee
        shipped += len(covered)
    return Savings(
        discount_fen=discount,
        extra_points=points,
        points_fen=points * point_value_fen,
        shipping_fen=shipping,
        free_shipping_orders=shipped,
        orders=len(orders),
        by_order={k: v for k, v in by_order.items() if v},
    )


def cost_fen(price_fen: int, period: str, months: int = 12) -> int:
    """What ``months`` of a plan cost: whole periods, rounded up."""
    per = PERIOD_MONTHS[period]
    return price_fen * -(-months // per)


def yuan(fen: int) -> str:
    return str(Money(fen))


def estimate_message(saved_fen: int, cost: int, period_months: int = 12) -> dict[str, str]:
    """The member-centre line: "开通可省 ¥123.45" and how it compares with the fee."""
    net = saved_fen - cost
    if net > 0:
        return {
            "zh": f"开通可省 {yuan(saved_fen)}"
            f"（{period_months}个月会费 {yuan(cost)}，净省 {yuan(net)}）",
            "en": f"Join and save {yuan(saved_fen)} "
            f"({period_months} months' fee {yuan(cost)}, {yuan(net)} net)",
        }
    return {
        "zh": f"开通可省 {yuan(saved_fen)}（{period_months}个月会费 {yuan(cost)}）",
        "en": f"Join and save {yuan(saved_fen)} ({period_months} months' fee {yuan(cost)})",
    }


def actual_message(saved_fen: int, plan_zh: str, plan_en: str) -> dict[str, str]:
    return {
        "zh": f"{plan_zh}已为您节省 {yuan(saved_fen)}",
        "en": f"{plan_en} has saved you {yuan(saved_fen)}",
    }
