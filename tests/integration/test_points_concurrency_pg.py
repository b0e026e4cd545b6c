"""Real threads against PostgreSQL: points are never overspent, a duplicate in flight applies
once, and a store's budget is never handed out twice.

PostgreSQL only: SQLite takes one writer at a time, so it cannot race.
"""

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from huiyuan.db import tables, uow
from huiyuan.domain.errors import DomainError
from huiyuan.services import budgets, points
from huiyuan.services import events as event_service
from huiyuan.services import owners as owner_service
from huiyuan.services.context import Services
from huiyuan.services.principals import SYSTEM

from .bodies import completed, item, paid
from .ledger import BASE_RULE, apply, assert_reconciled, document, figures, iso
from .stored import effects_of, rows
from .threads import all_at_once as _all_at_once

pytestmark = pytest.mark.postgres_only

THREADS = 40


def all_at_once(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    return _all_at_once(work, count)


def watch_deadlocks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Statements PostgreSQL broke a deadlock on (each retried, slowly, by the services)."""
    found: list[str] = []
    retryable = uow.is_retryable

    def watching(error: BaseException) -> bool:
        if getattr(getattr(error, "orig", None), "sqlstate", None) == "40P01":
            found.append(str(getattr(error, "statement", "")))
        return retryable(error)

    monkeypatch.setattr(uow, "is_retryable", watching)
    return found


def ingest(svc: Services, body: dict[str, Any]) -> event_service.EventOutcome:
    return event_service.ingest_event(svc, SYSTEM, body)


def member_with(svc: Services, clock, points_: int) -> None:
    """Member u1 with ``points_`` available from one completed order."""
    apply(svc, document())
    amount = points_ * 100
    body = paid("pay-o0", "o0", amount=amount, items=[item("x", amount)], occurred_at=iso(clock()))
    assert ingest(svc, body).status == 200
    assert ingest(svc, completed("done-o0", "o0", occurred_at=iso(clock()))).status == 200
    assert figures(svc) == (points_, 0, 0, 0)


def try_redeem(svc: Services, request_id: str, amount: int) -> dict[str, Any] | str:
    try:
        return points.redeem(svc, SYSTEM, "u1", request_id, amount, "mall", None)
    except DomainError as error:
        return str(error.code)


@pytest.mark.parametrize(
    ("threads", "each", "succeeding"),
    [(THREADS, 50, 20), (32, 25, 32)],
    ids=["more-asked-than-held", "all-fit"],
)
def test_redemptions_racing_on_one_balance_never_overspend(pg, clock, threads, each, succeeding):
    # given a member with 1000 points
    member_with(pg, clock, 1000)
    # when many threads redeem from it at the same moment
    outcomes = all_at_once(lambda i: try_redeem(pg, f"red-{i}", each), count=threads)
    # then what succeeded adds up to the smaller of what was asked and what was there
    won = [o for o in outcomes if isinstance(o, dict)]
    lost = [o for o in outcomes if not isinstance(o, dict)]
    assert len(won) == succeeding
    assert sum(o["points"] for o in won) == min(threads * each, 1000)
    assert set(lost) <= {"insufficient_points"}
    # and the balance never went below zero and is exactly what is left
    assert figures(pg) == (1000 - succeeding * each, 0, 0, 0)
    assert len(rows(pg, tables.point_txns, kind="redeem")) == succeeding
    assert_reconciled(pg)


def test_holds_racing_on_one_balance_never_hold_more_than_is_there(pg, clock):
    member_with(pg, clock, 1000)

    def hold(i: int) -> str:
        try:
            points.reserve(
                pg, SYSTEM, "u1", f"h-{i}", 60, order_id=None, program_id=None, ttl_seconds=None
            )
        except DomainError as error:
            return str(error.code)
        return "held"

    outcomes = all_at_once(hold)
    # 16 holds of 60 fit in 1000, the 17th would not
    assert outcomes.count("held") == 16
    assert set(outcomes) == {"held", "insufficient_points"}
    assert figures(pg) == (1000, 0, 960, 0)
    assert_reconciled(pg)


def test_the_same_redemption_sent_by_40_threads_at_once_applies_once(pg, clock):
    # given a member with 1000 points
    member_with(pg, clock, 1000)
    # when 40 threads send the same redemption of 100 points
    outcomes = all_at_once(lambda _: try_redeem(pg, "red-1", 100))
    # then one applied it and every other replayed it
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert sum(not o["replayed"] for o in outcomes) == 1
    assert len({o["transaction_id"] for o in outcomes}) == 1
    assert figures(pg) == (900, 0, 0, 0)
    assert len(rows(pg, tables.point_txns, kind="redeem")) == 1
    assert_reconciled(pg)


def test_the_same_payment_sent_by_40_threads_at_once_earns_once(pg, clock):
    # given the platform gives 1 point per ¥1
    apply(pg, document())
    body = paid("pay-1", "o1", occurred_at=iso(clock()))
    # when 40 threads send the same ¥299 payment
    outcomes = all_at_once(lambda _: ingest(pg, body))
    # then it applied once, every other answer a replay of the first
    assert sum(not o.replayed for o in outcomes) == 1
    assert {o.status for o in outcomes} == {200}
    assert all(o.body == outcomes[0].body for o in outcomes)
    # and the points were credited once
    assert [e["points"] for e in effects_of(outcomes[0].body["effects"], "points.pending")] == [299]
    assert figures(pg) == (0, 299, 0, 0)
    assert len(rows(pg, tables.point_lots)) == 1
    assert len(rows(pg, tables.point_txns)) == 1
    assert_reconciled(pg)


def test_grants_racing_on_one_store_budget_never_exceed_it(pg, clock, monkeypatch):
    deadlocks = watch_deadlocks(monkeypatch)
    # given store s1 bought 1000 points, and its promotion gives 1 point per ¥1 from them
    owner_service.add_store(pg, "s1", "优衣库", program=False, actor="test")
    budgets.purchase_budget(pg, SYSTEM, "s1", "buy-1", 1000, 10000)
    promo = {**BASE_RULE, "id": "s1_promo", "funded_by": "s1", "conditions": {"stores": ["s1"]}}
    apply(pg, {"points": {"earning": [BASE_RULE, promo]}})

    # when 40 members each pay ¥50 in s1 at the same moment
    def pay(i: int) -> event_service.EventOutcome:
        body = paid(
            f"pay-{i}",
            f"o{i}",
            f"u{i}",
            amount=5000,
            items=[item("x", 5000)],
            occurred_at=iso(clock()),
            store_id="s1",
        )
        return ingest(pg, body)

    outcomes = all_at_once(pay)
    # then every payment applied, 20 with the promotion's 50 points and 20 told it ran out
    assert [o.status for o in outcomes] == [200] * THREADS, [o.body for o in outcomes]
    granted = [
        e
        for o in outcomes
        for e in effects_of(o.body["effects"], "points.pending")
        if e["rule_id"] == "s1_promo"
    ]
    exhausted = [
        e for o in outcomes for e in effects_of(o.body["effects"], "points.budget_exhausted")
    ]
    assert (len(granted), len(exhausted)) == (20, 20)
    # and the budget was handed out exactly, never below zero
    with pg.engine.connect() as conn:
        slices = [r.remaining for r in conn.execute(sa.select(tables.budget_slices)).all()]
        issued = conn.execute(
            sa.select(sa.func.sum(tables.point_lots.c.amount)).where(
                tables.point_lots.c.issuer == "s1"
            )
        ).scalar_one()
    assert min(slices) >= 0 and sum(slices) == 0
    assert issued == 1000
    # and every member still got the platform's own points
    base = [e for o in outcomes for e in effects_of(o.body["effects"], "points.pending")]
    assert sum(e["rule_id"] == "base" for e in base) == THREADS
    assert_reconciled(pg)
    # and the grants queued for the budget rather than deadlocking and starting over
    assert deadlocks == []
