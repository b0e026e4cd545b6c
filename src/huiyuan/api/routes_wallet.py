"""Wallet endpoints: balance, history, payments and their refunds."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from huiyuan.api.deps import PrincipalDep, ServicesDep
from huiyuan.services import wallet

router = APIRouter(prefix="/v1/members/{member_id}/wallet", tags=["wallet"])

Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@\-]+$")]
Fen = Annotated[StrictInt, Field(gt=0, le=10**13)]


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Ident = Field(description="your payment id; makes the call idempotent")
    amount: Fen
    order_id: Ident | None = None
    program_id: Ident | None = None


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Ident = Field(description="your refund id; makes the call idempotent")
    amount: Fen
    program_id: Ident | None = None


@router.get("", summary="Wallet balance: principal (本金), bonus (赠送金), cumulative recharge")
def get_wallet(
    member_id: str,
    svc: ServicesDep,
    who: PrincipalDep,
    program_id: str | None = None,
    as_of: Annotated[AwareDatetime | None, Query(description="balance at a past instant")] = None,
) -> dict[str, Any]:
    return wallet.summary(svc, who, member_id, program_id, as_of)


@router.get("/entries", summary="Wallet history")
def get_wallet_entries(
    member_id: str,
    svc: ServicesDep,
    who: PrincipalDep,
    program_id: str | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    return wallet.entries(svc, who, member_id, program_id, before_id=before_id, limit=limit)


@router.post("/payments", status_code=201, summary="Pay from the wallet")
def post_payment(
    member_id: str, body: PaymentIn, svc: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return wallet.pay(svc, who, member_id, body.id, body.amount, body.order_id, body.program_id)


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=201,
    summary="Refund (part of) a wallet payment to the parts it came from",
)
def post_payment_refund(
    member_id: str, payment_id: str, body: RefundIn, svc: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return wallet.refund_payment(
        svc, who, member_id, payment_id, body.id, body.amount, body.program_id
    )
