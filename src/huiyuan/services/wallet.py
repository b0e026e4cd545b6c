"""The wallet (余额): recharges, spends, refunds of both, and reading.

Like points, every movement is a transaction with a unique idempotency key and legs that sum to
zero: the member's ``principal`` and ``bonus`` against ``system:cash`` (money in and out),
``system:bonus_issued`` and ``system:spent``. The balance row is the member's own, locked for
the movement; system accounts have entries only. The wallet of a program is per member; a
store's recharge lands in the store's program when the store runs one, else the platform's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from huiyuan.db import wallet_repo
from huiyuan.db.tables import wallet_entries, wallet_txns
from huiyuan.domain import wallet as dw
from huiyuan.domain.errors import WalletError, conflict, not_found, past_instant
from huiyuan.services.context import Services
from huiyuan.services.members import require_visible_member
from huiyuan.services.owners import PLATFORM_PROGRAM
from huiyuan.services.principals import Principal, Scope
from huiyuan.services.program_access import (
    history_page,
    next_before_id,
    program_for_key,
    store_program,
)
from huiyuan.services.program_configs import ProgramConfig

CASH = "system:cash"
BONUS_ISSUED = "system:bonus_issued"
SPENT = "system:spent"


class WalletBook:
    """One member's wallet in one program, inside the caller's transaction."""

    def __init__(
        self,
        svc: Services,
        conn: Connection,
        config: ProgramConfig,
        member_id: str,
        at: datetime,
        actor: str,
    ) -> None:
        self.svc, self.conn, self.config = svc, conn, config
        self.program_id = config.program_id
        self.member_id = member_id
        self.at = at
        self.actor = actor
        row = wallet_repo.lock_account(conn, self.program_id, member_id, svc.now())
        self.principal = int(row.principal)
        self.bonus = int(row.bonus)
        self.recharged_total = int(row.recharged_total)

    @property
    def balance(self) -> dict[str, int]:
        return {
            "principal": self.principal,
            "bonus": self.bonus,
            "total": self.principal + self.bonus,
            "recharged_total": self.recharged_total,
        }

    def post(
        self,
        kind: str,
        idem_key: str,
        legs: list[tuple[str, str, int]],
        *,
        zh: str,
        en: str,
        ref_id: str | None = None,
        order_id: str | None = None,
        recharged: int = 0,
    ) -> int | None:
        """A balanced transaction of ``(account, bucket, amount)`` legs; None if replayed."""
        if sum(amount for _, _, amount in legs) != 0:
            raise AssertionError(f"unbalanced wallet {kind}: {legs}")
        principal = sum(a for acc, b, a in legs if acc == "member" and b == "principal")
        bonus = sum(a for acc, b, a in legs if acc == "member" and b == "bonus")
        txn_id = wallet_repo.insert_txn(
            self.conn,
            {
                "program_id": self.program_id,
                "member_id": self.member_id,
                "kind": kind,
                "idem_key": idem_key,
                "ref_id": ref_id,
                "order_id": order_id,
                "principal": principal,
                "bonus": bonus,
                "config_version": self.config.version,
                "reason_zh": zh[:300],
                "reason_en": en[:300],
                "actor": self.actor,
                "occurred_at": self.at,
                "created_at": self.svc.now(),
            },
        )
        if txn_id is None:
            return None
        wallet_repo.insert_entries(
            self.conn,
            [
                {
                    "txn_id": txn_id,
                    "program_id": self.program_id,
                    "member_id": self.member_id if account == "member" else None,
                    "account": account,
                    "bucket": bucket,
                    "amount": amount,
                    "occurred_at": self.at,
                }
                for account, bucket, amount in legs
                if amount
            ],
        )
        wallet_repo.move(
            self.conn,
            self.program_id,
            self.member_id,
            self.svc.now(),
            principal=principal,
            bonus=bonus,
            recharged=recharged,
        )
        self.principal += principal
        self.bonus += bonus
        self.recharged_total += recharged
        return txn_id

    # ------------------------------------------------------------ recharges

    def recharge(self, recharge_id: str, amount: int) -> dict[str, Any]:
        if wallet_repo.get_recharge(self.conn, self.program_id, recharge_id) is not None:
            raise conflict(
                WalletError.RECHARGE_ID_REUSED,
                f"recharge {recharge_id} was already recorded",
                field="data.recharge_id",
            )
        doc = self.config.document.wallet
        tiers = [
            dw.RechargeBonus(b.min_fen, b.bonus_fen, b.starts_at, b.ends_at)
            for b in doc.recharge_bonuses
        ]
        bonus = dw.bonus_for(tiers, amount, self.at)
        wallet_repo.insert_recharge(
            self.conn,
            {
                "program_id": self.program_id,
                "recharge_id": recharge_id,
                "member_id": self.member_id,
                "principal": amount,
                "bonus": bonus,
                "refunded": 0,
                "bonus_taken_back": 0,
                "recharged_at": self.at,
            },
        )
        legs = [("member", "principal", amount), (CASH, "total", -amount)]
        if bonus:
            legs += [("member", "bonus", bonus), (BONUS_ISSUED, "total", -bonus)]
        zh = f"充值 ¥{amount / 100:.2f}" + (f"，赠送 ¥{bonus / 100:.2f}" if bonus else "")
        en = f"recharge ¥{amount / 100:.2f}" + (f", bonus ¥{bonus / 100:.2f}" if bonus else "")
        self.post(
            "recharge",
            f"recharge:{recharge_id}",
            legs,
            zh=zh,
            en=en,
            ref_id=recharge_id,
            recharged=amount,
        )
        return {
            "kind": "wallet.recharged",
            "program_id": self.program_id,
            "principal": amount,
            "bonus": bonus,
        }

    def refund_recharge(self, recharge_id: str, refund_id: str, amount: int) -> dict[str, Any]:
        row = wallet_repo.get_recharge(self.conn, self.program_id, recharge_id)
        if row is None:
            raise not_found(WalletError.RECHARGE_NOT_FOUND, f"no recharge {recharge_id!r}")
        if amount > row.principal - row.refunded:
            raise conflict(
                WalletError.REFUND_EXCEEDS,
                f"at most {row.principal - row.refunded} fen of this recharge remain",
                field="data.amount",
            )
        if amount > self.principal:
            raise conflict(
                WalletError.INSUFFICIENT_BALANCE,
                f"the wallet holds {self.principal} fen of principal",
                field="data.amount",
            )
        due = dw.recharge_bonus_due(
            int(row.bonus),
            int(row.bonus_taken_back),
            int(row.refunded) + amount,
            int(row.principal),
        )
        from_bonus = min(due, self.bonus)
        shortfall = due - from_bonus  # bonus already spent: kept back from the payout
        if shortfall > amount:
            raise conflict(
                WalletError.INSUFFICIENT_BALANCE,
                "the bonus this recharge brought was spent beyond what its refund can cover",
                field="data.amount",
            )
        payout = amount - shortfall
        legs = [
            ("member", "principal", -amount),
            (CASH, "total", payout),
            ("member", "bonus", -from_bonus),
            (BONUS_ISSUED, "total", due),
        ]
        txn = self.post(
            "recharge_refund",
            f"recharge_refund:{refund_id}",
            legs,
            zh=f"充值退款 {recharge_id}，退回 ¥{payout / 100:.2f}",
            en=f"recharge {recharge_id} refunded: ¥{payout / 100:.2f} paid out",
            ref_id=recharge_id,
            recharged=-amount,
        )
        if txn is None:
            raise conflict(
                WalletError.RECHARGE_ID_REUSED,
                f"refund {refund_id} already recorded",
                field="data.refund_id",
            )
        wallet_repo.update_recharge(
            self.conn,
            self.program_id,
            recharge_id,
            {
                "refunded": int(row.refunded) + amount,
                "bonus_taken_back": int(row.bonus_taken_back) + due,
            },
        )
        return {
            "kind": "wallet.recharge_refunded",
            "program_id": self.program_id,
            "principal": amount,
            "bonus_taken_back": due,
            "paid_out": payout,
            "refunded_total": int(row.refunded) + amount,
            "recharged": int(row.principal),
        }

    # ------------------------------------------------------------ spending

    def pay(self, payment_id: str, amount: int, order_id: str | None) -> dict[str, Any]:
        if amount > self.principal + self.bonus:
            raise conflict(
                WalletError.INSUFFICIENT_BALANCE,
                f"{amount} fen needed, {self.principal + self.bonus} in the wallet",
                field="amount",
            )
        bonus_first = self.config.document.wallet.spend_order == "bonus_first"
        principal, bonus = dw.split_spend(self.principal, self.bonus, amount, bonus_first)
        wallet_repo.insert_payment(
            self.conn,
            {
                "program_id": self.program_id,
                "payment_id": payment_id,
                "member_id": self.member_id,
                "order_id": order_id,
                "principal": principal,
                "bonus": bonus,
                "refunded_principal": 0,
                "refunded_bonus": 0,
                "paid_at": self.at,
            },
        )
        legs = [
            ("member", "principal", -principal),
            ("member", "bonus", -bonus),
            (SPENT, "total", amount),
        ]
        self.post(
            "spend",
            f"spend:{payment_id}",
            legs,
            zh=f"余额支付 ¥{amount / 100:.2f}",
            en=f"paid ¥{amount / 100:.2f} from the wallet",
            ref_id=payment_id,
            order_id=order_id,
        )
        return {
            "payment_id": payment_id,
            "principal": principal,
            "bonus": bonus,
            "balance": self.balance,
        }

    def refund_payment(self, payment_id: str, refund_id: str, amount: int) -> dict[str, Any]:
        row = wallet_repo.get_payment(self.conn, self.program_id, payment_id)
        if row is None or row.member_id != self.member_id:
            raise not_found(WalletError.PAYMENT_NOT_FOUND, f"no wallet payment {payment_id!r}")
        left = row.principal + row.bonus - row.refunded_principal - row.refunded_bonus
        if amount > left:
            raise conflict(
                WalletError.REFUND_EXCEEDS, f"at most {left} fen remain refundable", field="amount"
            )
        principal, bonus = dw.spend_refund_split(
            int(row.principal),
            int(row.bonus),
            int(row.refunded_principal),
            int(row.refunded_bonus),
            amount,
        )
        legs = [
            ("member", "principal", principal),
            ("member", "bonus", bonus),
            (SPENT, "total", -amount),
        ]
        txn = self.post(
            "spend_refund",
            f"spend_refund:{refund_id}",
            legs,
            zh=f"余额支付退款 ¥{amount / 100:.2f}",
            en=f"wallet payment refunded: ¥{amount / 100:.2f}",
            ref_id=payment_id,
            order_id=row.order_id,
        )
        if txn is None:
            raise conflict(
                WalletError.REFUND_ID_REUSED, f"refund {refund_id} already recorded", field="id"
            )
        wallet_repo.update_payment(
            self.conn,
            self.program_id,
            payment_id,
            {
                "refunded_principal": int(row.refunded_principal) + principal,
                "refunded_bonus": int(row.refunded_bonus) + bonus,
            },
        )
        return {
            "payment_id": payment_id,
            "refund_id": refund_id,
            "principal": principal,
            "bonus": bonus,
            "balance": self.balance,
        }


def wallet_program(svc: Services, conn: Connection, store_id: str | None) -> str:
    """An event's program: its store's own program if it runs one, else the platform's."""
    own = store_program(svc, conn, store_id) if store_id is not None else None
    return own or PLATFORM_PROGRAM


def open_book(
    svc: Services, conn: Connection, program_id: str, member_id: str, at: datetime, actor: str
) -> WalletBook:
    return WalletBook(svc, conn, svc.configs.at(conn, program_id, at), member_id, at, actor)


# ---------------------------------------------------------------- API use cases


def pay(
    svc: Services,
    who: Principal,
    member_id: str,
    payment_id: str,
    amount: int,
    order_id: str | None,
    program_id: str | None,
) -> dict[str, Any]:
    """Pay from the wallet; the payment id makes it idempotent."""
    who.require(Scope.WRITE)
    with svc.uow() as tx:
        conn = tx.conn
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id, lock=True)
        book = open_book(svc, conn, program, member_id, svc.now(), who.actor)
        existing = wallet_repo.get_payment(conn, program, payment_id)
        if existing is not None:
            if (existing.member_id, existing.principal + existing.bonus, existing.order_id) != (
                member_id,
                amount,
                order_id,
            ):
                raise conflict(
                    WalletError.PAYMENT_ID_REUSED, "payment id used for another payment", field="id"
                )
            return {
                "payment_id": payment_id,
                "principal": int(existing.principal),
                "bonus": int(existing.bonus),
                "balance": book.balance,
                "replayed": True,
            }
        result = book.pay(payment_id, amount, order_id) | {"replayed": False}
        tx.commit()
    return result


def refund_payment(
    svc: Services,
    who: Principal,
    member_id: str,
    payment_id: str,
    refund_id: str,
    amount: int,
    program_id: str | None,
) -> dict[str, Any]:
    who.require(Scope.WRITE)
    with svc.uow() as tx:
        conn = tx.conn
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id, lock=True)
        book = open_book(svc, conn, program, member_id, svc.now(), who.actor)
        done = wallet_repo.find_txn(conn, program, f"spend_refund:{refund_id}")
        if done is not None:
            if done.ref_id != payment_id or done.principal + done.bonus != amount:
                raise conflict(
                    WalletError.REFUND_ID_REUSED, "refund id used for another refund", field="id"
                )
            return {
                "payment_id": payment_id,
                "refund_id": refund_id,
                "principal": int(done.principal),
                "bonus": int(done.bonus),
                "balance": book.balance,
                "replayed": True,
            }
        result = book.refund_payment(payment_id, refund_id, amount) | {"replayed": False}
        tx.commit()
    return result


def summary(
    svc: Services,
    who: Principal,
    member_id: str,
    program_id: str | None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    who.require(Scope.READ)
    with svc.engine.connect() as conn:
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id)
        if as_of is not None:
            rows = conn.execute(
                select(wallet_entries.c.bucket, func.sum(wallet_entries.c.amount))
                .where(
                    wallet_entries.c.program_id == program,
                    wallet_entries.c.member_id == member_id,
                    wallet_entries.c.occurred_at <= past_instant(as_of, svc.now()),
                )
                .group_by(wallet_entries.c.bucket)
            ).all()
            sums = {b: int(t) for b, t in rows}
            principal, bonus = sums.get("principal", 0), sums.get("bonus", 0)
            return {
                "member_id": member_id,
                "program_id": program,
                "as_of": as_of.isoformat(),
                "principal": principal,
                "bonus": bonus,
                "total": principal + bonus,
            }
        row = wallet_repo.get_account(conn, program, member_id)
    principal = int(row.principal) if row else 0
    bonus = int(row.bonus) if row else 0
    return {
        "member_id": member_id,
        "program_id": program,
        "principal": principal,
        "bonus": bonus,
        "total": principal + bonus,
        "recharged_total": int(row.recharged_total) if row else 0,
    }


def entries(
    svc: Services,
    who: Principal,
    member_id: str,
    program_id: str | None,
    *,
    before_id: int | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    page = history_page(
        svc, who, member_id, program_id, wallet_txns, before_id=before_id, limit=limit
    )
    items = [
        {
            "id": r.id,
            "kind": r.kind,
            "occurred_at": r.occurred_at.isoformat(),
            "principal": int(r.principal),
            "bonus": int(r.bonus),
            "ref_id": r.ref_id,
            "order_id": r.order_id,
            "reason": {"zh": r.reason_zh, "en": r.reason_en},
            "actor": r.actor,
        }
        for r in page.rows
    ]
    return {
        "member_id": member_id,
        "program_id": page.program_id,
        "entries": items,
        "next_before_id": next_before_id(items, limit),
    }
