"""Reading members: the profile and, per program, the enrollment.

A store's key sees a member only if the member is enrolled in one of that store's programs, and
then only those enrollments; the platform sees everything. Phones are looked up in their stored
form, so ``+86 138 0013 8000`` finds ``13800138000``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from huiyuan.db import members_repo, orders_repo
from huiyuan.domain.errors import MemberError, invalid, not_found
from huiyuan.domain.phone import normalize_phone
from huiyuan.services.context import Services
from huiyuan.services.principals import Principal, Scope


def get_member(svc: Services, principal: Principal, member_id: str) -> dict[str, Any]:
    principal.require(Scope.READ)
    with svc.engine.connect() as conn:
        row = members_repo.get_member(conn, member_id)
        if row is None or not _visible(conn, principal, member_id):
            raise not_found(MemberError.NOT_FOUND, f"no member {member_id!r}")
        return _member_view(conn, principal, row)


def find_members_by_phone(svc: Services, principal: Principal, phone: str) -> list[dict[str, Any]]:
    principal.require(Scope.READ)
    normalized = normalize_phone(phone)
    if normalized is None:
        raise invalid(MemberError.PHONE_INVALID, "not a phone number", field="phone")
    with svc.engine.connect() as conn:
        rows = members_repo.find_by_phone(conn, normalized)
        return [
            _member_view(conn, principal, row)
            for row in rows
            if _visible(conn, principal, row.member_id)
        ]


def require_visible_member(
    conn: Connection, who: Principal, member_id: str, *, lock: bool = False
) -> None:
    """404 unless the member exists and the caller may see them (a store: enrolled with it);
    with ``lock`` the member's row stays locked until the transaction ends."""
    read = members_repo.lock_member if lock else members_repo.get_member
    if read(conn, member_id) is None or not _visible(conn, who, member_id):
        raise not_found(MemberError.NOT_FOUND, f"no member {member_id!r}")


def _visible(conn: Connection, principal: Principal, member_id: str) -> bool:
    return principal.is_platform or members_repo.is_enrolled_with_owner(
        conn, member_id, principal.owner_id
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _member_view(conn: Connection, principal: Principal, row: Row[Any]) -> dict[str, Any]:
    enrollments = [
        {
            "program_id": e.program_id,
            "program_name": e.program_name,
            "owner_id": e.owner_id,
            "enrolled_at": _iso(e.enrolled_at),
        }
        for e in members_repo.enrollments_of(conn, row.member_id)
        if principal.is_platform or e.owner_id == principal.owner_id
    ]
    store = None if principal.is_platform else principal.owner_id
    totals = orders_repo.order_totals(conn, row.member_id, store)
    return {
        "member_id": row.member_id,
        "profile": {
            "phone": row.phone,
            "name": row.name,
            "nickname": row.nickname,
            "gender": row.gender,
            "birthday": _iso(row.birthday),
            "region": row.region,
            "email": row.email,
            "avatar_url": row.avatar_url,
            "education": row.education,
            "occupation": row.occupation,
            "addresses": row.addresses,
            "invoice_titles": row.invoice_titles,
        },
        "registration": {
            "registered": row.origin == "registered",
            "registered_at": _iso(row.registered_at),
            "channel": row.registration_channel,
            "store_id": row.registration_store_id,
            "inviter_id": row.inviter_id,
        },
        "activity": {
            "last_login_at": _iso(row.last_login_at),
            "orders": totals.orders,
            "paid_total": int(totals.paid),
            "refunded_total": int(totals.refunded),
            "last_order_at": _iso(totals.last_paid_at),
        },
        "enrollments": enrollments,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }
