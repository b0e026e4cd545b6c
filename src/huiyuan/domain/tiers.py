"""Tier ladders (等级): which tier a metric value earns, upgrades, retention (保级) and
downgrades at checkpoints, and what a member needs for the next tier.

A ladder is ordered by threshold, its first tier at 0. Upgrades happen at once when the metric
crosses a threshold, possibly several tiers at a time (each passed tier's gift is granted).
Downgrades happen only at checkpoints (monthly, quarterly, or the anniversary of reaching the
tier), after a guaranteed minimum stay and a grace period, dropping one tier or to the tier the
metric supports — or never, for a program without downgrades. A hand-set tier is a floor (the
member may rise above it) or fixed (evaluation leaves it alone) until its end date.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class Metric(StrEnum):
    GROWTH_LIFETIME = "growth_lifetime"
    GROWTH_WINDOW = "growth_window"
    SPEND_WINDOW = "spend_window"
    RECHARGE_TOTAL = "recharge_total"
    POINTS_WINDOW = "points_window"


class Checkpoint(StrEnum):
    NONE = "none"  # no downgrade at all
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    ANNIVERSARY = "anniversary"


@dataclass(frozen=True, slots=True)
class Tier:
    id: str
    name_zh: str
    name_en: str
    threshold: int
    retention: int | None = None  # metric needed to keep the tier; None: its threshold
    upgrade_gift_points: int = 0
    benefits: tuple[str, ...] = ()

    @property
    def keep_at(self) -> int:
        return self.threshold if self.retention is None else self.retention


@dataclass(frozen=True, slots=True)
class Ladder:
    tiers: tuple[Tier, ...]
    metric: Metric = Metric.GROWTH_LIFETIME
    window_days: int = 365
    checkpoint: Checkpoint = Checkpoint.NONE
    min_stay_days: int = 0
    grace_days: int = 0
    drop: str = "supported"  # "one": one tier per checkpoint; "supported": to what the metric earns
    keep_on_refund: bool = True  # a refund lowering the metric waits for the checkpoint
    gift_period_days: int | None = None  # None: a tier's gift once ever; else once per period

    def __post_init__(self) -> None:
        if not self.tiers or self.tiers[0].threshold != 0:
            raise ValueError("a ladder starts with a tier at threshold 0")
        thresholds = [t.threshold for t in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("tier thresholds must rise strictly")

    def index(self, tier_id: str) -> int:
        for i, tier in enumerate(self.tiers):
            if tier.id == tier_id:
                return i
        raise KeyError(tier_id)

    def get(self, tier_id: str) -> Tier:
        return self.tiers[self.index(tier_id)]


def earned_tier(ladder: Ladder, value: int) -> Tier:
    """The highest tier whose threshold ``value`` reaches."""
    best = ladder.tiers[0]
    for tier in ladder.tiers:
        if value >= tier.threshold:
            best = tier
    return best


def upgrade_path(ladder: Ladder, current: str, value: int) -> list[Tier]:
    """Tiers passed on the way up from ``current`` (empty if the value earns nothing higher)."""
    start = ladder.index(current)
    target = ladder.index(earned_tier(ladder, value).id)
    return list(ladder.tiers[start + 1 : target + 1])


@dataclass(frozen=True, slots=True)
class Override:
    """A tier set by hand until ``ends_at``: ``floor`` (never below it) or ``fixed`` (exactly
    it)."""

    tier_id: str
    mode: str
    ends_at: datetime | None

    def active(self, at: datetime) -> bool:
        return self.ends_at is None or at < self.ends_at


@dataclass(frozen=True, slots=True)
class Decision:
    tier_id: str
    cause: str  # upgrade | downgrade | retained | override | unchanged
    passed: tuple[str, ...] = field(default=())


def decide_on_change(
    ladder: Ladder, current: str, value: int, override: Override | None, at: datetime
) -> Decision:
    """What a change of the metric does now: upgrades at once, never a downgrade."""
    if override is not None and override.active(at) and override.mode == "fixed":
        return Decision(override.tier_id, "override")
    path = upgrade_path(ladder, current, value)
    if path:
        return Decision(path[-1].id, "upgrade", tuple(t.id for t in path))
    return Decision(current, "unchanged")


def decide_at_checkpoint(
    ladder: Ladder,
    current: str,
    value: int,
    reached_at: datetime,
    override: Override | None,
    at: datetime,
) -> Decision:
    """Retention at a checkpoint: keep the tier if the value meets its retention threshold
    (or the stay/grace has not run out); otherwise drop one tier or to what the value earns."""
    if override is not None and override.active(at) and override.mode == "fixed":
        return Decision(override.tier_id, "override")
    path = upgrade_path(ladder, current, value)
    if path:
        return Decision(path[-1].id, "upgrade", tuple(t.id for t in path))
    if ladder.checkpoint is Checkpoint.NONE:
        return Decision(current, "unchanged")
    tier = ladder.get(current)
    protected_until = reached_at + timedelta(days=ladder.min_stay_days + ladder.grace_days)
    if value >= tier.keep_at or at < protected_until or ladder.index(current) == 0:
        return Decision(current, "retained")
    if ladder.drop == "one":
        target = ladder.tiers[ladder.index(current) - 1]
    else:
        target = earned_tier(ladder, value)
    if override is not None and override.active(at) and override.mode == "floor":
        floor = ladder.index(override.tier_id)
        if ladder.index(target.id) < floor:
            target = ladder.tiers[floor]
    if target.id == current:
        return Decision(current, "retained")
    return Decision(target.id, "downgrade")


def next_checkpoint(
    ladder: Ladder, reached_at: datetime, after: datetime, zone: ZoneInfo
) -> datetime | None:
    """The first checkpoint strictly after ``after`` (start of a business day), or None."""
    local = after.astimezone(zone)
    if ladder.checkpoint is Checkpoint.NONE:
        return None
    if ladder.checkpoint is Checkpoint.MONTHLY:
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        day = date(year, month, 1)
    elif ladder.checkpoint is Checkpoint.QUARTERLY:
        quarter_month = ((local.month - 1) // 3 + 1) * 3 + 1
        year = local.year + (1 if quarter_month > 12 else 0)
        day = date(year, (quarter_month - 1) % 12 + 1, 1)
    else:
        anchor = reached_at.astimezone(zone).date()
        year = local.year
        while True:
            last = calendar.monthrange(year, anchor.month)[1]
            day = date(year, anchor.month, min(anchor.day, last))
            if datetime.combine(day, time(0), tzinfo=zone) > local and year > anchor.year:
                break
            year += 1
    return datetime.combine(day, time(0), tzinfo=zone)


@dataclass(frozen=True, slots=True)
class Progress:
    next_tier: Tier | None
    needed: int  # metric still needed for the next tier (0 at the top)
    keep_at: int  # metric that keeps the current tier at the next checkpoint


def progress(ladder: Ladder, current: str, value: int) -> Progress:
    index = ladder.index(current)
    tier = ladder.tiers[index]
    following: Sequence[Tier] = ladder.tiers[index + 1 :]
    if not following:
        return Progress(None, 0, tier.keep_at)
    nxt = following[0]
    return Progress(nxt, max(nxt.threshold - value, 0), tier.keep_at)
