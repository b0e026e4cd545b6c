"""Points endpoints: balance, history, reservations, redemptions, adjustments; budgets and the
liability report; program documents."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from huiyuan.api.deps import PrincipalDep, ServicesDep
from huiyuan.domain.errors import AdminError, forbidden
from huiyuan.schemas.program_config import ProgramDocument
from huiyuan.services import budgets, points, points_jobs, points_mall, programs
from huiyuan.services.principals import Principal, Scope

router = APIRouter(prefix="/v1", tags=["points"])

Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@\-]+$")]
Points = Annotated[StrictInt, Field(gt=0, le=10**12)]
EntryKind = Literal[
    "earn", "release", "clawback", "capture", "redeem", "restore", "adjust", "expire"
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReservationIn(Request):
    id: Ident = Field(description="your id for this hold; makes the call idempotent")
    amount: Points
    order_id: Ident | None = None
    order_amount: Annotated[StrictInt | None, Field(gt=0, le=10**13)] = Field(
        default=None, description="the order's value in fen before the deduction"
    )
    program_id: Ident | None = None
    ttl_seconds: Annotated[int | None, Field(ge=30, le=86_400)] = None


class RedemptionIn(Request):
    """Either ``amount`` and ``reason`` (points spent for something the caller prices), or
    ``item_id`` and ``quantity`` (an item of the program's points mall, priced by Huiyuan)."""

    id: Ident
    amount: Points | None = None
    reason: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    item_id: Ident | None = None
    quantity: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    program_id: Ident | None = None

    @model_validator(mode="after")
    def _amount_or_item(self) -> RedemptionIn:
        if self.item_id is not None and self.amount is not None:
            _refuse("amount", "name an item_id (priced by the points mall) or an amount, not both")
        if self.item_id is None and self.amount is None:
            _refuse("amount", "name an amount (with a reason) or an item_id")
        if self.amount is not None and self.reason is None:
            _refuse("reason", "a redemption of an amount needs a reason")
        return self


def _refuse(field: str, reason: str) -> None:
    """A validation error located at ``field`` of the body, as pydantic's own are."""
    raise ValidationError.from_exception_data(
        "RedemptionIn",
        [
            InitErrorDetails(
                type=PydanticCustomError("redemption", "{reason}", {"reason": reason}),
                loc=(field,),
                input=None,
            )
        ],
    )


class AdjustmentIn(Request):
    id: Ident
    amount: Annotated[StrictInt, Field(ge=-(10**12), le=10**12)]
    reason: Annotated[str, Field(min_length=1, max_length=200)]
    program_id: Ident | None = None


class BudgetPurchaseIn(Request):
    id: Ident
    points: Points
    paid_fen: Annotated[StrictInt, Field(ge=0, le=10**13)]


class DocumentIn(Request):
    document: dict[str, Any]
    effective_from: AwareDatetime | None = None


@router.get("/members/{member_id}/points", summary="Points balance and what expires soon")
def get_points(
    member_id: str,
    svc: ServicesDep,
    who: PrincipalDep,
    program_id: str | None = None,
    as_of: Annotated[AwareDatetime | None, Query(description="balance at a past instant")] = None,
) -> dict[str, Any]:
    return points.summary(svc, who, member_id, program_id, as_of)


@router.get("/members/{member_id}/points/entries", summary="Points history with reasons")
def get_points_entries(
    member_id: str,
    svc: ServicesDep,
    who: PrincipalDep,
    program_id: str | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    kind: EntryKind | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    return points.entries(
        svc,
        who,
        member_id,
        program_id,
        since=since,
        until=until,
        kind=kind,
        before_id=before_id,
        limit=limit,
    )


@router.post(
    "/members/{member_id}/points/reservations",
    status_code=201,
    summary="Hold points for a checkout",
)
def post_reservation(
    member_id: str, body: ReservationIn, svc: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return points.reserve(
        svc,
        who,
        member_id,
        body.id,
        body.amount,
        order_amount=body.order_amount,
        order_id=body.order_id,
        program_id=body.program_id,
        ttl_seconds=body.ttl_seconds,
    )


@router.delete(
    "/members/{member_id}/points/reservations/{reservation_id}", summary="Release a hold"
)
def delete_reservation(
    member_id: str,
    reservation_id: str,
    svc: ServicesDep,
    who: PrincipalDep,
    program_id: str | None = None,
) -> dict[str, Any]:
    return points.release_reservation(svc, who, member_id, reservation_id, program_id)


@router.post(
    "/members/{member_id}/points/redemptions",
    status_code=201,
    summary="Spend points (points mall, exchange)",
)
def post_redemption(
    member_id: str, body: RedemptionIn, svc: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    if body.item_id is not None:
        return points_mall.redeem_item(
            svc, who, member_id, body.id, body.item_id, body.quantity, body.program_id
        )
    assert body.amount is not None and body.reason is not None  # RedemptionIn checks
    return points.redeem(svc, who, member_id, body.id, body.amount, body.reason, body.program_id)


class CancellationIn(Request):
    reason: Annotated[str, Field(min_length=1, max_length=200)]
    program_id: Ident | None = None


@router.post(
    "/members/{member_id}/points/redemptions/{redemption_id}/cancellation",
    summary="Take a redemption back: points to their lots, stock, benefit (admin scope)",
)
def post_redemption_cancellation(
    member_id: str, redemption_id: str, body: CancellationIn, svc: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return points_mall.cancel_redemption(
        svc, who, member_id, redemption_id, body.reason, body.program_id
    )


@router.get(
    "/members/{member_id}/points-mall/redemptions",
    summary="A member's points-mall redemptions, newest first",
)
def get_mall_redemptions(
    member_id: str,
    svc: ServicesDep,
    who: PrincipalDep,
    program_id: str | None = None,
    before: Annotated[
        int | None, Query(ge=1, description="the cursor of the last one seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    return points_mall.redemptions_of(svc, who, member_id, program_id, before=before, limit=limit)


@router.get("/points-mall", summary="The items of a program's points mall on offer now")
def get_points_mall(
    svc: ServicesDep, who: PrincipalDep, program_id: str | None = None
) -> dict[str, Any]:
    return points_mall.catalogue(svc, who, program_id)


@router.post(
    "/members/{member_id}/points/adjustments",
    status_code=201,
    summary="Operator adjustment (admin scope)",
)
def post_adjustment(
    member_id: str, body: AdjustmentIn, svc: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return points.adjust(svc, who, member_id, body.id, body.amount, body.reason, body.program_id)


@router.post(
    "/stores/{store_id}/points-budget/purchases",
    status_code=201,
    summary="A store buys platform points into its budget (platform admin)",
)
def post_budget_purchase(
    store_id: str, body: BudgetPurchaseIn, svc: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return budgets.purchase_budget(svc, who, store_id, body.id, body.points, body.paid_fen)


@router.get("/stores/{store_id}/points-budget", summary="What is left of a store's budget")
def get_budget(store_id: str, svc: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    return budgets.budget_of(svc, who, store_id)


def _platform_admin(who: Principal) -> None:
    who.require(Scope.ADMIN)
    if not who.is_platform:
        raise forbidden(AdminError.SCOPE_MISSING, "platform administrators only")


@router.get("/reports/points-liability", summary="Outstanding, pending, redeemed, expired")
def get_liability(svc: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    _platform_admin(who)
    return {"liability": points_jobs.liability(svc)}


@router.get("/reports/points-flow", summary="Points issued, redeemed, expired, month by month")
def get_flow(
    svc: ServicesDep,
    who: PrincipalDep,
    program_id: Annotated[str | None, Query(description="default: the key's own program")] = None,
    months: Annotated[int, Query(ge=1, le=36, description="business months, up to now")] = 12,
) -> dict[str, Any]:
    return points.flow(svc, who, program_id, months)


@router.put("/programs/{program_id}/document", summary="Apply a new version of a program")
def put_document(
    program_id: str, svc: ServicesDep, who: PrincipalDep, body: Annotated[DocumentIn, Body()]
) -> dict[str, Any]:
    _platform_admin(who)
    version = programs.apply_document(
        svc, program_id, body.document, actor=who.actor, effective_from=body.effective_from
    )
    return {"program_id": program_id, "version": version}


@router.get("/programs/{program_id}/document", summary="Every version of a program's document")
def get_documents(program_id: str, svc: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    who.require(Scope.READ)
    return {"program_id": program_id, "versions": programs.list_versions(svc, program_id, who)}


@router.get("/schemas/program", summary="JSON Schema of the program document")
def program_schema() -> dict[str, Any]:
    return ProgramDocument.model_json_schema()
