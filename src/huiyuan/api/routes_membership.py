"""Paid membership (付费会员) endpoints: the member's subscriptions, the benefits they hold now,
and the savings calculator ("开通可省 ¥123.45")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from huiyuan.api.deps import PrincipalDep, ServicesDep
from huiyuan.services import memberships

router = APIRouter(prefix="/v1/members/{member_id}", tags=["membership"])


@router.get("/membership", summary="Running, queued and past paid-membership terms")
def get_membership(
    member_id: str, svc: ServicesDep, who: PrincipalDep, program_id: str | None = None
) -> dict[str, Any]:
    return memberships.membership_view(svc, who, member_id, program_id)


@router.get("/benefits", summary="Benefits in force from the tier and the paid plan, combined")
def get_benefits(
    member_id: str, svc: ServicesDep, who: PrincipalDep, program_id: str | None = None
) -> dict[str, Any]:
    return memberships.benefits_in_force(svc, who, member_id, program_id)


@router.get(
    "/membership/savings",
    summary="What a plan would have saved over the last 12 months, and what it has saved",
)
def get_savings(
    member_id: str,
    svc: ServicesDep,
    who: PrincipalDep,
    plan: Annotated[str, Query(min_length=1, max_length=64, description="a plan id")],
    program_id: str | None = None,
) -> dict[str, Any]:
    return memberships.savings(svc, who, member_id, plan, program_id)
