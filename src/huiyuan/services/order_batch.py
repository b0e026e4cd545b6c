"""Set-based ``order.paid``: the common case of a batch, applied with about a dozen statements
for the whole batch instead of a dozen per event.

A batch is mostly payments of known members. For those, everything the general path
(``services.event_apply``) would do one event at a time is done here for all of them at once: the
members' rows are locked in id order, the facts each payment needs are read with one query
each (inbox, enrollments, existing orders, deferred events waiting, balance rows, tiers, order
counts, running paid-membership terms), the points are computed by the same domain rules, and
every row is written by one statement (``bulk_repo.write``). The result is row for row what
the general path writes — ``tests/integration/test_order_batch.py`` applies the same events
both ways and compares every table.

Anything out of the ordinary is left to the general path, in the same transaction, after the
payments applied here: an event id seen before (a replay), a new or not yet enrolled member, an
unknown store, an order id already recorded or repeated in the batch, a deferred event waiting
for the order, a named or held points reservation, rules with daily or monthly caps, points
funded by a store's budget, items that do not add up — and every later event of a member
once one of that member's events is left over, so a member's events keep the order they were
sent in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table

from huiyuan.db import bulk_repo, events_repo
from huiyuan.db.tables import events, order_items, orders, point_entries, point_lots, point_txns
from huiyuan.db.uow import UnitOfWork
from huiyuan.domain import points as dp
from huiyuan.domain.errors import DomainError
from huiyuan.schemas import events as ev_schema
from huiyuan.schemas.validation import ValidEvent
from huiyuan.services.context import Services
from huiyuan.services.event_handlers import (
    check_items_add_up,
    inbox_row,
    order_key,
    paid_order_rows,
)
from huiyuan.services.points_book import (
    Reason,
    entry_rows,
    lot_row,
    pending_legs,
    txn_row,
)
from huiyuan.services.points_events import (
    earn_key,
    earning_programs,
    granted_effect,
    needs_plans,
    needs_tier,
    order_view,
)
from huiyuan.services.program_configs import ProgramConfig

Effect = dict[str, Any]


@dataclass
class _Payment:
    index: int
    event: ValidEvent
    data: ev_schema.OrderPaid
    programs: list[tuple[ProgramConfig, str]] = field(default_factory=list)
    budgeted: bool = False  # a store's budget pays some of its points: the general path's work
    effects: list[Effect] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Applied:
    """Bodies (status 200) of the events applied here, by their index in the batch."""

    bodies: dict[int, dict[str, Any]]


def apply(
    tx: UnitOfWork, svc: Services, sender: str, batch: list[tuple[int, ValidEvent]]
) -> Applied:
    """Apply the ordinary ``order.paid`` events of ``batch`` (index, event; in the order the
    general path would visit them); the others are left for it."""
    conn = tx.conn
    now = svc.now()
    candidates = _candidates(batch)
    if not candidates:
        return Applied({})
    # Every member of the batch is locked here, in id order, so the general path that follows
    # never takes a member lock out of that order.
    known = bulk_repo.lock_members(
        conn, (event.member_id for _, event in batch), held=tx.locked_members
    )
    keys = [order_key(p.data.order_id) for p in candidates]
    events_repo.lock_waiting_keys(conn, keys)
    facts = bulk_repo.payment_facts(
        conn,
        sender,
        (p.event.id for p in candidates),
        (p.event.member_id for p in candidates),
        (p.data.order_id for p in candidates),
        keys,
    )
    seen, enrolled, paid, waited = facts.seen, facts.enrolled, facts.paid, facts.waited

    kept: list[_Payment] = []
    for payment in candidates:
        event, data = payment.event, payment.data
        if (
            event.id in seen
            or event.member_id not in known
            or data.order_id in paid
            or order_key(data.order_id) in waited
            or data.points_reservation_id is not None
            or (event.store_id is not None and not svc.directory.is_store(conn, event.store_id))
        ):
            continue
        wanted = svc.programs_of_activity(conn, event.store_id)
        if not set(wanted) <= enrolled.get(event.member_id, set()):
            continue
        payment.programs = earning_programs(svc, conn, event.store_id, event.occurred_at)
        if any(_capped(config) for config, _ in payment.programs):
            continue
        kept.append(payment)
    kept = _member_prefixes(batch, kept)
    if not kept:
        return Applied({})

    pairs = {(c.program_id, p.event.member_id) for p in kept for c, _ in p.programs}
    reserved = bulk_repo.lock_accounts(conn, pairs, now)
    # A balance holding points may have a hold waiting for this very order: general path.
    kept = _member_prefixes(
        batch,
        [
            p
            for p in kept
            if not any(reserved.get((c.program_id, p.event.member_id)) for c, _ in p.programs)
        ],
    )
    tier_pairs = {
        (c.program_id, p.event.member_id)
        for p in kept
        for c, _ in p.programs
        if needs_tier([*c.order_rules, *c.multipliers])
    }
    tiers = bulk_repo.tiers_of(conn, tier_pairs)
    terms = facts.terms  # of every candidate's member; those of others are never looked at
    plans = _plans_in_force(terms, kept)
    numbers = _order_numbers(conn, kept)

    credits: list[tuple[_Payment, ProgramConfig, str, dp.Award]] = []
    for payment in kept:
        event, data = payment.event, payment.data
        awards_of: list[tuple[ProgramConfig, str, dp.Award]] = []
        for config, owner in payment.programs:
            rules = config.order_rules
            if not rules:
                continue
            view = order_view(event, data, numbers.get(payment.index, 1))
            tier = tiers.get((config.program_id, event.member_id))
            awards = dp.order_awards(
                rules,
                config.multipliers,
                view,
                tier=tier,
                history=dp.NO_HISTORY,
                plans=plans.get((payment.index, config.program_id), frozenset()),
            )
            awards_of += [(config, owner, award) for award in awards]
        if any(award.funded_by for _, _, award in awards_of):
            payment.budgeted = True
            continue
        credits += [(payment, config, owner, award) for config, owner, award in awards_of]
    final = _member_prefixes(batch, [p for p in kept if not p.budgeted])
    chosen = {p.index for p in final}
    credits = [c for c in credits if c[0].index in chosen]

    points, moves = _points_rows(tx, sender, credits, now)
    used = _terms_used(terms, final)
    order_rows, item_rows = _order_rows(sender, final)
    bodies = {p.index: _body(p) for p in final}
    inbox = [_inbox_row(sender, p, bodies[p.index], now) for p in final]
    bulk_repo.write(
        conn,
        [*points, (orders, order_rows), (order_items, item_rows), (events, inbox)],
        pending=moves,
        at=now,
        terms_used=used,
    )
    return Applied(bodies)


# ---------------------------------------------------------------- choosing


def _candidates(batch: list[tuple[int, ValidEvent]]) -> list[_Payment]:
    found: list[_Payment] = []
    ids: set[str] = set()
    orders_seen: set[str] = set()
    for index, event in batch:
        if event.type != "order.paid" or event.id in ids:
            continue
        data = event.data
        assert isinstance(data, ev_schema.OrderPaid)
        ids.add(event.id)
        if data.order_id in orders_seen:
            continue
        orders_seen.add(data.order_id)
        try:
            check_items_add_up(data)
        except DomainError:
            continue
        found.append(_Payment(index, event, data))
    return found


def _member_prefixes(batch: list[tuple[int, ValidEvent]], kept: list[_Payment]) -> list[_Payment]:
    """Keep, per member, only the payments before the first of that member's events that is
    not kept: an event left to the general path runs after everything applied here, so a
    later event of the same member must wait for it too."""
    by_index = {p.index: p for p in kept}
    blocked: set[str] = set()
    result = []
    for index, event in batch:
        if event.member_id in blocked:
            continue
        payment = by_index.get(index)
        if payment is None:
            blocked.add(event.member_id)
        else:
            result.append(payment)
    return result


def _capped(config: ProgramConfig) -> bool:
    return any(r.caps.per_day or r.caps.per_month for r in config.order_rules)


def _plans_in_force(
    terms: Sequence[Any], kept: list[_Payment]
) -> dict[tuple[int, str], frozenset[str]]:
    """For payments under rules that name paid plans: the plan running for the member in the
    program when the order was paid (as ``subscriptions_repo.in_force`` decides it)."""
    asking = [
        (p, c) for p in kept for c, _ in p.programs if needs_plans([*c.order_rules, *c.multipliers])
    ]
    if not asking:
        return {}
    found: dict[tuple[int, str], frozenset[str]] = {}
    for payment, config in asking:
        at = payment.event.occurred_at
        running = [
            t
            for t in terms
            if t.member_id == payment.event.member_id
            and t.program_id == config.program_id
            and t.starts_at <= at < t.ends_at
        ]
        if running:
            latest = max(running, key=lambda t: (t.starts_at, t.id))
            found[(payment.index, config.program_id)] = frozenset({str(latest.plan_id)})
    return found


def _order_numbers(conn: Any, kept: list[_Payment]) -> dict[int, int]:
    """Each payment's number among its member's orders (for first-N rules), counting orders
    recorded before and the payments of this batch applied before it."""
    asking = [
        p
        for p in kept
        if any(r.conditions.first_n_orders for c, _ in p.programs for r in c.order_rules)
    ]
    if not asking:
        return {}
    before = bulk_repo.orders_before(
        conn, [(p.event.member_id, p.event.occurred_at) for p in asking]
    )
    position = {p.index: n for n, p in enumerate(kept)}  # the order they are applied in
    numbers = {}
    for payment, count in zip(asking, before, strict=True):
        earlier = sum(
            1
            for other in kept[: position[payment.index]]
            if other.event.member_id == payment.event.member_id
            and other.event.occurred_at < payment.event.occurred_at
        )
        numbers[payment.index] = count + earlier + 1
    return numbers


# ---------------------------------------------------------------- writing


def _points_rows(
    tx: UnitOfWork,
    sender: str,
    credits: list[tuple[_Payment, ProgramConfig, str, dp.Award]],
    now: datetime,
) -> tuple[list[tuple[Table, list[dict[str, Any]]]], dict[tuple[str, str], int]]:
    """The points rows of the credits (their ids drawn first: lots and entries name them) and
    how much each balance's pending part grows."""
    ids = bulk_repo.draw_ids(tx.conn, {point_txns: len(credits), point_lots: len(credits)})
    txns: list[dict[str, Any]] = []
    lots: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    moves: dict[tuple[str, str], int] = {}
    for (payment, config, owner, award), txn_id, lot_id in zip(
        credits, ids[point_txns.name], ids[point_lots.name], strict=True
    ):
        member_id, at = payment.event.member_id, payment.event.occurred_at
        txn = txn_row(
            config,
            member_id,
            "earn",
            earn_key(payment.data.order_id, award.rule_id),
            Reason(award.reason_zh, award.reason_en),
            order_id=payment.data.order_id,
            rule_id=award.rule_id,
            actor=_actor(sender, payment),
            occurred_at=at,
            created_at=now,
        )
        txns.append({"id": txn_id, **txn})
        lot = lot_row(
            config.program_id,
            member_id,
            award,
            award.funded_by or owner,
            txn_id,
            order_id=payment.data.order_id,
            at=at,
            expires_at=None,
            pending=True,
        )
        lots.append({"id": lot_id, **lot})
        legs = pending_legs(award.funded_by or owner, award.points, lot_id)
        entries += entry_rows(txn_id, config.program_id, member_id, legs, at)
        key = (config.program_id, member_id)
        moves[key] = moves.get(key, 0) + award.points
        payment.effects.append(granted_effect(config.program_id, award, lot_id, pending=True))
    return [(point_txns, txns), (point_lots, lots), (point_entries, entries)], moves


def _terms_used(terms: Sequence[Any], payments: list[_Payment]) -> set[int]:
    """``memberships.mark_benefit_used`` for each payment: the first order paid during a
    running term uses it."""
    terms = [t for t in terms if t.status == "active" and not t.benefit_used]
    used: set[int] = set()
    for payment in payments:
        at = payment.event.occurred_at
        for term in terms:
            if (
                term.member_id == payment.event.member_id
                and term.id not in used
                and term.starts_at <= at < term.ends_at
            ):
                used.add(term.id)
                payment.effects.append(
                    {
                        "kind": "membership.benefit_used",
                        "program_id": term.program_id,
                        "plan_id": term.plan_id,
                        "purchase_id": term.purchase_id,
                    }
                )
    return used


def _order_rows(
    sender: str, payments: list[_Payment]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    order_rows = []
    item_rows = []
    for payment in payments:
        order, items = paid_order_rows(sender, payment.event, payment.data)
        order_rows.append(order)
        item_rows += items
    return order_rows, item_rows


def _body(payment: _Payment) -> dict[str, Any]:
    event, data = payment.event, payment.data
    points = [e for e in payment.effects if e["kind"] == "points.pending"]
    terms = [e for e in payment.effects if e["kind"] == "membership.benefit_used"]
    return {
        "id": event.id,
        "type": event.type,
        "member_id": event.member_id,
        "store_id": event.store_id,
        "status": "applied",
        "effects": [
            {"kind": "order.recorded", "order_id": data.order_id, "amount": data.amount},
            *points,
            *terms,
        ],
    }


def _inbox_row(
    sender: str, payment: _Payment, body: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The inbox row, written once with its final response."""
    return {
        **inbox_row(sender, payment.event, now),
        "response_status": 200,
        "response_body": body,
        "result": None,
        "applied_at": now,
    }


def _actor(sender: str, payment: _Payment) -> str:
    return f"event:{sender}/{payment.event.id}"[:200]  # as the general path's handlers
