"""The program document: one validated, versioned JSON/YAML document per program.

It holds the points (积分) configuration — name and value, earning rules, multipliers, expiry,
pending, redemption, negative-balance and refund policies —, the wallet's recharge rules, growth
rules, the tier ladder, the benefits catalog and the paid plans. Every applied version is kept;
ledger entries name the version that decided them. The JSON Schema is published at
``GET /v1/schemas/program``.

A document is whole in itself: its ids (rules, tiers, benefits, plans) are unique, every id it
names (a tier's or plan's benefits, a coefficient's or condition's tier) is defined in it, and a
benefit carries the fields its kind needs and no other kind's. A refusal names the offending
field itself (``document.growth.rules[1].id``), not the section that found it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from huiyuan.domain import growth as dg
from huiyuan.domain import points as dp
from huiyuan.domain import tiers as dt
from huiyuan.schemas.validation import field_path

Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
PositiveInt = Annotated[int, Field(gt=0, le=10**12)]
NonNegInt = Annotated[int, Field(ge=0, le=10**12)]


Loc = tuple[str | int, ...]
Problem = tuple[Loc, str, Any]  # where in the model, what is wrong, the offending value


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Reading back a version stored by an earlier release, whose checks were looser: the checks of
# ids and references (``refuse``) let it through, so a stricter release never makes a program
# that already runs unreadable. New documents are always checked in full.
_STORED = ContextVar("program_document_stored", default=False)


def stored_document(raw: Any) -> ProgramDocument:
    """A stored version, read back without refusing what an earlier release accepted."""
    token = _STORED.set(True)
    try:
        return ProgramDocument.model_validate(raw)
    finally:
        _STORED.reset(token)


def refuse(model: str, problems: Sequence[Problem]) -> None:
    """Raise the problems as a validation error located at their own fields (not at the model
    that found them), so that a refusal names e.g. ``document.growth.rules[1].id``."""
    if problems and not _STORED.get():
        raise ValidationError.from_exception_data(
            model,
            [
                InitErrorDetails(
                    type=PydanticCustomError("document_rule", "{reason}", {"reason": reason}),
                    loc=loc,
                    input=value,
                )
                for loc, reason, value in problems
            ],
        )


def duplicates(
    ids: Iterable[tuple[Loc, str]], what: str, twice: str = "is used twice"
) -> list[Problem]:
    """Every id met a second time, located at the later one."""
    first: dict[str, Loc] = {}
    found: list[Problem] = []
    for loc, value in ids:
        if value in first:
            found.append(
                (loc, f"{what} {value!r} {twice} (also {field_path(first[value])})", value)
            )
        else:
            first[value] = loc
    return found


class Names(Doc):
    zh: Annotated[str, Field(min_length=1, max_length=50)] = "积分"
    en: Annotated[str, Field(min_length=1, max_length=50)] = "points"


class Label(Doc):
    """A name shown to members, in both languages (a tier, a plan, a benefit)."""

    zh: Annotated[str, Field(min_length=1, max_length=50)]
    en: Annotated[str, Field(min_length=1, max_length=50)]


class ConditionsDoc(Doc):
    categories: list[str] = []
    brands: list[str] = []
    skus: list[str] = []
    stores: list[str] = Field(default=[], description="'platform' means the platform's own")
    channels: list[str] = []
    tiers: list[str] = []
    plans: list[str] = Field(
        default=[],
        description="paid plans (付费会员) of this document, one of which must be running",
    )
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
            plans=frozenset(self.plans),
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


class MallBenefitDoc(Doc):
    """What a mall item exchanges points for, when it is a benefit (权益) of the catalog."""

    id: Ident = Field(description="a benefit of the document's catalog")
    days: Annotated[int, Field(gt=0, le=3660)] = Field(description="how long one lasts")


class MallItemDoc(Doc):
    """An item of the points mall (积分商城): its price in points, how many there are in all,
    how many one member may have, when and to which tiers it is offered — and, if it is an
    exchange for a benefit, which one and for how long."""

    id: Ident
    name: Label
    points: PositiveInt = Field(description="the price of one, in points")
    stock: NonNegInt | None = Field(
        default=None, description="how many may be redeemed in all, ever; none: no limit"
    )
    per_member_limit: PositiveInt | None = Field(
        default=None, description="how many one member may redeem per period; none: no limit"
    )
    limit_period: Literal["ever", "day", "month"] = Field(
        default="ever", description="what per_member_limit counts: ever, per business day or month"
    )
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    tiers: list[str] = Field(default=[], description="only members on these tiers; [] = all")
    benefit: MallBenefitDoc | None = Field(
        default=None, description="redeeming it grants this benefit (quantity × days)"
    )

    @model_validator(mode="after")
    def _window(self) -> MallItemDoc:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must come after starts_at")
        return self


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
    mall: list[MallItemDoc] = Field(default=[], description="the points mall's items")

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> PointsDoc:
        ids = [(("earning", i, "id"), r.id) for i, r in enumerate(self.earning)]
        ids += [(("multipliers", i, "id"), m.id) for i, m in enumerate(self.multipliers)]
        refuse("PointsDoc", duplicates(ids, "rule id"))
        items = [(("mall", i, "id"), item.id) for i, item in enumerate(self.mall)]
        refuse("PointsDoc", duplicates(items, "mall item id"))
        return self

    def mall_item(self, item_id: str) -> MallItemDoc | None:
        return next((item for item in self.mall if item.id == item_id), None)


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

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> GrowthDoc:
        ids = [(("rules", i, "id"), r.id) for i, r in enumerate(self.rules)]
        refuse("GrowthDoc", duplicates(ids, "growth rule id"))
        return self


class TierDoc(Doc):
    id: Ident
    name: Label
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
        refuse("LadderDoc", duplicates(_ids(self.tiers, ("tiers",)), "tier id"))
        thresholds = [t.threshold for t in self.tiers]
        if thresholds[0] != 0 or thresholds != sorted(set(thresholds)):
            raise ValueError("tiers start at threshold 0 and rise strictly")
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


# What each benefit kind needs (its rate, quota or prices), and the kind-specific fields only
# that kind may carry: a field another kind would use is a mistake, not something to ignore.
BENEFIT_NEEDS = {
    "percent_discount": "percent_off",
    "points_multiplier": "multiplier",
    "member_price": "member_price_fen",
}
BENEFIT_FIELD_KINDS = {
    "percent_off": "percent_discount",
    "multiplier": "points_multiplier",
    "monthly_quota": "free_shipping",
    "member_price_fen": "member_price",
}


class BenefitDoc(Doc):
    """A benefit (权益) in the catalog, granted by tiers and plans. A ``percent_discount`` needs
    ``percent_off``, a ``points_multiplier`` its ``multiplier``, a ``member_price`` at least one
    SKU's price; those fields and ``monthly_quota`` belong to their own kind only."""

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
    name: Label
    description: Annotated[str, Field(max_length=500)] = ""
    percent_off: Annotated[Decimal | None, Field(gt=0, lt=100)] = None
    multiplier: Annotated[Decimal | None, Field(gt=0, le=100)] = None
    monthly_quota: PositiveInt | None = None
    skus: list[str] = []
    categories: list[str] = []
    member_price_fen: dict[str, NonNegInt] = Field(default={}, description="sku → member price")
    gift_points: NonNegInt = 0

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> BenefitDoc:
        problems: list[Problem] = []
        needed = BENEFIT_NEEDS.get(self.kind)
        if needed is not None and not getattr(self, needed):
            problems.append(((needed,), f"a {self.kind} benefit needs {needed}", None))
        for name, kind in BENEFIT_FIELD_KINDS.items():
            value = getattr(self, name)
            if kind != self.kind and value:
                problems.append(((name,), f"only a {kind} benefit has {name}", value))
        refuse("BenefitDoc", problems)
        return self


class PlanDoc(Doc):
    """A paid membership plan (付费会员, like JD PLUS)."""

    id: Ident
    name: Label
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
    def _references_exist(self) -> ProgramDocument:
        """Ids are unique, and every id the document names — a benefit of a tier or plan, a
        tier in a coefficient or a condition — is defined in it."""
        refuse(
            "ProgramDocument",
            _benefit_references(self) + _tier_references(self) + _plan_references(self),
        )
        return self


def _benefit_references(doc: ProgramDocument) -> list[Problem]:
    problems = duplicates(_ids(doc.benefits, ("benefits",)), "benefit id")
    problems += duplicates(_ids(doc.plans, ("plans",)), "plan id")
    catalog = {b.id for b in doc.benefits}
    for i, tier in enumerate(doc.tiers.tiers if doc.tiers else []):
        problems += _named(tier.benefits, ("tiers", "tiers", i, "benefits"), catalog, "benefit")
    for i, plan in enumerate(doc.plans):
        problems += _named(plan.benefits, ("plans", i, "benefits"), catalog, "benefit")
    problems += [
        (("points", "mall", i, "benefit", "id"), f"benefit {b.id!r} is not in the catalog", b.id)
        for i, item in enumerate(doc.points.mall)
        if (b := item.benefit) is not None and b.id not in catalog
    ]
    return problems


def _tier_references(doc: ProgramDocument) -> list[Problem]:
    """Growth coefficients, points conditions and mall items may name only tiers of the
    ladder."""
    tiers = {t.id for t in doc.tiers.tiers} if doc.tiers else set()
    named: list[tuple[Loc, str]] = [
        (("growth", "rules", i, "coefficients", key), key)
        for i, rule in enumerate(doc.growth.rules)
        for key in rule.coefficients
    ]
    rules = [("earning", i, r.conditions) for i, r in enumerate(doc.points.earning)]
    rules += [("multipliers", i, m.conditions) for i, m in enumerate(doc.points.multipliers)]
    named += [
        (("points", section, i, "conditions", "tiers", j), tier)
        for section, i, conditions in rules
        for j, tier in enumerate(conditions.tiers)
    ]
    named += [
        (("points", "mall", i, "tiers", j), tier)
        for i, item in enumerate(doc.points.mall)
        for j, tier in enumerate(item.tiers)
    ]
    return [(loc, _no_tier(tier, tiers), tier) for loc, tier in named if tier not in tiers]


def _plan_references(doc: ProgramDocument) -> list[Problem]:
    """Points conditions may name only plans of the document."""
    plans = {p.id for p in doc.plans}
    rules = [("earning", i, r.conditions) for i, r in enumerate(doc.points.earning)]
    rules += [("multipliers", i, m.conditions) for i, m in enumerate(doc.points.multipliers)]
    return [
        (
            ("points", section, i, "conditions", "plans", j),
            f"names plan {plan!r}, which is not among the document's plans",
            plan,
        )
        for section, i, conditions in rules
        for j, plan in enumerate(conditions.plans)
        if plan not in plans
    ]


def _ids(items: Sequence[TierDoc | BenefitDoc | PlanDoc], at: Loc) -> list[tuple[Loc, str]]:
    return [((*at, i, "id"), item.id) for i, item in enumerate(items)]


def _named(ids: Sequence[str], at: Loc, known: set[str], what: str) -> list[Problem]:
    """Each id of a list must be ``known`` and named once."""
    problems = duplicates((((*at, j), i) for j, i in enumerate(ids)), what, "is listed twice")
    problems += [
        ((*at, j), f"{what} {i!r} is not in the catalog", i)
        for j, i in enumerate(ids)
        if i not in known
    ]
    return problems


def _no_tier(tier: str, tiers: set[str]) -> str:
    if not tiers:
        return f"names tier {tier!r}, but the document has no tier ladder"
    return f"names tier {tier!r}, which is not on the ladder ({', '.join(sorted(tiers))})"


def default_document() -> ProgramDocument:
    """1 point per ¥1 paid, pending until completion, expiring a year after release."""
    return ProgramDocument(
        points=PointsDoc(
            earning=[PerAmountDoc(kind="per_amount", id="base", per_fen=100, points=1)],
        )
    )


def effective_now(starts: datetime | None, ends: datetime | None, at: datetime) -> bool:
    return (starts is None or at >= starts) and (ends is None or at < ends)
