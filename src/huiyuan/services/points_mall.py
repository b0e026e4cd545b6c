"""The points mall (积分商城): redeeming an item of the program document's catalogue.

An item has a price in points, and may have a stock (how many in all, ever), a limit per member
(ever, or per business day or month), a window (``starts_at``/``ends_at``), tiers it is reserved
for, and a benefit it exchanges points for. A redemption is
``POST /v1/members/{id}/points/redemptions`` naming ``item_id`` (and ``quantity``) instead of an
amount: Huiyuan prices it from the catalogue in force, checks the window, the tier, the member's
allowance, the points (oldest expiry first, as any spend) and the stock, in that order, and
either records all of it — the ``redeem`` transaction, the redemption, the stock sold — or
nothing. The request's ``id`` makes it idempotent, as for any redemption.

Customer service may cancel a redemption (``cancel_redemption``): the points go back to their
lots, the units to the stock, and a benefit it granted ends.

Locks: the member's points account first (the allowance is counted under it, so one member's
concurrent redemptions cannot both pass the limit), then the item's stock row (one per limited
item: redemptions of the same limited item wait for each other there, no others do).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from huiyuan.db import grants_repo, mall_repo, points_repo, tiers_repo
from huiyuan.db.audit_repo import record_audit
from huiyuan.domain.business_time import day_start
from huiyuan.domain.errors import PointsError, conflict, invalid, not_found
from huiyuan.schemas.program_config import MallItemDoc
from huiyuan.services.context import Services
from huiyuan.services.members import require_visible_member
from huiyuan.services.points import balance_view, book_for_request
from huiyuan.services.points_book import REDEEMED, PointsBook, Reason
from huiyuan.services.principals import Principal, Scope
from huiyuan.services.program_access import program_for_key


def redeem_item(
    svc: Services,
    who: Principal,
    member_id: str,
    request_id: str,
    item_id: str,
    quantity: int,
    program_id: str | None,
) -> dict[str, Any]:
    """Redeem ``quantity`` of a mall item (see the module's docstring)."""
    who.require(Scope.WRITE)
    with book_for_request(svc, who, member_id, program_id) as (tx, book):
        conn, program = tx.conn, book.program_id
        key = f"redeem:{request_id}"
        if points_repo.find_txn(conn, program, key) is not None:
            return _replay(book, request_id, item_id, quantity)
        item = book.config.document.points.mall_item(item_id)
        if item is None:
            raise invalid(
                PointsError.MALL_ITEM_NOT_FOUND,
                f"the points mall of {program!r} has no item {item_id!r}",
                field="item_id",
            )
        _check_offered(book, item)
        book.balances()  # locks the account: the allowance below is counted under it
        if item.per_member_limit is not None:
            since = _period_start(svc, item.limit_period)
            had = mall_repo.redeemed_by(conn, program, member_id, item.id, since)
            if had + quantity > item.per_member_limit:
                per = {"ever": "", "day": " a day", "month": " a month"}[item.limit_period]
                raise conflict(
                    PointsError.MALL_ITEM_LIMIT_REACHED,
                    f"{item.id!r} is limited to {item.per_member_limit} per member{per}; "
                    f"this member has {had}",
                    field="quantity",
                )
        points = item.points * quantity
        txn_id = book.draw(
            "redeem",
            points,
            key,
            Reason(
                f"积分兑换：{item.name.zh} ×{quantity}", f"redeemed: {item.name.en} ×{quantity}"
            ),
            counter_account=REDEEMED,
        )
        assert txn_id is not None  # the key was looked up above, under the member's lock
        if item.stock is not None and not mall_repo.take_stock(
            conn, program, item.id, quantity, item.stock
        ):
            raise conflict(
                PointsError.MALL_ITEM_OUT_OF_STOCK,
                f"{item.id!r} has fewer than {quantity} left",
                field="quantity",
            )
        granted = _grant(book, item, quantity, request_id)
        mall_repo.insert_redemption(
            conn,
            {
                "program_id": program,
                "redemption_id": request_id,
                "member_id": member_id,
                "item_id": item.id,
                "quantity": quantity,
                "points": points,
                "txn_id": txn_id,
                "config_version": book.config.version,
                "created_at": svc.now(),
                "stocked": item.stock is not None,
            },
        )
        result = {
            "transaction_id": txn_id,
            "replayed": False,
            "points": points,
            "item": {"id": item.id, "quantity": quantity},
            "benefit": granted,
            "balance": balance_view(book),
        }
        tx.commit()
    return result


def _grant(
    book: PointsBook, item: MallItemDoc, quantity: int, request_id: str
) -> dict[str, Any] | None:
    """An item that exchanges points for a benefit grants it for ``quantity`` × its days,
    starting now or, if the member holds it already from an earlier grant, when that ends."""
    if item.benefit is None:
        return None
    now = book.svc.now()
    conn, program, member = book.conn, book.program_id, book.member_id
    starts = max(now, grants_repo.last_end(conn, program, member, item.benefit.id) or now)
    ends = starts + timedelta(days=item.benefit.days * quantity)
    grants_repo.insert(
        conn,
        {
            "program_id": program,
            "member_id": member,
            "benefit_id": item.benefit.id,
            "source": f"mall:{request_id}",
            "starts_at": starts,
            "ends_at": ends,
            "created_at": now,
        },
    )
    return _grant_view(grants_repo.of_source(conn, program, f"mall:{request_id}"))


def _period_start(svc: Services, period: str) -> datetime | None:
    """The start of the business day or month now (``None`` for ``ever``)."""
    if period == "ever":
        return None
    today = day_start(svc.now(), svc.settings.zone)
    return today if period == "day" else today.replace(day=1)


def _check_offered(book: PointsBook, item: MallItemDoc) -> None:
    now = book.svc.now()
    if (item.starts_at and now < item.starts_at) or (item.ends_at and now >= item.ends_at):
        raise conflict(
            PointsError.MALL_ITEM_UNAVAILABLE,
            f"{item.id!r} is offered from {_iso(item.starts_at) or '—'} "
            f"until {_iso(item.ends_at) or '—'}",
            field="item_id",
        )
    if item.tiers:
        row = tiers_repo.get_member_tier(book.conn, book.program_id, book.member_id)
        tier = None if row is None else str(row.tier_id)
        if tier not in item.tiers:
            raise conflict(
                PointsError.MALL_ITEM_NOT_FOR_TIER,
                f"{item.id!r} is for members on tier {', '.join(item.tiers)}; "
                f"this member is on {tier or 'no tier'}",
                field="item_id",
            )


def _replay(book: PointsBook, request_id: str, item_id: str, quantity: int) -> dict[str, Any]:
    """The same id again: the first answer if it asked for the same, else a 409."""
    row = mall_repo.get_redemption(book.conn, book.program_id, request_id)
    if row is None or row.item_id != item_id or int(row.quantity) != quantity:
        raise conflict(
            PointsError.ID_REUSED, "this id was used for a different request", field="id"
        )
    grant = grants_repo.of_source(book.conn, book.program_id, f"mall:{request_id}")
    return {
        "transaction_id": int(row.txn_id),
        "replayed": True,
        "points": int(row.points),
        "item": {"id": row.item_id, "quantity": int(row.quantity)},
        "benefit": None if grant is None else _grant_view(grant),
        "balance": balance_view(book),
    }


def _grant_view(grant: Any) -> dict[str, Any]:
    return {
        "id": grant.benefit_id,
        "starts_at": grant.starts_at.isoformat(),
        "ends_at": grant.ends_at.isoformat(),
    }


def catalogue(svc: Services, who: Principal, program_id: str | None) -> dict[str, Any]:
    """The items of the program's points mall, with what is left of each: those on offer now
    and those still to come (their ``starts_at`` says when); not those whose window ended."""
    who.require(Scope.READ)
    now = svc.now()
    with svc.engine.connect() as conn:
        program = program_for_key(svc, conn, who, program_id)
        config = svc.configs.at(conn, program, now)
        sold = mall_repo.sold(conn, program)
    items = config.document.points.mall
    return {
        "program_id": program,
        "items": [
            {
                "id": item.id,
                "name": item.name.model_dump(),
                "points": item.points,
                "stock": item.stock,
                "left": None if item.stock is None else max(item.stock - sold.get(item.id, 0), 0),
                "per_member_limit": item.per_member_limit,
                "limit_period": item.limit_period,
                "starts_at": _iso(item.starts_at),
                "ends_at": _iso(item.ends_at),
                "tiers": list(item.tiers),
            }
            for item in items
            if not (item.ends_at and now >= item.ends_at)
        ],
    }


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment else None


def cancel_redemption(
    svc: Services,
    who: Principal,
    member_id: str,
    redemption_id: str,
    reason: str,
    program_id: str | None,
) -> dict[str, Any]:
    """Take a redemption back (the item cannot be shipped, customer service cancels it): its
    points go back to the lots they came from, with their original expiry (a lot that expired
    meanwhile per ``refund_of_expired``); a mall item's units go back on sale, and a benefit it
    granted ends now. Audited. Cancelling again answers the same, with ``replayed``."""
    who.require(Scope.ADMIN)
    with book_for_request(svc, who, member_id, program_id) as (tx, book):
        conn, program = tx.conn, book.program_id
        spent = points_repo.find_txn(conn, program, f"redeem:{redemption_id}")
        if spent is None or spent.member_id != member_id:
            raise not_found(
                PointsError.REDEMPTION_NOT_FOUND,
                f"no redemption {redemption_id!r} of member {member_id!r} in {program!r}",
            )
        key = f"cancel:{redemption_id}"
        done = points_repo.find_txn(conn, program, key)
        if done is not None:
            txn_id = int(done.id)
        else:
            points = points_repo.unrestored_draws(conn, spent.id)
            words = Reason(f"积分兑换撤销：{reason}", f"redemption cancelled: {reason}")
            restored = book.restore([spent.id], points, key, words)
            assert restored is not None  # the key was looked up above, under the member's lock
            txn_id = restored
            now = svc.now()
            mall = mall_repo.get_redemption(conn, program, redemption_id)
            if mall is not None:
                if mall.stocked:
                    mall_repo.give_back_stock(conn, program, mall.item_id, int(mall.quantity))
                grants_repo.revoke(conn, program, f"mall:{redemption_id}", now)
                mall_repo.mark_cancelled(conn, program, redemption_id, now)
            record_audit(
                conn,
                actor=who.actor,
                action="points.redemption_cancelled",
                subject=f"member:{member_id}",
                detail={"program_id": program, "redemption_id": redemption_id, "reason": reason},
                at=now,
            )
        result = {
            "redemption_id": redemption_id,
            "transaction_id": txn_id,
            "replayed": done is not None,
            "points": points_repo.member_moved(conn, txn_id),
            "balance": balance_view(book),
        }
        tx.commit()
    return result


def redemptions_of(
    svc: Services,
    who: Principal,
    member_id: str,
    program_id: str | None,
    *,
    before: int | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """The member's mall redemptions (兑换记录), newest first, a page at a time: ``before`` is
    the ``cursor`` of the last one seen."""
    who.require(Scope.READ)
    now = svc.now()
    with svc.engine.connect() as conn:
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id)
        found = mall_repo.of_member(conn, program, member_id, before, limit)
        items = {i.id: i for i in svc.configs.at(conn, program, now).document.points.mall}
    return {
        "member_id": member_id,
        "program_id": program,
        "redemptions": [
            {
                "id": r.redemption_id,
                "item_id": r.item_id,
                "name": _name(items.get(r.item_id)),
                "quantity": int(r.quantity),
                "points": int(r.points),
                "status": r.status,
                "redeemed_at": r.created_at.isoformat(),
                "cancelled_at": _iso(r.cancelled_at),
                "cursor": int(r.txn_id),
            }
            for r in found
        ],
    }


def _name(item: MallItemDoc | None) -> dict[str, str] | None:
    """An item's name in the catalogue in force (``None`` once it left the catalogue)."""
    return None if item is None else item.name.model_dump()
