"""Paid membership (付费会员, like JD PLUS): purchases, refunds, benefits in force and the savings
calculator.

A plan lives in the program document (``plans``), and a purchase is judged by the version in
force when it occurred. The program is the event's store's own program when it runs one, else
the platform's (as for the wallet).

Chains: a purchase while the member holds a subscription that has not ended is queued — it
starts at the current end of the member's chain and runs one period from there (buying PLUS
annual twice gives two years). Buying *another* plan while one runs does not switch at once
either: the new plan is queued after the current end and its benefits apply from then. Periods
are calendar months in the business time zone, month ends clamped (``domain.membership``).

Trials: a plan with ``trial_days > 0`` bought at amount 0 is a trial of that many days, once per
member and plan, for a member with nothing running or queued. Otherwise the amount must equal
the plan's price.

Refunds: only the latest term of a chain, before it ends, within the plan's
``refund_window_days`` of the purchase and — with ``refund_only_if_unused`` — while no benefit
was used (any ``order.paid`` during a running term uses it). The refund is audited with its
``refund_id``.

The event functions run inside the caller's transaction with the member's row locked, and
either return their effects or raise a ``DomainError`` before writing anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row

from huiyuan.db import grants_repo, subscriptions_repo, tiers_repo
from huiyuan.db.audit_repo import enqueue, record_audit
from huiyuan.domain import membership as dm
from huiyuan.domain.errors import (
    MembershipError,
    conflict,
    invalid,
    not_found,
)
from huiyuan.schemas import events as ev_schema
from huiyuan.schemas.program_config import BenefitDoc, PlanDoc, ProgramDocument, TierDoc
from huiyuan.schemas.validation import ValidEvent
from huiyuan.services.context import PLATFORM_OWNER, Services
from huiyuan.services.members import require_visible_member
from huiyuan.services.principals import Principal, Scope
from huiyuan.services.program_access import program_for_key
from huiyuan.services.wallet import wallet_program

Effect = dict[str, Any]
DEFAULT_REMINDER_DAYS: int = PlanDoc.model_fields["reminder_days"].default
DEFAULT_REFUND_WINDOW: int = PlanDoc.model_fields["refund_window_days"].default
WINDOW_MONTHS = 12


def _plan(doc: ProgramDocument, plan_id: str) -> PlanDoc | None:
    return next((p for p in doc.plans if p.id == plan_id), None)


def _term(row: Row[Any]) -> dm.Term:
    return dm.Term(
        purchase_id=row.purchase_id,
        plan_id=row.plan_id,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        status=row.status,
        purchased_at=row.created_at,
        benefit_used=bool(row.benefit_used),
        price_fen=int(row.price_fen),
    )


def _terms(conn: Connection, program_id: str, member_id: str) -> list[dm.Term]:
    return [_term(r) for r in subscriptions_repo.of_member(conn, program_id, member_id)]


# ---------------------------------------------------------------- events


def on_membership_purchased(
    svc: Services,
    conn: Connection,
    event: ValidEvent,
    data: ev_schema.MembershipPurchased,
    actor: str,
) -> list[Effect]:
    """Start, queue or try out a plan; see the module's rules."""
    program = wallet_program(svc, conn, event.store_id)
    at = event.occurred_at
    if subscriptions_repo.find(conn, program, data.purchase_id) is not None:
        raise conflict(
            MembershipError.PURCHASE_ID_REUSED,
            f"purchase {data.purchase_id} was already recorded",
            field="data.purchase_id",
        )
    config = svc.configs.at(conn, program, at)
    plan = _plan(config.document, data.plan_id)
    if plan is None:
        raise invalid(
            MembershipError.PLAN_UNKNOWN,
            f"program {program!r} has no plan {data.plan_id!r}",
            field="data.plan_id",
        )
    terms = _terms(conn, program, event.member_id)
    trial = dm.is_trial(plan.price_fen, plan.trial_days, data.amount)
    if trial:
        dm.check_trial(terms, plan.id, at)
        length = dm.Length(days=plan.trial_days)
    elif data.amount != plan.price_fen:
        raise invalid(
            MembershipError.AMOUNT_MISMATCH,
            f"plan {plan.id} costs {plan.price_fen} fen, not {data.amount}",
            field="data.amount",
        )
    else:
        length = dm.Length.of_period(plan.period)
    starts, ends = dm.place(terms, at, length, svc.settings.zone)
    subscriptions_repo.insert(
        conn,
        {
            "program_id": program,
            "member_id": event.member_id,
            "plan_id": plan.id,
            "purchase_id": data.purchase_id,
            "price_fen": data.amount,
            "starts_at": starts,
            "ends_at": ends,
            "status": dm.ACTIVE if ends > svc.now() else dm.EXPIRED,
            "benefit_used": False,
            "reminded_at": None,
            "created_at": at,
        },
    )
    kind = "membership.started"
    if trial:
        kind = "membership.trial_started"
    elif starts > at:
        kind = "membership.extended"
    return [
        {
            "kind": kind,
            "program_id": program,
            "plan_id": plan.id,
            "purchase_id": data.purchase_id,
            "amount": data.amount,
            "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat(),
            "config_version": config.version,
        }
    ]


def on_membership_refunded(
    svc: Services,
    conn: Connection,
    event: ValidEvent,
    data: ev_schema.MembershipRefunded,
    actor: str,
) -> list[Effect]:
    """Refund the latest term of a chain, if its plan's refund rules allow."""
    program = wallet_program(svc, conn, event.store_id)
    row = subscriptions_repo.find(conn, program, data.purchase_id)
    if row is None or row.member_id != event.member_id:
        raise not_found(
            MembershipError.PURCHASE_NOT_FOUND,
            f"member {event.member_id!r} has no purchase {data.purchase_id!r} in {program!r}",
        )
    # the terms of sale are those of the version the purchase was made under
    plan = _plan(svc.configs.at(conn, program, row.created_at).document, row.plan_id) or _plan(
        svc.configs.at(conn, program, event.occurred_at).document, row.plan_id
    )
    dm.check_refund(
        _term(row),
        _terms(conn, program, event.member_id),
        event.occurred_at,
        window_days=plan.refund_window_days if plan else DEFAULT_REFUND_WINDOW,
        only_if_unused=plan.refund_only_if_unused if plan else True,
    )
    subscriptions_repo.set_status(conn, row.id, dm.REFUNDED)
    detail = {
        "program_id": program,
        "plan_id": row.plan_id,
        "purchase_id": data.purchase_id,
        "refund_id": data.refund_id,
        "amount": int(row.price_fen),
    }
    record_audit(
        conn,
        actor=actor,
        action="membership.refunded",
        subject=f"member:{event.member_id}",
        detail=detail,
        at=svc.now(),
    )
    return [{"kind": "membership.refunded", **detail}]


def mark_benefit_used(
    svc: Services, conn: Connection, member_id: str, at: datetime
) -> list[Effect]:
    """An order paid during a running term uses its benefits (a used term may not be refunded
    where the plan says so). Every program's running term is marked."""
    return [
        {
            "kind": "membership.benefit_used",
            "program_id": r.program_id,
            "plan_id": r.plan_id,
            "purchase_id": r.purchase_id,
        }
        for r in subscriptions_repo.mark_used(conn, member_id, at)
    ]


def purchase_recorded(conn: Connection, member_id: str, purchase_id: str) -> bool:
    """Whether the member's purchase is here (in any program): a refund that arrives before
    its purchase may wait for it."""
    return subscriptions_repo.purchase_exists(conn, member_id, purchase_id)


def active_plan(conn: Connection, program_id: str, member_id: str, at: datetime) -> Row[Any] | None:
    """The subscription giving the member benefits in the program at ``at``, if any."""
    return subscriptions_repo.in_force(conn, program_id, member_id, at)


# ---------------------------------------------------------------- jobs


def expire_subscriptions(svc: Services, now: datetime | None = None) -> int:
    """Mark every active term that has ended ``expired``; returns how many."""
    now = now or svc.now()
    with svc.uow() as tx:
        done = subscriptions_repo.expire_ended(tx.conn, now)
        tx.commit()
    return done


def remind_renewals(svc: Services, now: datetime | None = None) -> int:
    """Queue one ``membership.renewal_due`` message per term ending within its plan's
    ``reminder_days`` that ends its member's chain and was not reminded; returns messages."""
    now = now or svc.now()
    zone = svc.settings.zone
    queued = 0
    with svc.uow() as tx:
        conn = tx.conn
        for program_id, plan_id in subscriptions_repo.unreminded_plans(conn, now):
            plan = _plan(svc.configs.at(conn, program_id, now).document, plan_id)
            lead = plan.reminder_days if plan else DEFAULT_REMINDER_DAYS
            if lead == 0:
                continue
            rows = subscriptions_repo.due_reminders(
                conn, program_id, plan_id, now, now + timedelta(days=lead)
            )
            messages = []
            for row in rows:
                day = row.ends_at.astimezone(zone).date().isoformat()
                name_zh, name_en = (plan.name.zh, plan.name.en) if plan else (plan_id, plan_id)
                price = plan.price_fen if plan else int(row.price_fen)
                messages.append(
                    {
                        "topic": "membership.renewal_due",
                        "key": row.member_id,
                        "payload": {
                            "program_id": program_id,
                            "member_id": row.member_id,
                            "plan_id": plan_id,
                            "purchase_id": row.purchase_id,
                            "ends_at": row.ends_at.isoformat(),
                            "renewal_price_fen": price,
                            "message": {
                                "zh": f"您的{name_zh}将于 {day} 到期，续费 {dm.yuan(price)}",
                                "en": f"Your {name_en} ends on {day}; renew for {dm.yuan(price)}",
                            },
                        },
                        "created_at": now,
                    }
                )
            enqueue(conn, messages)
            subscriptions_repo.set_reminded(conn, [r.id for r in rows], now)
            queued += len(messages)
        tx.commit()
    return queued


# ---------------------------------------------------------------- reading


def _tier(
    conn: Connection, doc: ProgramDocument, program_id: str, member_id: str
) -> TierDoc | None:
    """The member's tier (``member_tiers``) on the document's ladder; the lowest if none yet."""
    if doc.tiers is None:
        return None
    row = tiers_repo.get_member_tier(conn, program_id, member_id)
    tiers = {t.id: t for t in doc.tiers.tiers}
    return tiers.get(row.tier_id if row else "", doc.tiers.tiers[0])


def _benefit(doc: BenefitDoc, source: str) -> dm.Benefit:
    return dm.Benefit(
        id=doc.id,
        kind=doc.kind,
        source=source,
        percent_off=doc.percent_off,
        multiplier=doc.multiplier,
        monthly_quota=doc.monthly_quota,
        skus=frozenset(doc.skus),
        categories=frozenset(doc.categories),
    )


def _granted(doc: ProgramDocument, source: str, ids: Sequence[str]) -> list[dm.Benefit]:
    catalog = {b.id: b for b in doc.benefits}
    return [_benefit(catalog[i], source) for i in ids if i in catalog]


def _tier_benefits(doc: ProgramDocument, tier: TierDoc | None) -> list[dm.Benefit]:
    return _granted(doc, f"tier:{tier.id}", tier.benefits) if tier else []


def _plan_benefits(doc: ProgramDocument, plan: PlanDoc | None) -> list[dm.Benefit]:
    return _granted(doc, f"plan:{plan.id}", plan.benefits) if plan else []


def _grant_end(held: dict[str, datetime], benefit: dm.Benefit) -> str | None:
    """When a benefit held from points ends (tier and plan benefits: ``None``)."""
    return held[benefit.id].isoformat() if benefit.source == "points" else None


def _number(value: Decimal | None) -> str | None:
    """A rate as a plain decimal string ("10", "9.5", "1.5")."""
    return None if value is None else format(value.normalize(), "f")


def _subscription_view(row: Row[Any], doc: ProgramDocument, now: datetime) -> dict[str, Any]:
    plan = _plan(doc, row.plan_id)
    if row.status == dm.REFUNDED:
        state = "refunded"
    elif row.starts_at > now:
        state = "queued"
    elif row.ends_at > now:
        state = "active"
    else:
        state = "ended"
    return {
        "purchase_id": row.purchase_id,
        "plan_id": row.plan_id,
        "plan_name": plan.name.model_dump() if plan else None,
        "price_fen": int(row.price_fen),
        "trial": bool(plan and plan.price_fen > 0 and int(row.price_fen) == 0),
        "purchased_at": row.created_at.isoformat(),
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
        "status": row.status,
        "state": state,
        "benefit_used": bool(row.benefit_used),
        "reminded_at": row.reminded_at.isoformat() if row.reminded_at else None,
    }


def membership_view(
    svc: Services, who: Principal, member_id: str, program_id: str | None
) -> dict[str, Any]:
    """The running term, where the chain ends, and every term (newest first)."""
    who.require(Scope.READ)
    now = svc.now()
    with svc.engine.connect() as conn:
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id)
        doc = svc.configs.at(conn, program, now).document
        rows = subscriptions_repo.of_member(conn, program, member_id)
    views = [_subscription_view(r, doc, now) for r in rows]
    terms = [_term(r) for r in rows]
    running = dm.in_force(terms, now)
    paid_through = dm.chain_end(terms, now)
    return {
        "member_id": member_id,
        "program_id": program,
        "active": next(
            (v for v in views if running and v["purchase_id"] == running.purchase_id), None
        ),
        "paid_through": paid_through.isoformat() if paid_through else None,
        "subscriptions": list(reversed(views)),
    }


def benefits_in_force(
    svc: Services, who: Principal, member_id: str, program_id: str | None
) -> dict[str, Any]:
    """The benefits the member holds now — from their tier and their running plan — each with
    its source, whether another overrides it, and what they add up to (per ``overlap``)."""
    who.require(Scope.READ)
    now = svc.now()
    with svc.engine.connect() as conn:
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id)
        config = svc.configs.at(conn, program, now)
        doc = config.document
        tier = _tier(conn, doc, program, member_id)
        row = active_plan(conn, program, member_id, now)
        held = grants_repo.held_until(conn, program, member_id, now)
    plan = _plan(doc, row.plan_id) if row else None
    granted = (
        _tier_benefits(doc, tier)
        + _plan_benefits(doc, plan)
        + _granted(doc, "points", sorted(held))
    )
    overrides = dm.superseded_by(granted, doc.overlap)
    catalog = {b.id: b for b in doc.benefits}
    total = dm.effective(granted, doc.overlap)
    return {
        "member_id": member_id,
        "program_id": program,
        "as_of": now.isoformat(),
        "config_version": config.version,
        "overlap": doc.overlap,
        "tier": {"id": tier.id, "name": tier.name.model_dump()} if tier else None,
        "plan": None
        if row is None
        else {
            "id": row.plan_id,
            "name": plan.name.model_dump() if plan else None,
            "purchase_id": row.purchase_id,
            "ends_at": row.ends_at.isoformat(),
        },
        "benefits": [
            {
                "id": b.id,
                "kind": b.kind,
                "name": catalog[b.id].name.model_dump(),
                "description": catalog[b.id].description,
                "source": b.source,
                "percent_off": _number(b.percent_off),
                "multiplier": _number(b.multiplier),
                "monthly_quota": b.monthly_quota,
                "skus": sorted(b.skus),
                "categories": sorted(b.categories),
                "superseded_by": overrides.get(b.id),
                "ends_at": _grant_end(held, b),
            }
            for b in granted
        ],
        "effective": {
            "percent_off": _number(total.percent_off),
            "points_multiplier": _number(total.multiplier),
            "free_shipping": total.free_shipping,
            "free_shipping_monthly_quota": total.shipping_quota if total.free_shipping else 0,
        },
    }


def _orders(
    svc: Services,
    conn: Connection,
    program_id: str,
    member_id: str,
    since: datetime,
    until: datetime,
) -> list[dm.SavingsOrder]:
    owner = svc.directory.owner_of(conn, program_id) or PLATFORM_OWNER
    store = None if owner == PLATFORM_OWNER else owner  # a store's program: its own orders
    rows = subscriptions_repo.orders_between(conn, member_id, store, since, until)
    ids = [r.order_id for r in rows]
    lines: dict[str, list[dm.SavingsLine]] = defaultdict(list)
    for line in subscriptions_repo.lines_of(conn, ids):
        lines[line.order_id].append(dm.SavingsLine(line.sku, line.category, int(line.net)))
    points = subscriptions_repo.points_of_orders(conn, program_id, ids)
    return [
        dm.SavingsOrder(
            order_id=r.order_id,
            paid_at=r.paid_at,
            shipping_fee=int(r.shipping_fee),
            points=points.get(r.order_id, 0),
            lines=tuple(lines[r.order_id]),
        )
        for r in rows
    ]


def _figures(found: dm.Savings) -> dict[str, Any]:
    return {
        "orders": found.orders,
        "discount_fen": found.discount_fen,
        "extra_points": found.extra_points,
        "points_fen": found.points_fen,
        "shipping_fen": found.shipping_fen,
        "free_shipping_orders": found.free_shipping_orders,
        "total_fen": found.total_fen,
    }


def savings(
    svc: Services, who: Principal, member_id: str, plan_id: str, program_id: str | None
) -> dict[str, Any]:
    """What ``plan_id`` would have saved the member over the last 12 months of their orders,
    beyond what their tier gives, against 12 months of its price; and, with a running
    subscription, what it has saved since it started."""
    who.require(Scope.READ)
    now = svc.now()
    zone = svc.settings.zone
    with svc.engine.connect() as conn:
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id)
        doc = svc.configs.at(conn, program, now).document
        plan = _plan(doc, plan_id)
        if plan is None:
            raise invalid(
                MembershipError.PLAN_UNKNOWN, f"program {program!r} has no plan {plan_id!r}", "plan"
            )
        before = _tier_benefits(doc, _tier(conn, doc, program, member_id))
        since = dm.add_months(now, -WINDOW_MONTHS, zone)
        history = _orders(svc, conn, program, member_id, since, now)
        row = active_plan(conn, program, member_id, now)
        since_start = _orders(svc, conn, program, member_id, row.starts_at, now) if row else []

    def estimate(orders: list[dm.SavingsOrder], with_plan: PlanDoc | None) -> dm.Savings:
        after = before + _plan_benefits(doc, with_plan)
        return dm.estimate(
            orders,
            before,
            after,
            overlap=doc.overlap,
            point_value_fen=doc.points.value_fen,
            zone=zone,
        )

    found = estimate(history, plan)
    cost = dm.cost_fen(plan.price_fen, plan.period, WINDOW_MONTHS)
    actual = None
    if row is not None:
        running = _plan(doc, row.plan_id)
        saved = estimate(since_start, running)
        names = running.name if running else None
        actual = {
            "purchase_id": row.purchase_id,
            "plan_id": row.plan_id,
            "since": row.starts_at.isoformat(),
            **_figures(saved),
            "message": dm.actual_message(
                saved.total_fen,
                names.zh if names else row.plan_id,
                names.en if names else row.plan_id,
            ),
        }
    return {
        "member_id": member_id,
        "program_id": program,
        "plan": {
            "id": plan.id,
            "name": plan.name.model_dump(),
            "price_fen": plan.price_fen,
            "period": plan.period,
        },
        "window": {"since": since.isoformat(), "until": now.isoformat()},
        "estimate": {
            **_figures(found),
            "cost_fen": cost,
            "net_fen": found.total_fen - cost,
            "worth_it": found.total_fen > cost,
            "message": dm.estimate_message(found.total_fen, cost, WINDOW_MONTHS),
        },
        "actual": actual,
    }
