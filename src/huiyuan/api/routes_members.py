"""``GET /v1/members/{member_id}`` and ``GET /v1/members?phone=…``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from huiyuan.api.deps import PrincipalDep, ServicesDep
from huiyuan.services import members as member_service

router = APIRouter(prefix="/v1/members", tags=["members"])


@router.get("/{member_id}", summary="A member's profile and enrollments")
def get_member(member_id: str, svc: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    return member_service.get_member(svc, who, member_id)


@router.get("", summary="Find members by phone (customer service)")
def find_members(
    svc: ServicesDep,
    who: PrincipalDep,
    phone: Annotated[str, Query(min_length=3, max_length=30)],
) -> dict[str, Any]:
    return {"members": member_service.find_members_by_phone(svc, who, phone)}
