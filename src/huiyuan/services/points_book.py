"""One member's points in one program: every movement as a balanced transaction.

A ``PointsBook`` works inside the caller's transaction, on the member's balance row it locked
when opened. Each movement is a transaction row with a unique idempotency key (a retry finds the
key and does nothing) and legs that sum to zero: the member's buckets (``available``,
``pending``, ``debt``) against system accounts (``system:issued:<issuer>``,
``system:redeemed``, ``system:expired``, ``system:written_off``, ``system:adjustments``), which
have entries but no balance row, so no event ever waits on a shared row.

Debt is the ``debt`` bucket's negative balance: a clawback the member cannot cover (when the
program allows debt) and repaid first from points released later.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection

from huiyuan.db import points_repo
from huiyuan.domain import points as dp
from huiyuan.domain.errors import PointsError, conflict
from huiyuan.services.context import Services
from huiyuan.services.program_configs import ProgramConfig

REDEEMED = "system:redeemed"
EXPIRED = "system:expired"
WRITTEN_OFF = "system:written_off"
ADJUSTMENTS = "system:adjustments"


# The expiry job and a spend that expires its member's due lots first write the same rows.
EXPIRY_LABELS = points_repo.ExpiryLabels(
    actor="system:expiry",
    reason_zh="积分过期",
    reason_en="points expired",
    expired_account=EXPIRED,
)


def issued(issuer: str) -> str:
    return f"system:issued:{issuer}"


class Leg(NamedTuple):  # a tuple: a batch makes thousands (see ``dp.Line``)
    account: str  # "member" or a system account
    bucket: str  # available | pending | debt (member legs); "total" for system legs
    amount: int
    lot_id: int | None = None


class Reason(NamedTuple):
    zh: str
    en: str


def txn_row(
    config: ProgramConfig,
    member_id: str,
    kind: str,
    idem_key: str,
    reason: Reason,
    *,
    order_id: str | None,
    rule_id: str | None,
    actor: str,
    occurred_at: datetime,
    created_at: datetime,
) -> dict[str, Any]:
    """A transaction row; the set-based order path (``order_batch``) writes the same rows."""
    return {
        "program_id": config.program_id,
        "member_id": member_id,
        "kind": kind,
        "idem_key": idem_key,
        "order_id": order_id,
        "rule_id": rule_id,
        "config_version": config.version,
        "reason_zh": reason.zh[:300],
        "reason_en": reason.en[:300],
        "actor": actor,
        "occurred_at": occurred_at,
        "created_at": created_at,
    }


def lot_row(
    program_id: str,
    member_id: str,
    award: dp.Award,
    issuer: str,
    txn_id: int,
    *,
    order_id: str | None,
    at: datetime,
    expires_at: datetime | None,
    pending: bool,
) -> dict[str, Any]:
    return {
        "program_id": program_id,
        "member_id": member_id,
        "issuer": issuer,
        "amount": award.points,
        "remaining": award.points,
        "clawed": 0,
        "absorbed": 0,
        "status": "pending" if pending else "active",
        "order_id": order_id,
        "rule_id": award.rule_id,
        "txn_id": txn_id,
        "earned_at": at,
        "released_at": None if pending else at,
        "expires_at": expires_at,
    }


def pending_legs(issuer: str, points: int, lot_id: int) -> list[Leg]:
    """An award credited as pending: the member's pending bucket against its issuer."""
    return [
        Leg("member", "pending", points, lot_id),
        Leg(issued(issuer), "total", -points, lot_id),
    ]


def entry_rows(
    txn_id: int, program_id: str, member_id: str, legs: list[Leg], at: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "txn_id": txn_id,
            "program_id": program_id,
            "member_id": member_id if leg.account == "member" else None,
            "account": leg.account,
            "bucket": leg.bucket,
            "amount": leg.amount,
            "lot_id": leg.lot_id,
            "occurred_at": at,
        }
        for leg in legs
        if leg.amount != 0
    ]


class PointsBook:
    def __init__(
        self,
        svc: Services,
        conn: Connection,
        config: ProgramConfig,
        member_id: str,
        at: datetime,
        *,
        actor: str,
        owner_id: str,
    ) -> None:
        self.svc = svc
        self.conn = conn
        self.config = config
        self.program_id = config.program_id
        self.member_id = member_id
        self.at = at
        self.actor = actor
        self.owner_id = owner_id  # the program's owner: issuer of points no store funds
        self._balances: dict[str, int] | None = None
        self._due_expired = False
        self._kept = 0  # points past their expiry a checkout hold keeps (see ``expire_due``)
        self._repaying = 0  # debt repaid by legs built and not yet written (``_into_available``)
        # The instant the account was locked at: what is past its expiry is judged then, once
        # for the whole book (``expire_due``, ``_plan_takes``).
        self._now: datetime | None = None
        self._any_lapsed = False  # the member had lots past their expiry then (``lock_account``)

    def balances(self) -> dict[str, int]:
        """The member's balance row, locked (and created) on first use: a book that finds
        nothing to do never touches it."""
        if self._balances is None:
            if self._now is None:
                self._now = self.svc.now()
            row = points_repo.lock_account(self.conn, self.program_id, self.member_id, self._now)
            self._balances = {
                k: int(getattr(row, k)) for k in ("available", "pending", "reserved", "debt")
            }
            self._any_lapsed = self._any_lapsed or bool(row.lapsed)
        return self._balances

    @property
    def available(self) -> int:
        return self.balances()["available"]

    @property
    def pending(self) -> int:
        return self.balances()["pending"]

    @property
    def reserved(self) -> int:
        return self.balances()["reserved"]

    @property
    def debt(self) -> int:
        return self.balances()["debt"]

    @property
    def spendable(self) -> int:
        """What a spend that is not a hold's capture may take now, once the member's lots past
        their expiry are expired (``expire_due``): available less what checkout holds keep.
        A hold keeps the points its capture will take (``domain.points.kept_by_holds``), some
        of them maybe past their expiry; only a capture may use those (``draw(...,
        capturing=True)``), so this is available less the larger of the two."""
        self.expire_due()
        return self.available - max(self.reserved, self._kept)

    def expire_due(self) -> int:
        """Expire the member's lots whose expiry has passed, before anything is spent: the
        expiry job runs every few minutes, and until it comes by, an expired lot must not pay
        for a redemption, a hold, a capture or a clawback. The same transactions and the same
        rule as the job's (``points_repo.expire_due_lots``), a member's checkout holds
        included: what they keep stays until they are captured, released or lapse. Once per
        book; returns how many lots lost points."""
        if self._due_expired:
            return 0
        self._due_expired = True
        self.balances()  # the account is locked before the lots, as everywhere
        if not self._any_lapsed:
            return 0  # nothing past its expiry: no expiry statement, nothing kept
        return self._expire_lapsed()

    def _expire_lapsed(self, dated_at: datetime | None = None) -> int:
        """Expire, as the job would, what the member's holds do not keep of their lots past
        their expiry (dated at each lot's expiry, or ``dated_at``); then learn what they
        keep."""
        now = self._instant()
        done = points_repo.expire_due_lots(
            self.conn,
            after=0,
            limit=1_000_000,
            now=now,
            at=now,
            labels=EXPIRY_LABELS,
            member=(self.program_id, self.member_id),
            dated_at=dated_at,
        )
        if done.expired:
            self._balances = None  # read again: available went down
        self._kept = (  # holds may have kept points past their expiry from expiring
            points_repo.lapsed_points(self.conn, self.program_id, self.member_id, now)
            if self.reserved
            else 0
        )
        return done.expired

    def _instant(self) -> datetime:
        """The book's now for expiry: the instant its account was locked at."""
        self.balances()
        assert self._now is not None
        return self._now

    # ------------------------------------------------------------ posting

    def post(
        self,
        kind: str,
        idem_key: str,
        legs: list[Leg],
        reason: Reason,
        *,
        order_id: str | None = None,
        rule_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """Write a balanced transaction; None (and nothing written) if the key was used."""
        if sum(leg.amount for leg in legs) != 0:
            raise AssertionError(f"unbalanced {kind}: {legs}")
        txn_id = self.open_txn(
            kind, idem_key, reason, order_id=order_id, rule_id=rule_id, occurred_at=occurred_at
        )
        if txn_id is not None:
            self.write_legs(txn_id, legs, occurred_at)
        return txn_id

    def open_txn(
        self,
        kind: str,
        idem_key: str,
        reason: Reason,
        *,
        order_id: str | None = None,
        rule_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        return points_repo.insert_txn(
            self.conn,
            txn_row(
                self.config,
                self.member_id,
                kind,
                idem_key,
                reason,
                order_id=order_id,
                rule_id=rule_id,
                actor=self.actor,
                occurred_at=occurred_at or self.at,
                created_at=self.svc.now(),
            ),
        )

    def write_legs(
        self,
        txn_id: int,
        legs: list[Leg],
        occurred_at: datetime | None,
        *,
        takes: list[tuple[int, int]] | None = None,
        draw_kind: str | None = None,
    ) -> None:
        """Write the legs as entries and move the member's balances; ``takes`` (lot, points):
        what a spend takes from lots, written with its draws (``draw_kind``) in the same
        statement (``points_repo.write_movement``)."""
        if sum(leg.amount for leg in legs) != 0:
            raise AssertionError(f"unbalanced legs: {legs}")
        at = occurred_at or self.at
        self._repaying = 0  # written below: the balance says what is still owed
        delta = {"available": 0, "pending": 0, "debt": 0}
        for leg in legs:
            if leg.account == "member":
                delta[leg.bucket] += leg.amount
        moves = any(delta.values())
        balances = self.balances() if moves else None  # locked, and read before it moves
        # The debt column holds what is owed: the negative of the debt bucket.
        points_repo.write_movement(
            self.conn,
            entry_rows(txn_id, self.program_id, self.member_id, legs, at),
            self.program_id,
            self.member_id,
            self.svc.now(),
            available=delta["available"],
            pending=delta["pending"],
            debt=-delta["debt"],
            takes=takes or (),
            txn_id=txn_id,
            draw_kind=draw_kind,
        )
        if balances is not None:
            balances["available"] += delta["available"]
            balances["pending"] += delta["pending"]
            balances["debt"] -= delta["debt"]

    def _hold(self, amount: int) -> None:
        balances = self.balances()
        points_repo.move_balances(
            self.conn, self.program_id, self.member_id, self.svc.now(), reserved=amount
        )
        balances["reserved"] += amount

    # ------------------------------------------------------------ earning

    def credit(
        self,
        award: dp.Award,
        idem_key: str,
        *,
        pending: bool,
        order_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """Credit an award as a new lot (pending, or available at once); the lot's id."""
        at = occurred_at or self.at
        issuer = award.funded_by or self.owner_id
        reason = Reason(award.reason_zh, award.reason_en)
        txn_id = self.open_txn(
            "earn", idem_key, reason, order_id=order_id, rule_id=award.rule_id, occurred_at=at
        )
        if txn_id is None:
            return None
        lot_id = points_repo.insert_lot(
            self.conn,
            lot_row(
                self.program_id,
                self.member_id,
                award,
                issuer,
                txn_id,
                order_id=order_id,
                at=at,
                expires_at=None if pending else self._expiry(at),
                pending=pending,
            ),
        )
        if pending:
            self.write_legs(txn_id, pending_legs(issuer, award.points, lot_id), at)
        else:
            legs = [
                Leg(issued(issuer), "total", -award.points, lot_id),
                *self._into_available(txn_id, lot_id, award.points),
            ]
            self.write_legs(txn_id, legs, at)
        return lot_id

    def _expiry(self, released_at: datetime) -> datetime | None:
        policy = self.config.document.points.expiry.to_domain()
        return dp.expires_at(policy, released_at, self.svc.settings.zone)

    def _into_available(self, txn_id: int, lot_id: int, points: int) -> list[Leg]:
        """Legs putting ``points`` of a lot into available, repaying debt first — what is
        still owed once the legs built so far and not yet written have repaid their part (a
        restore gives back to several lots in one transaction)."""
        repay = min(self.debt - self._repaying, points)
        legs = [Leg("member", "available", points - repay, lot_id)]
        if repay:
            self._repaying += repay
            legs.append(Leg("member", "debt", repay, lot_id))
            points_repo.take_from_lots(self.conn, [(lot_id, repay)])
            points_repo.insert_draws(
                self.conn,
                [
                    {
                        "txn_id": txn_id,
                        "lot_id": lot_id,
                        "kind": "debt_repay",
                        "amount": repay,
                        "restored": 0,
                    }
                ],
            )
        return legs

    def release_lot(self, lot: Any, at: datetime) -> bool:
        """Make a pending lot available, with its expiry counted from now."""
        if lot.status != "pending" or lot.remaining == 0:
            return False
        reason = Reason(
            f"订单 {lot.order_id} 完成，积分解冻",
            f"order {lot.order_id} completed: points released",
        )
        txn_id = self.open_txn(
            "release",
            f"release:{lot.id}",
            reason,
            order_id=lot.order_id,
            rule_id=lot.rule_id,
            occurred_at=at,
        )
        if txn_id is None:
            return False
        points_repo.release_lot(self.conn, lot.id, at, self._expiry(at))
        legs = [
            Leg("member", "pending", -lot.remaining, lot.id),
            *self._into_available(txn_id, lot.id, lot.remaining),
        ]
        self.write_legs(txn_id, legs, at)
        return True

    # ------------------------------------------------------------ spending

    def draw(
        self,
        kind: str,
        amount: int,
        idem_key: str,
        reason: Reason,
        *,
        counter_account: str,
        order_id: str | None = None,
        occurred_at: datetime | None = None,
        capturing: bool = False,
    ) -> int | None:
        """Spend ``amount`` from the lots, oldest expiry first; 409 if not enough is free
        (points held for a checkout are not free). ``capturing``: the spend of a hold just
        lifted, which may use the points past their expiry that holds kept (first: they are
        the oldest); any other spend draws only from lots still alive."""
        free = self.spendable
        if capturing:
            free = self.available - self.reserved
        if amount > free:
            raise conflict(
                PointsError.INSUFFICIENT_POINTS,
                f"{amount} points needed, {max(free, 0)} available",
                field="amount",
            )
        txn_id = self.open_txn(kind, idem_key, reason, order_id=order_id, occurred_at=occurred_at)
        if txn_id is None:
            return None
        plan = self._plan_takes(amount, alive_only=not capturing)
        legs = [Leg("member", "available", -take, lot) for lot, take in plan]
        legs.append(Leg(counter_account, "total", amount))
        self.write_legs(txn_id, legs, occurred_at, takes=plan, draw_kind=kind)
        return txn_id

    def _plan_takes(
        self, amount: int, first_lot: int | None = None, *, alive_only: bool
    ) -> list[tuple[int, int]]:
        """Which lots a spend of ``amount`` takes from (``first_lot`` first), oldest expiry
        first: ``[(lot, points)]``, written with the spend's legs (``write_legs(takes=…)``);
        ``alive_only``: not from lots past their expiry (what holds keep: see ``spendable``)."""
        now = self._instant()
        lots = [
            dp.LotBalance(r.id, int(r.remaining), r.expires_at)
            for r in points_repo.spendable_lots(self.conn, self.program_id, self.member_id)
            if not (alive_only and r.expires_at is not None and r.expires_at <= now)
        ]
        plan: list[tuple[int, int]] = []
        if first_lot is not None:
            own = next((lot for lot in lots if lot.lot_id == first_lot), None)
            if own is not None and own.remaining and amount:  # a draw of 0 is no draw
                take = min(own.remaining, amount)
                plan.append((own.lot_id, take))
                lots = [lot for lot in lots if lot.lot_id != first_lot]
        plan += dp.plan_draws(lots, amount - sum(t for _, t in plan))
        return plan

    def restore(
        self,
        spend_txns: list[int],
        amount: int,
        idem_key: str,
        reason: Reason,
        *,
        order_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """Give back ``amount`` of earlier spends to the lots they came from.

        A lot that expired meanwhile is handled per ``refund_of_expired``: ``reissue`` credits a
        new lot living ``days`` days, ``forfeit`` records the points as expired.
        """
        if amount <= 0:
            return None
        txn_id = self.open_txn(
            "restore", idem_key, reason, order_id=order_id, occurred_at=occurred_at
        )
        if txn_id is None:
            return None
        at = occurred_at or self.at
        policy = self.config.document.points.refund_of_expired
        legs: list[Leg] = [Leg(REDEEMED, "total", -amount)]
        left = amount
        for draw in points_repo.restorable_draws(self.conn, spend_txns):
            if left == 0:
                break
            give = min(draw.amount - draw.restored, left)
            left -= give
            points_repo.mark_restored(self.conn, draw.id, give, txn_id)
            if draw.lot_status == "active" and (draw.expires_at is None or draw.expires_at > at):
                points_repo.give_back_to_lot(self.conn, draw.lot_id, give)
                legs += self._available_with_repay(txn_id, draw.lot_id, give)
            elif policy.mode == "reissue":
                lot_id = points_repo.insert_lot(
                    self.conn,
                    {
                        "program_id": self.program_id,
                        "member_id": self.member_id,
                        "issuer": draw.issuer,
                        "amount": give,
                        "remaining": give,
                        "clawed": 0,
                        "absorbed": 0,
                        "status": "active",
                        # Not the order's: a reissued lot gives back a redemption, it was not
                        # earned by the order, so the order's later refunds must not claw it.
                        "order_id": None,
                        "rule_id": None,
                        "txn_id": txn_id,
                        "earned_at": at,
                        "released_at": at,
                        "expires_at": at + timedelta(days=policy.days),
                    },
                )
                legs += self._available_with_repay(txn_id, lot_id, give, fresh=True)
            else:
                # Forfeited: what the lot gave out is now expired rather than redeemed, and a
                # draw says so (the liability report reads draws).
                points_repo.insert_draws(
                    self.conn,
                    [
                        {
                            "txn_id": txn_id,
                            "lot_id": draw.lot_id,
                            "kind": "expire",
                            "amount": give,
                            "restored": 0,
                        }
                    ],
                )
                legs.append(Leg(EXPIRED, "total", give, draw.lot_id))
        if left:
            raise AssertionError(f"restore of {amount} exceeds what was spent")
        self.write_legs(txn_id, legs, occurred_at)
        return txn_id

    def _available_with_repay(
        self, txn_id: int, lot_id: int, points: int, fresh: bool = False
    ) -> list[Leg]:
        del fresh
        return self._into_available(txn_id, lot_id, points)

    # ------------------------------------------------------------ refunds of earned points

    def take_back(
        self, lot: Any, due: int, idem_key: str, reason: Reason, at: datetime
    ) -> tuple[int, int]:
        """Take back ``due`` points of a lot after a refund; returns ``(taken, recovered)``:
        the points taken back (0 on a replay) and the part of them actually recovered from the
        member (the rest became debt or was written off).

        Pending points are cancelled. Released points come from the lot itself, then from the
        member's other points; a lot whose remainder expired counts that lapse as taken back;
        what the member cannot cover becomes debt or is written off, per the program.
        """
        if due <= 0:
            return 0, 0
        txn_id = self.open_txn(
            "clawback", idem_key, reason, order_id=lot.order_id, rule_id=lot.rule_id, occurred_at=at
        )
        if txn_id is None:
            return 0, 0
        issuer_account = issued(lot.issuer)
        legs: list[Leg] = [Leg(issuer_account, "total", due, lot.id)]
        values: dict[str, Any] = {"clawed": lot.clawed + due}
        plan: list[tuple[int, int]] = []  # what is taken from the member's lots
        if lot.status == "pending":
            take = min(due, lot.remaining)
            legs.append(Leg("member", "pending", -take, lot.id))
            values["remaining"] = lot.remaining - take
            if take < due:  # cannot happen: pending lots are only reduced by clawbacks
                raise AssertionError("pending lot holds less than its clawback")
            if values["remaining"] == 0:
                values["status"] = "cancelled"
        else:
            left = due
            lapsed = self._lapsed(lot) - lot.absorbed
            if lapsed > 0:  # expired, or partly (what a hold did not keep)
                absorb = min(lapsed, left)
                legs.append(Leg(EXPIRED, "total", -absorb, lot.id))
                values["absorbed"] = lot.absorbed + absorb
                left -= absorb
            if left:
                free = max(self.spendable, 0)
                plan = self._plan_takes(min(left, free), first_lot=lot.id, alive_only=True)
                legs += [Leg("member", "available", -take, lot_id) for lot_id, take in plan]
                left -= sum(take for _, take in plan)
            if left:
                if self.config.document.points.negative_balance == "debt":
                    legs.append(Leg("member", "debt", -left, lot.id))
                else:
                    legs.append(Leg(WRITTEN_OFF, "total", -left, lot.id))
        points_repo.update_lot(self.conn, lot.id, values)
        self.write_legs(txn_id, legs, at, takes=plan, draw_kind="clawback")
        uncovered = -sum(leg.amount for leg in legs if leg.bucket == "debt") - sum(
            leg.amount for leg in legs if leg.account == WRITTEN_OFF
        )
        return due, due - uncovered

    def _lapsed(self, lot: Any) -> int:
        return points_repo.drawn_from_lot(self.conn, lot.id, "expire")

    # ------------------------------------------------------------ holds

    def hold(self, amount: int) -> None:
        if amount > self.spendable:
            raise conflict(
                PointsError.INSUFFICIENT_POINTS,
                f"{amount} points needed, {max(self.spendable, 0)} available",
                field="amount",
            )
        self._hold(amount)

    def unhold(self, amount: int) -> None:
        """Lift a hold its capture is about to spend (``draw(..., capturing=True)``): the
        points it kept past their expiry stay for that draw."""
        self._hold(-amount)

    def end_hold(self, amount: int) -> None:
        """A hold ends without a capture (released, lapsed, its order cancelled). The points
        it kept past their expiry expire then, dated at the book's moment (the request, the
        job's run, the cancellation; never before a lot's expiry): until then they were the
        member's, held for the capture, and a balance asked as of any earlier instant must
        stay what it was. What no hold kept expired at its lot's expiry, as always
        (``expire_due``, with this hold still counted)."""
        self.expire_due()
        self._hold(-amount)
        if not self._any_lapsed:
            return  # nothing of the member's was past its expiry when the book began
        self._expire_lapsed(dated_at=self.at)
