"""Real threads against PostgreSQL: a wallet is never overdrawn, a payment or a recharge never
refunded beyond what it was, and a duplicate in flight applies once.

PostgreSQL only: SQLite takes one writer at a time, so it cannot race.
"""

from typing import Any

import pytest

from huiyuan.db import tables
from huiyuan.domain.errors import DomainError
from huiyuan.services import events as event_service
from huiyuan.services import points_jobs, wallet
from huiyuan.services.context import Services
from huiyuan.services.principals import SYSTEM

from .ledger import apply
from .stored import one, rows
from .test_wallet import (
    assert_wallet_ledger_adds_up,
    recharge_body,
    recharge_refund_body,
    wallet_document,
)
from .threads import all_at_once

pytestmark = pytest.mark.postgres_only

THREADS = 40


def recharge(svc: Services, clock: Any, recharge_id: str, amount: int) -> Any:
    return event_service.ingest_event(svc, SYSTEM, recharge_body(clock, recharge_id, amount))


def refund_recharge(svc: Services, clock: Any, refund_id: str, amount: int) -> Any:
    body = recharge_refund_body(clock, "r1", refund_id, amount)
    return event_service.ingest_event(svc, SYSTEM, body)


def try_pay(svc: Services, payment_id: str, amount: int) -> dict[str, Any] | str:
    try:
        return wallet.pay(svc, SYSTEM, "u1", payment_id, amount, None, None)
    except DomainError as error:
        return str(error.code)


def try_refund(svc: Services, refund_id: str, amount: int) -> dict[str, Any] | str:
    try:
        return wallet.refund_payment(svc, SYSTEM, "u1", "p1", refund_id, amount, None)
    except DomainError as error:
        return str(error.code)


def parts(svc: Services) -> tuple[int, int, int]:
    found = wallet.summary(svc, SYSTEM, "u1", None)
    return found["principal"], found["bonus"], found["recharged_total"]


def assert_whole(svc: Services) -> None:
    assert_wallet_ledger_adds_up(svc)
    assert points_jobs.reconcile(svc).drifts == []


@pytest.fixture
def funded(pg, clock):
    """u1 recharged ¥300 (no bonus tier reached), principal first."""
    apply(pg, wallet_document())
    assert recharge(pg, clock, "r1", 30000).status == 200
    assert parts(pg) == (30000, 0, 30000)
    return pg


def test_payments_racing_on_one_wallet_never_overdraw_it(funded):
    # when 40 threads each pay ¥10 from the ¥300 at the same moment
    outcomes = all_at_once(lambda i: try_pay(funded, f"pay-{i}", 1000), THREADS)
    # then exactly 30 are paid, the others refused, and the wallet is empty, not negative
    won = [o for o in outcomes if isinstance(o, dict)]
    assert len(won) == 30
    assert {o for o in outcomes if not isinstance(o, dict)} == {"insufficient_balance"}
    assert parts(funded) == (0, 0, 30000)
    assert len(rows(funded, tables.wallet_payments)) == 30
    assert_whole(funded)


def test_the_same_payment_sent_by_40_threads_at_once_pays_once(funded):
    outcomes = all_at_once(lambda _: try_pay(funded, "pay-1", 12000), THREADS)
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert sum(not o["replayed"] for o in outcomes) == 1
    assert parts(funded) == (18000, 0, 30000)
    assert len(rows(funded, tables.wallet_txns, kind="spend")) == 1
    assert_whole(funded)


def test_refunds_racing_on_one_payment_never_refund_more_than_was_paid(funded):
    # given a payment of ¥100
    assert isinstance(try_pay(funded, "p1", 10000), dict)
    # when 40 threads each refund ¥5 of it, each with its own refund id
    outcomes = all_at_once(lambda i: try_refund(funded, f"ref-{i}", 500), THREADS)
    # then exactly 20 are refunded: the ¥100, back in the wallet
    assert sum(isinstance(o, dict) for o in outcomes) == 20
    assert {o for o in outcomes if not isinstance(o, dict)} == {"wallet_refund_exceeds"}
    assert parts(funded) == (30000, 0, 30000)
    payment = one(funded, tables.wallet_payments, payment_id="p1")
    assert (payment["refunded_principal"], payment["refunded_bonus"]) == (10000, 0)
    assert_whole(funded)


def test_the_same_recharge_sent_by_40_threads_at_once_credits_once(pg, clock):
    # given 充1000送150
    apply(pg, wallet_document())
    # when 40 threads send the same ¥1,000 recharge
    outcomes = all_at_once(lambda _: recharge(pg, clock, "r1", 100000), THREADS)
    # then it was credited once, with its bonus once
    assert {o.status for o in outcomes} == {200}
    assert sum(not o.replayed for o in outcomes) == 1
    assert parts(pg) == (100000, 15000, 100000)
    assert len(rows(pg, tables.wallet_recharges)) == 1
    assert_whole(pg)


def test_refunds_racing_on_one_recharge_take_its_bonus_back_exactly_once(pg, clock):
    # given a ¥1,000 recharge that brought ¥150 of bonus
    apply(pg, wallet_document())
    assert recharge(pg, clock, "r1", 100000).status == 200
    # when 40 threads each refund ¥50 of it at the same moment
    outcomes = all_at_once(lambda i: refund_recharge(pg, clock, f"rf-{i}", 5000), THREADS)
    # then exactly 20 are refunded — the whole ¥1,000 — and the bonus is taken back in full,
    # never more: the wallet is empty
    applied = [o for o in outcomes if o.status == 200]
    assert len(applied) == 20
    assert {o.body["code"] for o in outcomes if o.status != 200} == {"wallet_refund_exceeds"}
    assert parts(pg) == (0, 0, 0)
    taken = [
        e["bonus_taken_back"]
        for o in applied
        for e in o.body["effects"]
        if e["kind"] == "wallet.recharge_refunded"
    ]
    assert sum(taken) == 15000
    stored = one(pg, tables.wallet_recharges, recharge_id="r1")
    assert (stored["refunded"], stored["bonus_taken_back"]) == (100000, 15000)
    assert_whole(pg)
