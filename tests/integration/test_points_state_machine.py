"""Random stories of one member's points, checked step by step against a model of the ledger.

Hypothesis drives earn (order.paid), release (order.completed), reserve, capture (order.paid
naming a hold), release of a hold, redemption, refunds partial and full, cancellation, expiry
(the clock moves on, the reservation sweep and ``expire_lots`` run), adjustments and
replays of the last event. After every step:

- ``reconcile`` finds no drift: every transaction's entries sum to zero, every cached balance
  equals the sum of its entries and of its lots, no lot gave out more than it held;
- available >= 0, reserved <= available, debt >= 0;
- the balances and every lot (amount, remaining, status) are what a plain model of the rules
  says they should be;
- the balances as of the instants the story has passed are what they were when first asked.

Each example starts from empty tables and the same clock, with its own program version (debt
or write-off, reissue or forfeit), so a failing story replays and shrinks the same every time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from huiyuan.domain import points as dp
from huiyuan.domain.errors import DomainError
from huiyuan.services import events as event_service
from huiyuan.services import points, points_jobs
from huiyuan.services.principals import SYSTEM

from .bodies import cancelled, completed, item, paid, refunded
from .ledger import apply, assert_reports_agree, document, iso, lots_of
from .stored import start_afresh
from .stories import PastAnswers, stories_wanted, tell

SHANGHAI = ZoneInfo("Asia/Shanghai")
EXPIRY = dp.ExpiryPolicy("rolling", days=2)
REISSUE_DAYS = 1
HOLD_SECONDS = 12 * 3600
REDEMPTION = dp.RedemptionPolicy(1, 1, Decimal("0.5"))


# ---------------------------------------------------------------- the model


@dataclass
class Lot:
    amount: int
    remaining: int
    status: str  # pending | active | cancelled | expired | closed
    expires: datetime | None = None
    clawed: int = 0
    lapsed: int = 0
    absorbed: int = 0
    seq: int = 0


@dataclass
class Draw:
    lot: Lot
    amount: int
    restored: int = 0


@dataclass
class Order:
    order_id: str
    amount: int
    status: str = "paid"
    refunded: int = 0
    lot: Lot | None = None
    captured: list[Draw] = field(default_factory=list)


@dataclass
class Hold:
    hold_id: str
    amount: int
    expires: datetime
    status: str = "held"


class Ledger:
    """What the points rules say a member's balances and lots are, in plain Python."""

    def __init__(self, debt: bool, reissue: bool) -> None:
        self.debt_allowed = debt
        self.reissue = reissue
        self.available = self.pending = self.reserved = self.debt = 0
        self.lots: list[Lot] = []
        self.orders: dict[str, Order] = {}
        self.holds: dict[str, Hold] = {}

    def due_lots(self, now: datetime) -> list[Lot]:
        """Open lots past their expiry, in the order a spend draws them."""
        due = [
            lot
            for lot in self.lots
            if lot.status == "active"
            and lot.remaining > 0
            and lot.expires is not None
            and lot.expires <= now
        ]
        return sorted(due, key=lambda lot: (lot.expires, lot.seq))

    def kept(self, now: datetime) -> list[int]:
        """What the holds keep of each due lot: their captures' points, the oldest first."""
        return dp.kept_by_holds(self.reserved, [lot.remaining for lot in self.due_lots(now)])

    def lapsing(self, now: datetime) -> int:
        """Points of lots past their expiry that would expire now: all but what holds keep."""
        return sum(lot.remaining for lot in self.due_lots(now)) - sum(self.kept(now))

    def shown_available(self, now: datetime) -> int:
        """``available`` as the API shows it: without points past their expiry."""
        return self.available - self.lapsing(now)

    def spendable_at(self, now: datetime) -> int:
        """What a spend may take at ``now``: it expires the due lots first, and the points the
        holds keep serve only their captures."""
        return self.shown_available(now) - max(self.reserved, sum(self.kept(now)))

    def new_lot(self, amount: int, status: str, expires: datetime | None) -> Lot:
        lot = Lot(amount, amount, status, expires, seq=len(self.lots))
        self.lots.append(lot)
        return lot

    def into_available(self, lot: Lot, points: int) -> None:
        repay = min(self.debt, points)
        lot.remaining -= repay
        self.debt -= repay
        self.available += points - repay

    def take(
        self, amount: int, first: Lot | None = None, alive_at: datetime | None = None
    ) -> list[Draw]:
        """Draw from spendable lots, ``first`` first, then oldest expiry first; ``alive_at``:
        only from lots not past their expiry then (a spend that is not a hold's capture)."""
        spendable = [
            lot
            for lot in self.lots
            if lot.status == "active"
            and lot.remaining > 0
            and not (alive_at and lot.expires is not None and lot.expires <= alive_at)
        ]
        plan: list[Draw] = []
        if first is not None and first in spendable:
            plan.append(Draw(first, min(first.remaining, amount)))
            spendable.remove(first)
        far = datetime.max.replace(tzinfo=SHANGHAI)
        spendable.sort(key=lambda lot: (lot.expires is None, lot.expires or far, lot.seq))
        left = amount - sum(d.amount for d in plan)
        for lot in spendable:
            if left == 0:
                break
            give = min(lot.remaining, left)
            plan.append(Draw(lot, give))
            left -= give
        plan = [d for d in plan if d.amount]
        for draw in plan:
            draw.lot.remaining -= draw.amount
        self.available -= sum(d.amount for d in plan)
        return plan

    # ------------------------------------------------------------ events

    def pay(self, order: Order, hold: Hold | None, now: datetime) -> bool:
        """False if the payment is refused (a deduction above the order's share)."""
        if hold is not None and hold.status != "captured":
            if hold.amount > dp.max_deduction_points(REDEMPTION, order.amount + hold.amount):
                return False
            self.expire(now, close_spent=False)  # while the hold keeps what it needs
            if hold.status == "held":
                self.reserved -= hold.amount
                covered = hold.amount
            else:  # lapsed or released: what is left is taken, the rest reported short
                covered = min(hold.amount, max(self.spendable_at(now), 0))
            alive_at = None if hold.status == "held" else now  # what holds keep: captures
            order.captured = self.take(covered, alive_at=alive_at) if covered else []
            hold.status = "captured"
        earned = order.amount // 100
        if earned:
            order.lot = self.new_lot(earned, "pending", None)
            self.pending += earned
        self.orders[order.order_id] = order
        return True

    def complete(self, order: Order, now: datetime) -> None:
        order.status = "completed"
        lot = order.lot
        if lot is not None and lot.status == "pending" and lot.remaining:
            lot.status = "active"
            lot.expires = dp.expires_at(EXPIRY, now, SHANGHAI)
            self.pending -= lot.remaining
            self.into_available(lot, lot.remaining)

    def refund(self, order: Order, refunded_total: int, now: datetime) -> None:
        self.expire(now, close_spent=False)
        lot = order.lot
        if lot is not None and lot.status != "cancelled":
            due = dp.clawback_due(lot.amount, lot.clawed, refunded_total, order.amount)
            if due > 0:
                self.claw_back(lot, due, now)
        self.restore(order, refunded_total, now)

    def claw_back(self, lot: Lot, due: int, now: datetime) -> None:
        lot.clawed += due
        if lot.status == "pending":
            lot.remaining -= due
            self.pending -= due
            if lot.remaining == 0:
                lot.status = "cancelled"
            return
        left = due
        lapsed = lot.lapsed - lot.absorbed
        if lapsed > 0:
            absorb = min(lapsed, left)
            lot.absorbed += absorb
            left -= absorb
        if left:
            free = max(self.spendable_at(now), 0)
            taken = self.take(min(left, free), first=lot, alive_at=now)
            left -= sum(d.amount for d in taken)
        if left and self.debt_allowed:
            self.debt += left

    def restore(self, order: Order, refunded_total: int, now: datetime) -> None:
        spent = sum(d.amount for d in order.captured)
        restored = sum(d.restored for d in order.captured)
        left = dp.clawback_due(spent, restored, refunded_total, order.amount)
        for draw in order.captured:
            if left == 0:
                break
            give = min(draw.amount - draw.restored, left)
            left -= give
            draw.restored += give
            lot = draw.lot
            if lot.status == "active" and (lot.expires is None or lot.expires > now):
                lot.remaining += give
                self.into_available(lot, give)
            elif self.reissue:
                fresh = self.new_lot(give, "active", now + timedelta(days=REISSUE_DAYS))
                self.into_available(fresh, give)
            else:  # forfeited: recorded as expired from its lot, a lapse a clawback absorbs
                lot.lapsed += give

    def cancel(self, order: Order, now: datetime) -> None:
        self.refund(order, order.amount, now)
        order.status = "cancelled"

    def expire(self, now: datetime, close_spent: bool = True) -> None:
        """The expiry job (``close_spent``: it also closes spent-out lots past their expiry),
        or a spend expiring its member's due lots first."""
        for lot in self.lots:
            due = lot.expires is not None and lot.expires <= now
            if close_spent and lot.status == "active" and lot.remaining == 0 and due:
                lot.status = "closed"
        # the holds keep their captures' points, the oldest first; the rest go
        for lot, keep in zip(self.due_lots(now), self.kept(now), strict=True):
            gone = lot.remaining - keep
            lot.lapsed += gone
            self.available -= gone
            lot.remaining = keep
            if keep == 0:
                lot.status = "expired"

    def sweep(self, now: datetime) -> None:
        for hold in self.holds.values():
            if hold.status == "held" and hold.expires <= now:
                hold.status = "expired"
                self.reserved -= hold.amount


# ---------------------------------------------------------------- the machine


START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def run_stories(svc, clock, examples: int, steps: int) -> None:
    members = itertools.count()

    class PointsStories(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            start_afresh(svc, clock, START)
            self.member = f"m{next(members)}"
            self.ids = itertools.count()
            self.model = Ledger(debt=True, reissue=True)
            self.doc: dict = {}
            self.last_event: dict | None = None
            self.past = PastAnswers()

        def fresh(self, what: str) -> str:
            return f"{self.member}-{what}{next(self.ids)}"

        def send(self, body: dict) -> event_service.EventOutcome:
            outcome = event_service.ingest_event(svc, SYSTEM, body)
            if outcome.status == 200:
                self.last_event = body
            return outcome

        def now(self) -> datetime:
            return clock()

        @initialize(debt=st.booleans(), reissue=st.booleans())
        def publish_program(self, debt: bool, reissue: bool) -> None:
            doc = document(
                expiry={"mode": "rolling", "days": EXPIRY.days},
                negative_balance="debt" if debt else "write_off",
                refund_of_expired={"mode": "reissue" if reissue else "forfeit", "days": 1},
            )
            apply(svc, doc)
            self.doc = doc
            self.model = Ledger(debt, reissue)

        @rule(value_fen=st.integers(1, 5), hours=st.integers(1, 48))
        def revalue(self, value_fen: int, hours: int) -> None:
            """The program changes what a point is worth (a new version, from now on)."""
            clock.advance(hours=hours)
            self.doc = {"points": {**self.doc["points"], "value_fen": value_fen}}
            apply(svc, self.doc)

        # ------------------------------------------------------------ orders

        @rule(
            amount=st.integers(1, 60000),
            use_hold=st.booleans(),
            pick=st.integers(0, 1000),
            hours=st.integers(0, 8),
        )
        def pay(self, amount: int, use_hold: bool, pick: int, hours: int) -> None:
            clock.advance(hours=hours)
            holds = list(self.model.holds.values())
            hold = holds[pick % len(holds)] if use_hold and holds else None
            order = Order(self.fresh("o"), amount)
            body = paid(
                self.fresh("pay"),
                order.order_id,
                self.member,
                amount=amount,
                items=[item("sku", amount)],
                occurred_at=iso(self.now()),
            )
            if hold is not None:
                body["data"]["points_reservation_id"] = hold.hold_id
            outcome = self.send(body)
            expected = self.model.pay(order, hold, self.now())
            assert (outcome.status == 200) is expected, outcome.body
            if not expected:
                assert outcome.body["code"] == "deduction_exceeds_share"

        @rule(amount=st.integers(100, 60000), days=st.integers(0, 2))
        def earn_and_release(self, amount: int, days: int) -> None:
            """A paid order completed at once: points to spend for the other steps."""
            clock.advance(days=days)
            order = Order(self.fresh("o"), amount)
            body = paid(
                self.fresh("pay"),
                order.order_id,
                self.member,
                amount=amount,
                items=[item("sku", amount)],
                occurred_at=iso(self.now()),
            )
            assert self.send(body).status == 200
            self.model.pay(order, None, self.now())
            body = completed(
                self.fresh("done"), order.order_id, self.member, occurred_at=iso(self.now())
            )
            assert self.send(body).status == 200
            self.model.complete(order, self.now())

        def open_orders(self) -> list[Order]:
            return [o for o in self.model.orders.values() if o.status == "paid"]

        def refundable_orders(self) -> list[Order]:
            return [
                o
                for o in self.model.orders.values()
                if o.status != "cancelled" and o.refunded < o.amount
            ]

        @precondition(lambda self: self.open_orders())
        @rule(pick=st.integers(0, 1000), hours=st.integers(0, 8))
        def complete(self, pick: int, hours: int) -> None:
            clock.advance(hours=hours)
            orders = self.open_orders()
            order = orders[pick % len(orders)]
            body = completed(
                self.fresh("done"), order.order_id, self.member, occurred_at=iso(self.now())
            )
            assert self.send(body).status == 200
            self.model.complete(order, self.now())

        @precondition(lambda self: self.open_orders())
        @rule(pick=st.integers(0, 1000))
        def cancel(self, pick: int) -> None:
            orders = self.open_orders()
            order = orders[pick % len(orders)]
            body = cancelled(
                self.fresh("cancel"), order.order_id, self.member, occurred_at=iso(self.now())
            )
            assert self.send(body).status == 200
            self.model.cancel(order, self.now())

        @precondition(lambda self: self.refundable_orders())
        @rule(
            pick=st.integers(0, 1000),
            whole=st.booleans(),
            part=st.integers(1, 60000),
            hours=st.integers(0, 30),
        )
        def refund(self, pick: int, whole: bool, part: int, hours: int) -> None:
            clock.advance(hours=hours)
            orders = self.refundable_orders()
            order = orders[pick % len(orders)]
            left = order.amount - order.refunded
            amount = left if whole else min(part, left)
            refund_id = self.fresh("r")
            body = refunded(
                f"ev-{refund_id}",
                order.order_id,
                refund_id,
                amount,
                self.member,
                occurred_at=iso(self.now()),
            )
            outcome = self.send(body)
            assert outcome.status == 200, outcome.body
            order.refunded += amount
            self.model.refund(order, order.refunded, self.now())

        # ------------------------------------------------------------ holds and spending

        def spend_amount(self, amount: int, overdraw: bool) -> int:
            """Mostly an amount the member can afford; sometimes one beyond it."""
            spendable = self.model.spendable_at(self.now())
            if overdraw or spendable <= 0:
                return max(spendable, 0) + amount
            return amount % spendable + 1

        @rule(amount=st.integers(1, 600), overdraw=st.booleans())
        def reserve(self, amount: int, overdraw: bool) -> None:
            amount = self.spend_amount(amount, overdraw)
            hold_id = self.fresh("h")
            try:
                points.reserve(
                    svc,
                    SYSTEM,
                    self.member,
                    hold_id,
                    amount,
                    order_id=None,
                    program_id=None,
                    ttl_seconds=HOLD_SECONDS,
                )
            except DomainError as error:
                assert str(error.code) in ("insufficient_points", "member_not_found")
                assert amount > self.model.spendable_at(self.now()) or not self.model.orders
                return
            assert amount <= self.model.spendable_at(self.now())
            self.model.expire(self.now(), close_spent=False)
            expires = self.now() + timedelta(seconds=HOLD_SECONDS)
            self.model.holds[hold_id] = Hold(hold_id, amount, expires)
            self.model.reserved += amount

        @precondition(lambda self: any(h.status == "held" for h in self.model.holds.values()))
        @rule(pick=st.integers(0, 1000))
        def release_hold(self, pick: int) -> None:
            held = [h for h in self.model.holds.values() if h.status == "held"]
            hold = held[pick % len(held)]
            points.release_reservation(svc, SYSTEM, self.member, hold.hold_id, None)
            hold.status = "released"
            self.model.reserved -= hold.amount
            # the balance in the answer expires the due lots the hold no longer keeps
            self.model.expire(self.now(), close_spent=False)

        @rule(amount=st.integers(1, 600), overdraw=st.booleans())
        def redeem(self, amount: int, overdraw: bool) -> None:
            amount = self.spend_amount(amount, overdraw)
            try:
                points.redeem(svc, SYSTEM, self.member, self.fresh("red"), amount, "mall", None)
            except DomainError as error:
                assert str(error.code) in ("insufficient_points", "member_not_found")
                assert amount > self.model.spendable_at(self.now()) or not self.model.orders
                return
            assert amount <= self.model.spendable_at(self.now())
            self.model.expire(self.now(), close_spent=False)
            self.model.take(amount, alive_at=self.now())

        @precondition(lambda self: self.model.orders)
        @rule(amount=st.integers(-300, 300).filter(bool))
        def adjust(self, amount: int) -> None:
            try:
                points.adjust(svc, SYSTEM, self.member, self.fresh("adj"), amount, "fix", None)
            except DomainError as error:
                assert str(error.code) == "insufficient_points"
                assert -amount > self.model.spendable_at(self.now())
                return
            if amount > 0:
                lot = self.model.new_lot(
                    amount, "active", dp.expires_at(EXPIRY, self.now(), SHANGHAI)
                )
                self.model.into_available(lot, amount)
                # the balance in the answer expires the due lots, as a spend would
                self.model.expire(self.now(), close_spent=False)
            else:
                assert -amount <= self.model.spendable_at(self.now())
                self.model.expire(self.now(), close_spent=False)
                self.model.take(-amount, alive_at=self.now())

        # ------------------------------------------------------------ time

        @rule(days=st.integers(0, 3), hours=st.integers(0, 23), sweep_first=st.booleans())
        def nightly_jobs(self, days: int, hours: int, sweep_first: bool) -> None:
            """Time passes; lapsed holds are swept (or not yet) and expired lots closed."""
            clock.advance(days=days, hours=hours)
            if sweep_first:
                points_jobs.sweep_reservations(svc)
                self.model.sweep(self.now())
            points_jobs.expire_lots(svc)
            self.model.expire(self.now())

        @precondition(lambda self: self.last_event is not None)
        @rule()
        def replay(self) -> None:
            outcome = event_service.ingest_event(svc, SYSTEM, self.last_event)
            assert outcome.status == 200 and outcome.replayed

        # ------------------------------------------------------------ after every step

        @invariant()
        def ledger_reconciles(self) -> None:
            report = points_jobs.reconcile(svc)
            assert report.drifts == [], report.drifts

        @invariant()
        def liability_and_flow_agree(self) -> None:
            """Redeemed and expired, in points and in fen at the values in force when they
            moved, and what the member holds: the same in both reports."""
            if self.model.orders or self.model.holds:
                assert_reports_agree(svc)

        @invariant()
        def balances_are_what_the_model_says(self) -> None:
            if not self.model.orders and not self.model.holds:
                return  # the member does not exist yet
            found = points.summary(svc, SYSTEM, self.member, None)
            model = self.model
            assert found["available"] >= 0 and found["debt"] >= 0
            assert found["reserved"] <= found["available"]
            figures = (found["available"], found["pending"], found["reserved"], found["debt"])
            shown = model.shown_available(self.now())
            assert figures == (shown, model.pending, model.reserved, model.debt)

        @invariant()
        def lots_are_what_the_model_says(self) -> None:
            if not self.model.orders:
                return
            stored = [(r["amount"], r["remaining"], r["status"]) for r in lots_of(svc, self.member)]
            assert stored == [(lot.amount, lot.remaining, lot.status) for lot in self.model.lots]

        @invariant()
        def the_past_stays_as_it_was(self) -> None:
            """A balance asked as of an instant the story has passed never changes: whatever
            happens later is dated later (every event here happens at the clock's time) —
            also when a checkout hold that kept points past their expiry ends. The last ten
            instants passed are asked again after every step."""
            if not self.model.orders and not self.model.holds:
                return

            def ask(at: datetime) -> tuple[int, int, int]:
                found = points.summary(svc, SYSTEM, self.member, None, as_of=at)
                return (found["available"], found["pending"], found["debt"])

            self.past.check(self.now(), ask)

    tell(PointsStories, examples, steps)


def test_random_stories_of_one_members_points_keep_the_ledger_whole(svc, clock, db_url):
    run_stories(svc, clock, examples=stories_wanted(db_url), steps=40)
