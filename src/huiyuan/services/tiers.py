"""Tier use cases: what a member's tier is and needs, growth history, setting a tier by hand,
and the periodic jobs — checkpoint evaluation (保级/降级) and the RFM growth model.

Both jobs are resumable and idempotent: checkpoint evaluation advances each member's
``next_check_at`` in the same transaction as the decision, and RFM growth is keyed by its
period, so a second run of the same period writes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from huiyuan.db import members_repo, tiers_repo
from huiyuan.db.audit_repo import record_audit
from huiyuan.db.tables import enrollments, growth_entries, orders
from huiyuan.domain import rfm as drfm
from huiyuan.domain import tiers as dt
from huiyuan.domain.errors import MemberError, TierError, invalid, not_found
from huiyuan.services.context import PLATFORM_OWNER, Services
from huiyuan.services.members import require_visible_member
from huiyuan.services.principals import Principal, Scope
from huiyuan.services.program_access import history_page, next_before_id, program_for_key
from huiyuan.services.tier_book import TierBook


def open_book(
    svc: Services, conn: Connection, program_id: str, member_id: str, at: datetime, actor: str
) -> TierBook:
    owner = svc.directory.owner_of(conn, program_id) or PLATFORM_OWNER
    return TierBook(
        svc,
        conn,
        svc.configs.at(conn, program_id, at),
        member_id,
        at,
        actor=actor,
        owner_id=owner,
        store_scope=None if owner == PLATFORM_OWNER else owner,
    )


METRIC_WORDS = {
    dt.Metric.GROWTH_LIFETIME: ("成长值", "growth"),
    dt.Metric.GROWTH_WINDOW: ("成长值", "growth"),
    dt.Metric.SPEND_WINDOW: ("消费金额(分)", "spend (fen)"),
    dt.Metric.RECHARGE_TOTAL: ("累计充值(分)", "recharge (fen)"),
    dt.Metric.POINTS_WINDOW: ("积分", "points"),
}


def tier_view(
    svc: Services, who: Principal, member_id: str, program_id: str | None
) -> dict[str, Any]:
    """Current tier, metric, what the next tier needs, what keeps this one, the next
    evaluation and the benefits of the tier."""
    who.require(Scope.READ)
    now = svc.now()
    with svc.uow() as tx:  # reading creates the member's tier row on first sight
        conn = tx.conn
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id)
        book = open_book(svc, conn, program, member_id, now, "system:read")
        if book.ladder is None:
            raise not_found(TierError.NO_LADDER, f"program {program!r} has no tier ladder")
        value = book.metric()
        row = book.row()
        current = book.ladder.get(book.tier_id or book.ladder.tiers[0].id)
        progress = dt.progress(book.ladder, current.id, value)
        history = tiers_repo.history_of(conn, program, member_id, limit=10)
        tx.commit()
    zh_unit, en_unit = METRIC_WORDS[book.ladder.metric]
    next_tier = progress.next_tier
    benefits = {b.id: b for b in book.config.document.benefits}
    return {
        "member_id": member_id,
        "program_id": program,
        "tier": {
            "id": current.id,
            "name": {"zh": current.name_zh, "en": current.name_en},
            "reached_at": row.reached_at.isoformat(),
        },
        "metric": {
            "kind": book.ladder.metric.value,
            "value": value,
            "window_days": book.ladder.window_days
            if book.ladder.metric
            in (dt.Metric.GROWTH_WINDOW, dt.Metric.SPEND_WINDOW, dt.Metric.POINTS_WINDOW)
            else None,
            "growth_lifetime": int(row.growth_total),
        },
        "next": None
        if next_tier is None
        else {
            "tier_id": next_tier.id,
            "needed": progress.needed,
            "message": {
                "zh": f"再获得 {progress.needed} {zh_unit}升级为{next_tier.name_zh}",
                "en": f"{progress.needed} more {en_unit} to reach {next_tier.name_en}",
            },
        },
        "keep": {
            "needed": max(progress.keep_at - value, 0),
            "keep_at": progress.keep_at,
            "checkpoint": book.ladder.checkpoint.value,
            "next_evaluation_at": row.next_check_at.isoformat() if row.next_check_at else None,
        },
        "override": None
        if row.override_tier is None
        else {
            "tier_id": row.override_tier,
            "mode": row.override_mode,
            "ends_at": row.override_ends_at.isoformat() if row.override_ends_at else None,
        },
        "benefits": [
            {
                "id": b,
                "kind": benefits[b].kind,
                "name": benefits[b].name.model_dump(),
                "source": f"tier:{current.id}",
            }
            for b in current.benefits
            if b in benefits
        ],
        "history": [
            {
                "from": h.from_tier,
                "to": h.to_tier,
                "cause": h.cause,
                "metric": h.metric_value,
                "reason": h.reason,
                "actor": h.actor,
                "at": h.at.isoformat(),
            }
            for h in history
        ],
    }


def growth_history(
    svc: Services,
    who: Principal,
    member_id: str,
    program_id: str | None,
    *,
    before_id: int | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    page = history_page(
        svc, who, member_id, program_id, growth_entries, before_id=before_id, limit=limit
    )
    items = [
        {
            "id": r.id,
            "amount": int(r.amount),
            "kind": r.kind,
            "rule_id": r.rule_id,
            "config_version": r.config_version,
            "order_id": r.order_id,
            "basis_fen": None if r.basis_fen is None else int(r.basis_fen),
            "reason": {"zh": r.reason_zh, "en": r.reason_en},
            "actor": r.actor,
            "occurred_at": r.occurred_at.isoformat(),
        }
        for r in page.rows
    ]
    return {
        "member_id": member_id,
        "program_id": page.program_id,
        "entries": items,
        "next_before_id": next_before_id(items, limit),
    }


def set_tier(
    svc: Services,
    who: Principal,
    member_id: str,
    tier_id: str,
    *,
    mode: str,
    ends_at: datetime | None,
    reason: str,
    program_id: str | None,
) -> dict[str, Any]:
    """An operator sets a member's tier: ``floor`` (evaluation may raise it, never drop it
    below) or ``fixed`` (evaluation leaves it alone) until ``ends_at``; audited."""
    who.require(Scope.ADMIN)
    now = svc.now()
    with svc.uow() as tx:
        conn = tx.conn
        program = program_for_key(svc, conn, who, program_id)
        if members_repo.lock_member(conn, member_id) is None:
            raise not_found(MemberError.NOT_FOUND, f"no member {member_id!r}")
        book = open_book(svc, conn, program, member_id, now, who.actor)
        if book.ladder is None:
            raise not_found(TierError.NO_LADDER, f"program {program!r} has no tier ladder")
        if tier_id not in {t.id for t in book.ladder.tiers}:
            raise invalid(TierError.UNKNOWN_TIER, f"no tier {tier_id!r}", field="tier_id")
        if ends_at is not None and ends_at <= now:
            raise invalid(TierError.END_IN_PAST, "the end date has passed", field="ends_at")
        tiers_repo.set_member_tier(
            conn,
            program,
            member_id,
            {"override_tier": tier_id, "override_mode": mode, "override_ends_at": ends_at},
        )
        book._reload()
        if book.tier_id != tier_id:
            book.move(tier_id, "override", book.metric(), f"set by hand: {reason}")
        record_audit(
            conn,
            actor=who.actor,
            action="tier.set",
            subject=f"member:{member_id}",
            detail={
                "program_id": program,
                "tier_id": tier_id,
                "mode": mode,
                "ends_at": ends_at.isoformat() if ends_at else None,
                "reason": reason,
            },
            at=now,
        )
        tx.commit()
    return tier_view(svc, who, member_id, program)


# ---------------------------------------------------------------- jobs


def evaluate_checkpoints(svc: Services, now: datetime | None = None, chunk: int = 500) -> int:
    """Retention and downgrades for every member whose checkpoint has come; returns members
    evaluated. Each chunk commits with the members' next checkpoints, so a rerun resumes."""
    now = now or svc.now()
    done = 0
    while True:
        with svc.uow() as tx:
            conn = tx.conn
            due = tiers_repo.due_for_checkpoint(conn, now, chunk)
            for row in due:
                members_repo.lock_member(conn, row.member_id)
                book = open_book(svc, conn, row.program_id, row.member_id, now, "system:checkpoint")
                if book.ladder is None or book.ladder.checkpoint is dt.Checkpoint.NONE:
                    tiers_repo.set_member_tier(
                        conn, row.program_id, row.member_id, {"next_check_at": None}
                    )
                    continue
                book.at_checkpoint()
            tx.commit()
        done += len(due)
        if len(due) < chunk:
            return done


def score_rfm(
    svc: Services, program_id: str, now: datetime | None = None, chunk: int = 1000
) -> dict[str, Any]:
    """Score every enrolled member's R, F and M over the program's window into 5 bands and
    write the resulting growth change (``rfm:<member>:<period>`` keys: once a business month).

    Members who joined within the window and have not ordered yet are left alone (a newcomer
    is not a lapsed customer). Members are written a chunk per transaction; a rerun of the
    same period skips those already scored, so an interrupted run simply resumes.
    """
    now = now or svc.now()
    with svc.engine.connect() as conn:
        config = svc.configs.at(conn, program_id, now)
        rfm = config.document.growth.rfm
        if not rfm.enabled:
            raise invalid(TierError.RFM_DISABLED, f"RFM is not enabled in {program_id!r}")
        owner = svc.directory.owner_of(conn, program_id) or PLATFORM_OWNER
        since = now - timedelta(days=rfm.window_days)
        enrolled = conn.execute(
            select(enrollments.c.member_id, enrollments.c.enrolled_at)
            .where(enrollments.c.program_id == program_id)
            .order_by(enrollments.c.member_id)
        ).all()
        facts = _order_facts(conn, since, None if owner == PLATFORM_OWNER else owner)
    members = [m for m, joined in enrolled if m in facts or joined <= since]
    figures = {m: facts.get(m, (None, 0, 0)) for m in members}
    recency = {
        m: (now - last).days if last else rfm.window_days for m, (last, _, _) in figures.items()
    }
    frequency = {m: f for m, (_, f, _) in figures.items()}
    monetary = {m: v for m, (_, _, v) in figures.items()}
    r_edges = rfm.recency_edges_days or drfm.quantile_edges(list(recency.values()))
    f_edges = rfm.frequency_edges or drfm.quantile_edges(list(frequency.values()))
    m_edges = rfm.monetary_edges_fen or drfm.quantile_edges(list(monetary.values()))
    weights = {str(k): v for k, v in rfm.weights.items()}
    period = now.astimezone(svc.settings.zone).strftime("%Y-%m")
    written = 0
    changes: dict[int, int] = defaultdict(int)
    for start in range(0, len(members), chunk):
        with svc.uow() as tx:
            conn = tx.conn
            for member_id in members[start : start + chunk]:
                scores = drfm.Scores(
                    drfm.band(recency[member_id], r_edges, lower_is_better=True),
                    drfm.band(frequency[member_id], f_edges),
                    drfm.band(monetary[member_id], m_edges),
                )
                delta = drfm.growth_change(scores, weights)
                members_repo.lock_member(conn, member_id)
                book = open_book(svc, conn, program_id, member_id, now, "system:rfm")
                if book.credit(
                    delta,
                    f"rfm:{member_id}:{period}",
                    kind="rfm",
                    rule_id="rfm",
                    zh=f"{period} RFM 评分 R{scores.r}F{scores.f}M{scores.m}",
                    en=f"{period} RFM score R{scores.r}F{scores.f}M{scores.m}",
                ):
                    written += 1
                    changes[delta] += 1
                    book.after_change()
            tx.commit()
    return {
        "program_id": program_id,
        "period": period,
        "members": len(members),
        "entries": written,
        "edges": {"r": r_edges, "f": f_edges, "m": m_edges},
        "changes": dict(sorted(changes.items())),
    }


def _order_facts(
    conn: Connection, since: datetime, store_id: str | None
) -> dict[str, tuple[datetime | None, int, int]]:
    query = (
        select(
            orders.c.member_id,
            func.max(orders.c.paid_at),
            func.count(),
            func.sum(orders.c.amount - orders.c.refunded_amount),
        )
        .where(orders.c.paid_at > since, orders.c.status != "cancelled")
        .group_by(orders.c.member_id)
    )
    if store_id is not None:
        query = query.where(orders.c.store_id == store_id)
    return {
        m: (last, int(count), int(value or 0))
        for m, last, count, value in conn.execute(query).all()
    }
