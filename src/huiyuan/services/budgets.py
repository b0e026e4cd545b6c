"""Merchant budgets: a store buys platform points and hands them out through its promotions.

A budget is split into ``SLICES`` rows; a grant takes from the member's own slice with one
conditional update, so grants to different members rarely wait for one another. Only when that
slice runs dry are all slices locked (in slice order) to gather what is left. A grant beyond the
budget is refused; points cancelled or clawed back return to the budget.

A transaction applying many events (a batch, a group-commit leader) may take from one budget
several times and so hold slices out of slice order; two such transactions could deadlock when
one of them then locks every slice. Inside ``many_grants()`` each of them first takes the
budget's own lock, so they take turns on a budget while one-grant transactions, which never
wait while holding a slice, do not.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection

from huiyuan.db import points_repo
from huiyuan.db.audit_repo import record_audit
from huiyuan.domain.errors import AdminError, PointsError, conflict, forbidden, invalid
from huiyuan.services.context import Services
from huiyuan.services.owners import PLATFORM_PROGRAM
from huiyuan.services.principals import Principal, Scope

SLICES = 16
_MANY = ContextVar("budget_many_grants", default=False)


@contextmanager
def many_grants() -> Iterator[None]:
    """Grants made inside this block may be several in one transaction (see the docstring)."""
    token = _MANY.set(True)
    try:
        yield
    finally:
        _MANY.reset(token)


def _slice_of(member_id: str) -> int:
    return zlib.crc32(member_id.encode()) % SLICES


def take(conn: Connection, program_id: str, store_id: str, member_id: str, points: int) -> bool:
    """Take ``points`` from the store's budget; False (nothing taken) if it holds too few.

    A store without a budget has no slices, and so nothing to take."""
    if _MANY.get():
        points_repo.lock_budget(conn, program_id, store_id)
    if points_repo.take_from_free_slice(conn, program_id, store_id, _slice_of(member_id), points):
        return True
    slices = points_repo.lock_all_slices(conn, program_id, store_id)
    if sum(int(s.remaining) for s in slices) < points:
        return False
    left = points
    for row in slices:
        part = min(int(row.remaining), left)
        if part and not points_repo.take_from_slice(conn, program_id, store_id, row.slice, part):
            raise AssertionError("a locked slice changed under its lock")
        left -= part
        if not left:
            break
    return True


def give_back(
    conn: Connection, program_id: str, store_id: str, member_id: str, points: int
) -> None:
    if _MANY.get():
        points_repo.lock_budget(conn, program_id, store_id)
    points_repo.ensure_budget_slices(conn, program_id, store_id, SLICES)
    amounts = [0] * SLICES
    amounts[_slice_of(member_id)] = points
    points_repo.fund_slices(conn, program_id, store_id, amounts)


def purchase_budget(
    svc: Services,
    principal: Principal,
    store_id: str,
    purchase_id: str,
    points: int,
    paid_fen: int,
) -> dict[str, Any]:
    """Record a store buying ``points`` platform points for ``paid_fen`` (platform admin)."""
    principal.require(Scope.ADMIN)
    if not principal.is_platform:
        raise forbidden(AdminError.SCOPE_MISSING, "only the platform sells points budgets")
    if points <= 0:
        raise invalid(PointsError.BUDGET_EXHAUSTED, "points must be positive", field="points")
    with svc.uow() as tx:
        conn = tx.conn
        if not svc.directory.is_store(conn, store_id):
            raise invalid(PointsError.NOT_A_STORE, f"no store {store_id!r}", field="store_id")
        row = {
            "program_id": PLATFORM_PROGRAM,
            "purchase_id": purchase_id,
            "store_id": store_id,
            "points": points,
            "paid_fen": paid_fen,
            "actor": principal.actor,
            "created_at": svc.now(),
        }
        if not points_repo.add_budget_purchase(conn, row):
            existing = points_repo.get_budget_purchase(conn, PLATFORM_PROGRAM, purchase_id)
            assert existing is not None
            same = (existing.store_id, existing.points, existing.paid_fen) == (
                store_id,
                points,
                paid_fen,
            )
            if not same:
                raise conflict(
                    PointsError.ID_REUSED, "purchase id used for another purchase", field="id"
                )
            return _budget_view(conn, store_id) | {"replayed": True}
        points_repo.ensure_budget_slices(conn, PLATFORM_PROGRAM, store_id, SLICES)
        share, extra = divmod(points, SLICES)
        points_repo.fund_slices(
            conn,
            PLATFORM_PROGRAM,
            store_id,
            [share + (1 if i < extra else 0) for i in range(SLICES)],
        )
        record_audit(
            conn,
            actor=principal.actor,
            action="budget.purchased",
            subject=f"store:{store_id}",
            detail={"purchase_id": purchase_id, "points": points, "paid_fen": paid_fen},
            at=svc.now(),
        )
        view = _budget_view(conn, store_id)
        tx.commit()
    return view | {"replayed": False}


def _budget_view(conn: Connection, store_id: str) -> dict[str, Any]:
    return {
        "store_id": store_id,
        "program_id": PLATFORM_PROGRAM,
        "remaining": points_repo.budget_remaining(conn, PLATFORM_PROGRAM, store_id),
    }


def budget_of(svc: Services, principal: Principal, store_id: str) -> dict[str, Any]:
    principal.require(Scope.READ)
    if not principal.is_platform and principal.owner_id != store_id:
        raise forbidden(AdminError.SCOPE_MISSING, "a store sees only its own budget")
    with svc.engine.connect() as conn:
        return _budget_view(conn, store_id)
