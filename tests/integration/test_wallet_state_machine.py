"""Random stories of one member's wallet (余额), checked step by step against a model.

Hypothesis drives recharges (``wallet.recharged``, with the 充500送50 / 充1000送150 bonuses),
refunds of recharges (partial and full, after the bonus was maybe spent), payments from the
wallet (principal or bonus first, as the program says), refunds of payments (partial and full)
and replays of the last request. After every step:

- ``reconcile`` finds no drift, every wallet transaction's entries sum to zero, and every
  balance equals the sum of its entries;
- principal, bonus and the cumulative recharge are what a plain model of the rules says, and
  so is every recharge's and payment's refunded part;
- the balance rebuilt ``as_of`` now equals the live one.

A step the rules refuse (more than the wallet holds, more than is left to refund, a recharge
refund whose spent bonus its payout cannot cover) must be refused with the code the model
expects, and write nothing. Each example starts from empty tables and the same clock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from huiyuan.db import tables
from huiyuan.domain.errors import DomainError
from huiyuan.services import events as event_service
from huiyuan.services import points_jobs, wallet
from huiyuan.services.principals import SYSTEM

from .bodies import event
from .ledger import apply, iso
from .stored import rows, start_afresh
from .stories import PastAnswers, stories_wanted, tell
from .test_wallet import TIERS, assert_wallet_ledger_adds_up, wallet_document

START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


@dataclass
class Recharge:
    principal: int
    bonus: int
    refunded: int = 0
    bonus_taken_back: int = 0


@dataclass
class Payment:
    principal: int
    bonus: int
    refunded_principal: int = 0
    refunded_bonus: int = 0

    @property
    def left(self) -> int:
        return self.principal + self.bonus - self.refunded_principal - self.refunded_bonus


class Wallet:
    """What the wallet rules say, in plain Python."""

    def __init__(self, bonus_first: bool) -> None:
        self.bonus_first = bonus_first
        self.principal = self.bonus = self.recharged = 0
        self.recharges: dict[str, Recharge] = {}
        self.payments: dict[str, Payment] = {}

    def recharge(self, recharge_id: str, amount: int) -> None:
        bonus = max([t["bonus_fen"] for t in TIERS if amount >= t["min_fen"]], default=0)
        self.recharges[recharge_id] = Recharge(amount, bonus)
        self.principal += amount
        self.bonus += bonus
        self.recharged += amount

    def refund_recharge(self, recharge_id: str, amount: int) -> str | None:
        """The refusal's code, or None once applied."""
        found = self.recharges[recharge_id]
        if amount > found.principal - found.refunded:
            return "wallet_refund_exceeds"
        if amount > self.principal:
            return "insufficient_balance"
        refunded = found.refunded + amount
        target = (
            found.bonus
            if refunded >= found.principal
            else found.bonus * refunded // found.principal
        )
        due = max(target - found.bonus_taken_back, 0)
        from_bonus = min(due, self.bonus)
        if due - from_bonus > amount:  # spent bonus the payout cannot cover
            return "insufficient_balance"
        self.principal -= amount
        self.bonus -= from_bonus
        self.recharged -= amount
        found.refunded = refunded
        found.bonus_taken_back += due
        return None

    def pay(self, payment_id: str, amount: int) -> str | None:
        if amount > self.principal + self.bonus:
            return "insufficient_balance"
        if self.bonus_first:
            bonus = min(self.bonus, amount)
            principal = amount - bonus
        else:
            principal = min(self.principal, amount)
            bonus = amount - principal
        self.payments[payment_id] = Payment(principal, bonus)
        self.principal -= principal
        self.bonus -= bonus
        return None

    def refund_payment(self, payment_id: str, amount: int) -> str | None:
        found = self.payments[payment_id]
        if amount > found.left:
            return "wallet_refund_exceeds"
        paid = found.principal + found.bonus
        refunded = paid - found.left + amount
        # back to the parts it came from, in proportion, on running totals
        target = found.principal if refunded == paid else found.principal * refunded // paid
        principal = target - found.refunded_principal
        bonus = amount - principal
        found.refunded_principal += principal
        found.refunded_bonus += bonus
        self.principal += principal
        self.bonus += bonus
        return None


def run_stories(svc: Any, clock: Any, examples: int, steps: int) -> None:
    members = itertools.count()

    class WalletStories(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            start_afresh(svc, clock, START)
            self.member = f"w{next(members)}"
            self.ids = itertools.count()
            self.model = Wallet(bonus_first=False)
            self.last: Any = None  # the last request that was applied: replayed as is
            self.past = PastAnswers()

        def fresh(self, what: str) -> str:
            return f"{self.member}-{what}{next(self.ids)}"

        def at(self) -> str:
            return iso(clock())

        @initialize(bonus_first=st.booleans())
        def publish_program(self, bonus_first: bool) -> None:
            spend_order = "bonus_first" if bonus_first else "principal_first"
            apply(svc, wallet_document(spend_order))
            self.model = Wallet(bonus_first)

        def send(self, body: dict[str, Any]) -> event_service.EventOutcome:
            return event_service.ingest_event(svc, SYSTEM, body)

        # ------------------------------------------------------------ recharges

        @rule(amount=st.sampled_from([100, 9900, 49999, 50000, 80000, 100000, 150000]))
        def recharge(self, amount: int) -> None:
            clock.advance(minutes=1)
            recharge_id = self.fresh("rc")
            body = event(
                f"ev-{recharge_id}",
                "wallet.recharged",
                self.member,
                occurred_at=self.at(),
                recharge_id=recharge_id,
                amount=amount,
            )
            outcome = self.send(body)
            assert outcome.status == 200, outcome.body
            self.model.recharge(recharge_id, amount)
            self.last = ("event", body)

        @precondition(lambda self: self.model.recharges)
        @rule(pick=st.integers(0, 100), part=st.integers(1, 160000), whole=st.booleans())
        def refund_recharge(self, pick: int, part: int, whole: bool) -> None:
            clock.advance(minutes=1)
            ids = sorted(self.model.recharges)
            recharge_id = ids[pick % len(ids)]
            found = self.model.recharges[recharge_id]
            left = found.principal - found.refunded
            amount = left if whole and left else part
            refund_id = self.fresh("rr")
            body = event(
                f"ev-{refund_id}",
                "wallet.recharge_refunded",
                self.member,
                occurred_at=self.at(),
                recharge_id=recharge_id,
                refund_id=refund_id,
                amount=amount,
            )
            outcome = self.send(body)
            expected = self.model.refund_recharge(recharge_id, amount)
            if expected is None:
                assert outcome.status == 200, outcome.body
                self.last = ("event", body)
            else:
                assert outcome.status == 409, outcome.body
                assert outcome.body["code"] == expected, outcome.body

        # ------------------------------------------------------------ payments

        @rule(amount=st.integers(1, 200000))
        def pay(self, amount: int) -> None:
            clock.advance(minutes=1)
            payment_id = self.fresh("pay")
            args = (svc, SYSTEM, self.member, payment_id, amount, None, None)
            expected = self.model.pay(payment_id, amount)
            try:
                answer = wallet.pay(*args)
            except DomainError as error:
                assert expected is not None, f"refused: {error}"
                assert str(error.code) in (expected, "member_not_found")
                return
            assert expected is None, f"applied, but the model refuses: {expected}"
            paid = self.model.payments[payment_id]
            assert (answer["principal"], answer["bonus"]) == (paid.principal, paid.bonus)
            self.last = ("pay", args)

        @precondition(lambda self: self.model.payments)
        @rule(pick=st.integers(0, 100), part=st.integers(1, 200000), whole=st.booleans())
        def refund_payment(self, pick: int, part: int, whole: bool) -> None:
            clock.advance(minutes=1)
            ids = sorted(self.model.payments)
            payment_id = ids[pick % len(ids)]
            left = self.model.payments[payment_id].left
            amount = left if whole and left else part
            refund_id = self.fresh("pr")
            args = (svc, SYSTEM, self.member, payment_id, refund_id, amount, None)
            try:
                wallet.refund_payment(*args)
            except DomainError as error:
                assert self.model.refund_payment(payment_id, amount) == str(error.code)
                return
            assert self.model.refund_payment(payment_id, amount) is None
            self.last = ("refund_payment", args)

        @precondition(lambda self: self.last is not None)
        @rule()
        def replay(self) -> None:
            kind, what = self.last
            if kind == "event":
                outcome = self.send(what)
                assert outcome.status == 200 and outcome.replayed, outcome.body
            elif kind == "pay":
                assert wallet.pay(*what)["replayed"]
            else:
                assert wallet.refund_payment(*what)["replayed"]

        # ------------------------------------------------------------ after every step

        @invariant()
        def ledger_adds_up(self) -> None:
            assert points_jobs.reconcile(svc).drifts == []
            assert_wallet_ledger_adds_up(svc)

        @invariant()
        def balance_is_what_the_model_says(self) -> None:
            if not self.model.recharges:
                return  # the member does not exist yet
            model = self.model
            found = wallet.summary(svc, SYSTEM, self.member, None)
            assert (found["principal"], found["bonus"], found["recharged_total"]) == (
                model.principal,
                model.bonus,
                model.recharged,
            )
            then = wallet.summary(svc, SYSTEM, self.member, None, as_of=clock())
            assert (then["principal"], then["bonus"]) == (model.principal, model.bonus)

        @invariant()
        def the_past_stays_as_it_was(self) -> None:
            """The balance as of an instant the story has passed never changes."""
            if not self.model.recharges:
                return

            def ask(at: datetime) -> tuple[int, int]:
                then = wallet.summary(svc, SYSTEM, self.member, None, as_of=at)
                return (then["principal"], then["bonus"])

            self.past.check(clock(), ask)

        @invariant()
        def recharges_and_payments_are_what_the_model_says(self) -> None:
            stored = {
                r["recharge_id"]: (r["principal"], r["bonus"], r["refunded"], r["bonus_taken_back"])
                for r in rows(svc, tables.wallet_recharges, member_id=self.member)
            }
            assert stored == {
                k: (r.principal, r.bonus, r.refunded, r.bonus_taken_back)
                for k, r in self.model.recharges.items()
            }
            paid = {
                p["payment_id"]: (
                    p["principal"],
                    p["bonus"],
                    p["refunded_principal"],
                    p["refunded_bonus"],
                )
                for p in rows(svc, tables.wallet_payments, member_id=self.member)
            }
            assert paid == {
                k: (p.principal, p.bonus, p.refunded_principal, p.refunded_bonus)
                for k, p in self.model.payments.items()
            }

    tell(WalletStories, examples, steps)


def test_random_stories_of_one_members_wallet_keep_the_ledger_whole(svc, clock, db_url):
    run_stories(svc, clock, examples=stories_wanted(db_url), steps=30)


def test_the_model_takes_back_a_recharge_bonus_in_proportion() -> None:
    # the model's own worked example: 充1000送150, ¥400 of it refunded, then the rest
    model = Wallet(bonus_first=False)
    model.recharge("r1", 100000)
    assert model.refund_recharge("r1", 40000) is None
    assert (model.principal, model.bonus, model.recharged) == (60000, 9000, 60000)
    assert model.refund_recharge("r1", 60000) is None
    assert (model.principal, model.bonus, model.recharged) == (0, 0, 0)
