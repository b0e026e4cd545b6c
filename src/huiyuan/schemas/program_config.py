"""The program document: one validated, versioned JSON/YAML document per program.

It holds the points (积分) configuration today — name and value, earning rules, multipliers,
expiry, pending, redemption, negative-balance and refund policies — and the wallet's recharge
rules. Every applied version is kept; ledger entries name the version that decided them. The
JSON Schema is published at ``GET /v1/schemas/program``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from huiyuan.domain import growth as dg
from huiyuan.domain import points as dp
from huiyuan.domain import tiers as dt

Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
PositiveInt = Annotated[int, Field(gt=0, le=10**12)]
NonNegInt = Annotated[int, Field(ge=0, le=10**12)]


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Names(Doc):
    zh: Annotated[str, Field(min_length=1, max_length=50)] = "积分"
    en: Annotated[str, Field(min_length=1, max_length=50)] = "points"


class ConditionsDoc(Doc):
    categories: list[str] = []
    brands: list[str] = []
    skus: list[str] = []
    stores: list[str] = Field(default=[], description="'platform' means the platform's own")
    channels: list[str] = []
    tiers: list[str] = []
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    first_n_orders: PositiveInt | None = None
    exclude_virtual: bool = True

    def to_domain(self) -> dp.Conditions:
        return dp.Conditions(
            categories=frozenset(self.categories),
            brands=frozenset(self.brands),
            skus=frozenset(self.skus),
            stores=frozenset(self.stores),
            channels=frozenset(self.channels),
            tiers=frozenset(self.tiers),
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            first_n_orders=self.first_n_orders,
            exclude_virtual=self.exclude_virtual,
        )


class CapsDoc(Doc):
    per_order: PositiveInt | None = None
    per_day: PositiveInt | None = None
    per_month: PositiveInt | None = None

    def to_domain(self) -> dp.Caps:
        return dp.Caps(self.per_order, self.per_day, self.per_month)


class RuleBase(Doc):
    id: Ident
    conditions: ConditionsDoc = ConditionsDoc()
    caps: CapsDoc = CapsDoc()
    funded_by: Ident | None = Field(
        default=None, description="a store whose points budget pays for this rule's points"
    )


class PerAmountDoc(RuleBase):
    kind: Literal["per_amount"]
    per_fen: PositiveInt = Field(description="every this many fen paid …")
    points: PositiveInt = Field(description="… earns this many points (pro rata)")
    rounding: Literal["floor", "half_up", "ceiling"] = "floor"
    multiplier: Annotated[Decimal, Field(gt=0, le=1000)] = Decimal(1)

    def to_domain(self) -> dp.PerAmountRule:
        return dp.PerAmountRule(
            self.id,
            self.per_fen,
            self.points,
            self.rounding,
            self.multiplier,
            self.conditions.to_domain(),
            self.caps.to_domain(),
            self.funded_by,
        )


class ThresholdDoc(RuleBase):
    kind: Literal["order_threshold"]
    threshold_fen: PositiveInt
    points: PositiveInt

    def to_domain(self) -> dp.ThresholdRule:
        return dp.ThresholdRule(
            self.id,
            self.threshold_fen,
            self.points,
            self.conditions.to_domain(),
            self.caps.to_domain(),
            self.funded_by,
        )


class FixedDoc(RuleBase):
    kind: Literal["fixed"]
    trigger: dp.Trigger
    points: PositiveInt

    def to_domain(self) -> dp.FixedRule:
        return dp.FixedRule(
            self.id,
            self.trigger,
            self.points,
            self.conditions.to_domain(),
            self.caps.to_domain(),
            self.funded_by,
        )


EarningRule = Annotated[PerAmountDoc | ThresholdDoc | FixedDoc, Field(discriminator="kind")]


class MultiplierDoc(Doc):
    id: Ident
    factor: Annotated[Decimal, Field(gt=0, le=1000)]
    conditions: ConditionsDoc = ConditionsDoc()

    def to_domain(self) -> dp.Multiplier:
        return dp.Multiplier(self.id, self.factor, self.conditions.to_domain())


class ExpiryDoc(Doc):
    mode: Literal["rolling", "calendar", "never"] = "rolling"
    days: PositiveInt = 365
    years_after: Annotated[int, Field(ge=0, le=10)] = 1
    month: Annotated[int, Field(ge=1, le=12)] = 12
    day: Annotated[int, Field(ge=1, le=31)] = 31
    reminder_days: Annotated[int, Field(ge=0, le=365)] = 30

    def to_domain(self) -> dp.ExpiryPolicy:
        return dp.ExpiryPolicy(self.mode, self.days, self.years_after, self.month, self.day)


class PendingDoc(Doc):
    release: Literal["on_completion", "after_return_window"] = "on_completion"
    return_window_days: Annotated[int, Field(ge=0, le=365)] = 7


class RedemptionDoc(Doc):
    fen_per_point: PositiveInt = 1
    min_unit: PositiveInt = 1
    max_order_share: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.5")

    def to_domain(self) -> dp.RedemptionPolicy:
        return dp.RedemptionPolicy(self.fen_per_point, self.min_unit, self.max_order_share)


class RefundOfExpiredDoc(Doc):
    """What a refund of a redemption does with points whose lot has expired since."""

    mode: Literal["forfeit", "reissue"] = "reissue"
    days: PositiveInt = Field(default=30, description="a reissued lot's life in days")


class PointsDoc(Doc):
    enabled: bool = True
    name: Names = Names()
    value_fen: PositiveInt = Field(default=1, description="what one point is worth, in fen")
    earning: list[EarningRule] = []
    multipliers: list[MultiplierDoc] = []
    expiry: ExpiryDoc = ExpiryDoc()
    pending: PendingDoc = PendingDoc()
    redemption: RedemptionDoc = RedemptionDoc()
    negative_balance: Literal["debt", "write_off"] = "debt"
    refund_of_expired: RefundOfExpiredDoc = RefundOfExpiredDoc()
    reservation_ttl_seconds: Annotated[int, Field(ge=30, le=86_400)] = 900

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> PointsDoc:
        ids = [r.id for r in self.earning] + [m.id for m in self.multipliers]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"rule ids must be unique: {', '.join(duplicates)}")
        return self


class RechargeBonusDoc(Doc):
    """充500送50: a recharge of at least ``min_fen`` brings ``bonus_fen`` (the largest tier that
    applies wins)."""

    min_fen: PositiveInt
    bonus_fen: PositiveInt
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None


class WalletDoc(Doc):
    enabled: bool = True
    recharge_bonuses: list[RechargeBonusDoc] = []
    spend_order: Literal["bonus_first", "principal_first"] = "principal_first"


class GrowthRuleDoc(Doc):
    """A growth (成长值) rule. ``purchase`` earns ``points`` per ``per_fen`` paid (times the
    member's tier coefficient) when the order completes; the others earn ``points`` per action."""

    id: Ident
    kind: dg.GrowthKind
    points: PositiveInt
    per_fen: PositiveInt = 100
    coefficients: dict[str, Annotated[Decimal, Field(gt=0, le=100)]] = Field(
        default={}, description="tier id → acceleration coefficient (purchase)"
    )
    min_item_fen: NonNegInt = Field(default=0, description="review: item paid at least this")
    first_n: PositiveInt | None = Field(
        default=None, description="photo_review: only the first N photo reviews of a SKU"
    )
    skip_lowest_tier: bool = Field(default=False, description="login: not on the lowest tier")
    per_day: PositiveInt | None = None

    def to_domain(self) -> dg.GrowthRule:
        return dg.GrowthRule(
            self.id,
            self.kind,
            self.points,
            self.per_fen,
            dict(self.coefficients),
            self.min_item_fen,
            self.first_n,
            self.skip_lowest_tier,
            self.per_day,
        )


class RfmDoc(Doc):
    """The RFM model: every ``period`` each member's Recency (days since last order),
    Frequency (orders) and Monetary (net paid) over ``window_days`` are scored 1–5 by band
    edges (or population quintiles when edges are omitted) and turned into growth:
    ``weights · (score − 3)`` per dimension, which may be negative."""

    enabled: bool = False
    window_days: PositiveInt = 365
    recency_edges_days: list[NonNegInt] | None = Field(
        default=None, description="4 ascending edges; fewer days scores higher"
    )
    frequency_edges: list[NonNegInt] | None = None
    monetary_edges_fen: list[NonNegInt] | None = None
    weights: dict[Literal["r", "f", "m"], Annotated[int, Field(ge=-10_000, le=10_000)]] = {
        "r": 20,
        "f": 30,
        "m": 50,
    }

    @model_validator(mode="after")
    def _four_edges(self) -> RfmDoc:
        for name in ("recency_edges_days", "frequency_edges", "monetary_edges_fen"):
            edges = getattr(self, name)
            if edges is not None and (len(edges) != 4 or edges != sorted(edges)):
                raise ValueError(f"{name} must be 4 ascending numbers")
        return self


class GrowthDoc(Doc):
    enabled: bool = True
    rules: list[GrowthRuleDoc] = []
    rfm: RfmDoc = RfmDoc()


class TierDoc(Doc):
    id: Ident
    name: Names
    threshold: NonNegInt
    retention: NonNegInt | None = Field(
        default=None, description="metric that keeps the tier at a checkpoint (default: threshold)"
    )
    upgrade_gift_points: NonNegInt = 0
    benefits: list[Ident] = Field(default=[], description="ids from the benefits catalog")


class DowngradeDoc(Doc):
    checkpoint: dt.Checkpoint = dt.Checkpoint.NONE
    min_stay_days: NonNegInt = 0
    grace_days: NonNegInt = 0
    drop: Literal["one", "supported"] = "supported"


class LadderDoc(Doc):
    """The tier ladder. ``metric`` decides what the thresholds count."""

    metric: dt.Metric = dt.Metric.GROWTH_LIFETIME
    window_days: PositiveInt = 365
    tiers: Annotated[list[TierDoc], Field(min_length=1, max_length=20)]
    downgrade: DowngradeDoc = DowngradeDoc()
    keep_on_refund: bool = True
    gift_period_days: PositiveInt | None = Field(
        default=None, description="a tier's upgrade gift once ever (null) or once per period"
    )

    @model_validator(mode="after")
    def _ordered(self) -> LadderDoc:
        thresholds = [t.threshold for t in self.tiers]
        if thresholds[0] != 0 or thresholds != sorted(set(thresholds)):
            raise ValueError("tiers start at threshold 0 and rise strictly")
        ids = [t.id for t in self.tiers]
        if len(set(ids)) != len(ids):
            raise ValueError("tier ids must be unique")
        return self

    def to_domain(self) -> dt.Ladder:
        return dt.Ladder(
            tiers=tuple(
                dt.Tier(
                    t.id,
                    t.name.zh,
                    t.name.en,
                    t.threshold,
                    t.retention,
                    t.upgrade_gift_points,
                    tuple(t.benefits),
                )
                for t in self.tiers
            ),
            metric=self.metric,
            window_days=self.window_days,
            checkpoint=self.downgrade.checkpoint,
            min_stay_days=self.downgrade.min_stay_days,
            grace_days=self.downgrade.grace_days,
            drop=self.downgrade.drop,
            keep_on_refund=self.keep_on_refund,
            gift_period_days=self.gift_period_days,
        )


class BenefitDoc(Doc):
    """A benefit (权益) in the catalog, granted by tiers and plans."""

    id: Ident
    kind: Literal[
        "percent_discount",
        "member_price",
        "points_multiplier",
        "free_shipping",
        "birthday_gift",
        "upgrade_gift",
        "priority_service",
        "free_returns",
        "custom",
    ]
    name: Names
    description: Annotated[str, Field(max_length=500)] = ""
    percent_off: Annotated[Decimal | None, Field(gt=0, lt=100)] = None
    multiplier: Annotated[Decimal | None, Field(gt=0, le=100)] = None
    monthly_quota: PositiveInt | None = None
    skus: list[str] = []
    categories: list[str] = []
    member_price_fen: dict[str, NonNegInt] = Field(default={}, description="sku → member price")
    gift_points: NonNegInt = 0


class PlanDoc(Doc):
    """A paid membership plan (付费会员, like JD PLUS)."""

    id: Ident
    name: Names
    price_fen: NonNegInt
    period: Literal["monthly", "quarterly", "annual"]
    trial_days: NonNegInt = 0
    benefits: list[Ident] = []
    refund_window_days: NonNegInt = 7
    refund_only_if_unused: bool = True
    reminder_days: NonNegInt = 7


class ProgramDocument(Doc):
    """A program's configuration. Omitted sections take sensible defaults."""

    points: PointsDoc = PointsDoc()
    wallet: WalletDoc = WalletDoc()
    growth: GrowthDoc = GrowthDoc()
    tiers: LadderDoc | None = None
    benefits: list[BenefitDoc] = []
    plans: list[PlanDoc] = []
    overlap: Literal["max", "multiply"] = Field(
        default="max", description="how a tier's and a plan's multipliers combine"
    )

    @model_validator(mode="after")
    def _benefits_exist(self) -> ProgramDocument:
        known = {b.id for b in self.benefits}
        named = [b for t in (self.tiers.tiers if self.tiers else []) for b in t.benefits]
        named += [b for p in self.plans for b in p.benefits]
        missing = sorted(set(named) - known)
        if missing:
            raise ValueError(f"benefits not in the catalog: {', '.join(missing)}")
        return self


def default_document() -> ProgramDocument:
    """1 point per ¥1 paid, pending until completion, expiring a year after release."""
    return ProgramDocument(
        points=PointsDoc(
            earning=[PerAmountDoc(kind="per_amount", id="base", per_fen=100, points=1)],
        )
    )


def effective_now(starts: datetime | None, ends: datetime | None, at: datetime) -> bool:
    return (starts is None or at >= starts) and (ends is None or at < ends)
