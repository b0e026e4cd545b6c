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

from huiyuan.domain import points as dp

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


class ProgramDocument(Doc):
    """A program's configuration. Omitted sections take sensible defaults."""

    points: PointsDoc = PointsDoc()
    wallet: WalletDoc = WalletDoc()


def default_document() -> ProgramDocument:
    """1 point per ¥1 paid, pending until completion, expiring a year after release."""
    return ProgramDocument(
        points=PointsDoc(
            earning=[PerAmountDoc(kind="per_amount", id="base", per_fen=100, points=1)],
        )
    )


def effective_now(starts: datetime | None, ends: datetime | None, at: datetime) -> bool:
    return (starts is None or at >= starts) and (ends is None or at < ends)
