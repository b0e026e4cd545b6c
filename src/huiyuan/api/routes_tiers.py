"""Tier and growth endpoints: the member's tier card, growth history, setting a tier by hand."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from huiyuan.api.deps import PrincipalDep, ServicesDep
from huiyuan.services import tiers

router = APIRouter(prefix="/v1/members/{member_id}", tags=["tiers"])

Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@\-]+$")]


class TierOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier_id: Ident
    mode: Literal["floor", "fixed"] = "floor"
    ends_at: AwareDatetime | None = None
    reason: Annotated[str, Field(min_length=1, max_length=200)]
    program_id: Ident | None = None


@router.get("/tier", summary="Current tier, progress to the next, what keeps it, benefits")
def get_tier(
    member_id: str, svc: ServicesDep, who: PrincipalDep, program_id: str | None = None
) -> dict[str, Any]:
    return tiers.tier_view(svc, who, member_id, program_id)


@router.put("/tier", summary="Set a member's tier by hand (admin scope)")
def put_tier(
    member_id: str, body: TierOverrideIn, svc: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return tiers.set_tier(
        svc,
        who,
        member_id,
        body.tier_id,
        mode=body.mode,
        ends_at=body.ends_at,
        reason=body.reason,
        program_id=body.program_id,
    )


@router.get("/growth/entries", summary="Growth (成长值) history with reasons")
def get_growth(
    member_id: str,
    svc: ServicesDep,
    who: PrincipalDep,
    program_id: str | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    return tiers.growth_history(svc, who, member_id, program_id, before_id=before_id, limit=limit)
