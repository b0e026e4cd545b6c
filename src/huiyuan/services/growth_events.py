"""What events do to growth (成长值) and tiers.

Called by the event handlers inside the event's transaction (member row locked), for the
platform's program and, for a store's event, the store's program, each by the document in
force when the event occurred. Idempotency keys derive from the event, order, review or
business day, so re-applying changes nothing; after every change the tier is re-evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select

from huiyuan.db import tiers_repo
from huiyuan.db.tables import growth_entries, members, order_items
from huiyuan.domain import growth as dg
from huiyuan.domain.business_time import business_day, day_start
from huiyuan.services.context import PLATFORM_OWNER, Services
from huiyuan.services.tier_book import TierBook

Effect = dict[str, Any]
PROFILE_FIELDS = ("name", "gender", "birthday", "region", "phone")


def books(
    svc: Services,
    conn: Connection,
    member_id: str,
    store_id: str | None,
    at: datetime,
    actor: str,
    *,
    every_program: bool = False,
) -> list[TierBook]:
    """The member's books in the programs an event counts for; those with neither growth rules
    nor a ladder only when ``every_program`` (a refund takes back what they credited before)."""
    result = []
    for config, owner in svc.configs_of_activity(conn, store_id, at):
        doc = config.document
        if not doc.growth.enabled and doc.tiers is None and not every_program:
            continue
        scope = None if owner == PLATFORM_OWNER else owner
        result.append(
            TierBook(
                svc, conn, config, member_id, at, actor=actor, owner_id=owner, store_scope=scope
            )
        )
    return result


def _rules(book: TierBook, kind: dg.GrowthKind) -> list[dg.GrowthRule]:
    doc = book.config.document.growth
    if not doc.enabled:
        return []
    return [r.to_domain() for r in doc.rules if r.kind is kind]


def _capped(book: TierBook, rule: dg.GrowthRule, points: int, at: datetime) -> int:
    if rule.per_day is None:
        return points
    today = tiers_repo.growth_of_rule_since(
        book.conn, book.program_id, book.member_id, rule.id, day_start(at, book.svc.settings.zone)
    )
    return dg.capped_growth(points, rule.per_day, today)


def _each(
    svc: Services,
    conn: Connection,
    event: Any,
    actor: str,
    work: Callable[[TierBook], list[Effect]],
    *,
    store_id: str | None = None,
    refund: bool = False,
    always: bool = False,
    every_program: bool = False,
) -> list[Effect]:
    effects: list[Effect] = []
    for book in books(
        svc,
        conn,
        event.member_id,
        store_id if store_id is not None else event.store_id,
        event.occurred_at,
        actor,
        every_program=every_program,
    ):
        changed = work(book)
        effects += changed
        if changed or refund or always:
            effects += book.after_change(refund=refund)
    return effects


# ---------------------------------------------------------------- actions


ACTION_WORDS = {
    dg.GrowthKind.SHARE: ("分享", "share"),
    dg.GrowthKind.SIGN_IN: ("签到", "sign-in"),
    dg.GrowthKind.REGISTRATION: ("注册", "registration"),
}


def on_action(
    svc: Services, conn: Connection, event: Any, kind: dg.GrowthKind, actor: str
) -> list[Effect]:
    zh, en = ACTION_WORDS[kind]

    def work(book: TierBook) -> list[Effect]:
        out = []
        for rule in _rules(book, kind):
            points = _capped(book, rule, rule.points, event.occurred_at)
            if book.credit(
                points,
                f"action:{actor}:{rule.id}",
                kind=kind.value,
                rule_id=rule.id,
                zh=f"{zh}成长值",
                en=f"{en} growth",
            ):
                out.append(_effect(book, rule.id, points))
        return out

    return _each(svc, conn, event, actor, work)


def on_login(svc: Services, conn: Connection, event: Any, actor: str) -> list[Effect]:
    """The first login of a business day earns growth (not on the lowest tier, if so set)."""
    day = business_day(event.occurred_at, svc.settings.zone)

    def work(book: TierBook) -> list[Effect]:
        out = []
        for rule in _rules(book, dg.GrowthKind.LOGIN):
            if rule.skip_lowest_tier and book.ladder and book.tier_id == book.ladder.tiers[0].id:
                continue
            points = _capped(book, rule, rule.points, event.occurred_at)
            if book.credit(
                points,
                f"login:{book.member_id}:{day.isoformat()}:{rule.id}",
                kind="login",
                rule_id=rule.id,
                zh=f"{day} 首次登录",
                en=f"first login of {day}",
            ):
                out.append(_effect(book, rule.id, points))
        return out

    return _each(svc, conn, event, actor, work)


def on_profile(svc: Services, conn: Connection, event: Any, actor: str) -> list[Effect]:
    """Profile completion earns growth once, when every profile field is filled."""
    values = conn.execute(
        select(*[members.c[name] for name in PROFILE_FIELDS]).where(
            members.c.member_id == event.member_id
        )
    ).first()
    if values is None or any(v in (None, "") for v in values):
        return []

    def work(book: TierBook) -> list[Effect]:
        out = []
        for rule in _rules(book, dg.GrowthKind.PROFILE_COMPLETION):
            if book.credit(
                rule.points,
                f"profile:{book.member_id}:{rule.id}",
                kind="profile_completion",
                rule_id=rule.id,
                zh="完善资料",
                en="profile completed",
            ):
                out.append(_effect(book, rule.id, rule.points))
        return out

    return _each(svc, conn, event, actor, work)


# ---------------------------------------------------------------- orders


def on_order_completed(
    svc: Services, conn: Connection, event: Any, order: Row[Any], actor: str
) -> list[Effect]:
    """Purchase growth: what the member paid (net of refunds so far) × rate × coefficient."""
    paid = int(order.amount) - int(order.refunded_amount)

    def work(book: TierBook) -> list[Effect]:
        out = []
        for rule in _rules(book, dg.GrowthKind.PURCHASE):
            points = _capped(
                book, rule, dg.purchase_growth(rule, paid, book.tier_id), event.occurred_at
            )
            if book.credit(
                points,
                f"purchase:{order.order_id}:{rule.id}",
                kind="purchase",
                rule_id=rule.id,
                order_id=order.order_id,
                basis_fen=paid,
                zh=f"订单 {order.order_id} 消费成长值",
                en=f"order {order.order_id} purchase growth",
            ):
                out.append(_effect(book, rule.id, points))
        return out

    return _each(svc, conn, event, actor, work, store_id=order.store_id, always=True)


def on_order_refunded(
    svc: Services, conn: Connection, event: Any, order: Row[Any], refund_id: str, actor: str
) -> list[Effect]:
    """A refund after completion takes back purchase growth in proportion to what completion
    credited it for: the refunds recorded since then — in the order they arrived, whenever they
    occurred — over the paid amount net of the refunds recorded by then (the entry's basis).

    Driven by the entries the order earned, not by today's rules: growth credited under a rule
    since renamed or removed, or before growth was turned off, is taken back all the same.
    """
    if order.completed_at is None:
        return []
    amount, refunded = int(order.amount), int(order.refunded_amount)

    def work(book: TierBook) -> list[Effect]:
        out = []
        for earned in tiers_repo.purchase_growth_of_order(
            book.conn, book.program_id, book.member_id, order.order_id
        ):
            known_at_completion = amount - earned.basis_fen
            due = dg.growth_taken_back(
                earned.credited,
                earned.taken_back,
                refunded - known_at_completion,
                earned.basis_fen,
            )
            if book.credit(
                -due,
                f"purchase-refund:{order.order_id}:{earned.rule_id}:{refund_id}",
                kind="purchase_refund",
                rule_id=earned.rule_id,
                order_id=order.order_id,
                zh=f"订单 {order.order_id} 退款扣回成长值",
                en=f"order {order.order_id} refunded: growth taken back",
            ):
                out.append(_effect(book, earned.rule_id, -due))
        return out

    return _each(
        svc, conn, event, actor, work, store_id=order.store_id, refund=True, every_program=True
    )


# ---------------------------------------------------------------- reviews


def on_review_approved(
    svc: Services, conn: Connection, event: Any, data: Any, actor: str
) -> list[Effect]:
    item = None
    if data.order_id and data.sku:
        item = conn.execute(
            select(order_items).where(
                order_items.c.order_id == data.order_id, order_items.c.sku == data.sku
            )
        ).first()
    photo_rank = (
        tiers_repo.photo_reviews_of_sku(conn, data.sku) if data.has_photos and data.sku else None
    )

    def work(book: TierBook) -> list[Effect]:
        out = []
        for kind in _review_kinds(data.has_photos):
            for rule in _rules(book, kind):
                if rule.min_item_fen and (
                    item is None or item.virtual or item.paid_amount < rule.min_item_fen
                ):
                    continue
                if (
                    kind is dg.GrowthKind.PHOTO_REVIEW
                    and rule.first_n is not None
                    and (photo_rank is None or photo_rank > rule.first_n)
                ):
                    continue
                points = _capped(book, rule, rule.points, event.occurred_at)
                if book.credit(
                    points,
                    f"review:{data.review_id}:{rule.id}",
                    kind=kind.value,
                    rule_id=rule.id,
                    zh="评价成长值",
                    en="review growth",
                ):
                    out.append(_effect(book, rule.id, points))
        return out

    return _each(svc, conn, event, actor, work)


def _review_kinds(has_photos: bool) -> Iterable[dg.GrowthKind]:
    yield dg.GrowthKind.REVIEW
    if has_photos:
        yield dg.GrowthKind.PHOTO_REVIEW


def on_review_deleted(
    svc: Services, conn: Connection, event: Any, review_id: str, actor: str
) -> list[Effect]:
    def work(book: TierBook) -> list[Effect]:
        earned = _review_growth(book, review_id)
        if book.credit(
            -earned,
            f"review-deleted:{review_id}",
            kind="review_deleted",
            rule_id=None,
            zh="评价删除，扣回成长值",
            en="review deleted: growth taken back",
        ):
            return [_effect(book, None, -earned)]
        return []

    return _each(svc, conn, event, actor, work, refund=True)


REFUND_EVENTS = frozenset({"wallet.recharge_refunded", "order.refunded"})


def on_metric_event(svc: Services, conn: Connection, event: Any, actor: str) -> list[Effect]:
    """Re-evaluate tiers after an event that moves a non-growth metric (recharge, spend); a
    refund may lower the tier at once where the program does not keep it on refunds."""
    refund = event.type in REFUND_EVENTS
    effects: list[Effect] = []
    for book in books(svc, conn, event.member_id, event.store_id, event.occurred_at, actor):
        effects += book.after_change(refund=refund)
    return effects


def _review_growth(book: TierBook, review_id: str) -> int:
    """The growth a review earned (its keys start ``review:<id>:``, matched literally)."""
    query = select(func.coalesce(func.sum(growth_entries.c.amount), 0)).where(
        growth_entries.c.program_id == book.program_id,
        growth_entries.c.member_id == book.member_id,
        growth_entries.c.idem_key.startswith(f"review:{review_id}:", autoescape=True),
    )
    return int(book.conn.execute(query).scalar_one())


def _effect(book: TierBook, rule_id: str | None, amount: int) -> Effect:
    return {
        "kind": "growth.credited" if amount > 0 else "growth.taken_back",
        "program_id": book.program_id,
        "rule_id": rule_id,
        "growth": amount,
    }
