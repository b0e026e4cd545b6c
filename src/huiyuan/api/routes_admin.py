"""Owners and programs (admin scope, platform keys only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from huiyuan.api.deps import PrincipalDep, ServicesDep
from huiyuan.domain.errors import AdminError, forbidden
from huiyuan.services import owners as owner_service
from huiyuan.services.principals import Principal, Scope

router = APIRouter(prefix="/v1", tags=["admin"])

Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@\-]+$")]


class NewStore(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Ident
    name: Annotated[str, Field(min_length=1, max_length=200)]
    program: bool = Field(default=True, description="give the store its own program")


class NewProgram(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Ident
    owner_id: Ident
    name: Annotated[str, Field(min_length=1, max_length=200)]


def _platform_admin(who: Principal) -> None:
    who.require(Scope.ADMIN)
    if not who.is_platform:
        raise forbidden(AdminError.SCOPE_MISSING, "only the platform manages owners and programs")


@router.get("/owners", summary="The platform and its stores, with their programs")
def list_owners(svc: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    _platform_admin(who)
    return {
        "owners": [
            {"id": o.id, "kind": o.kind, "name": o.name, "programs": list(o.programs)}
            for o in owner_service.list_owners(svc)
        ]
    }


@router.post("/owners", status_code=201, summary="Register a store or brand")
def add_store(body: NewStore, svc: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    _platform_admin(who)
    view = owner_service.add_store(svc, body.id, body.name, program=body.program, actor=who.actor)
    return {"id": view.id, "kind": view.kind, "name": view.name, "programs": list(view.programs)}


@router.post("/programs", status_code=201, summary="Add a program to an owner")
def add_program(body: NewProgram, svc: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    _platform_admin(who)
    owner_service.add_program(svc, body.id, body.owner_id, body.name, actor=who.actor)
    return {"id": body.id, "owner_id": body.owner_id, "name": body.name}
