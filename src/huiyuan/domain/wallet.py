"""Wallet (余额) rules: recharge bonuses (充500送50), which part a spend draws, and how refunds
return to the parts they came from. Amounts are integer fen.

- A spend draws principal (本金) or bonus (赠送金) first, as the program says.
- A refund of a spend returns to the same parts in proportion, computed on running totals so
  that partial refunds add up exactly to the spend.
- A refund of a recharge returns principal only and takes back the bonus that recharge brought,
  in proportion; bonus the member already spent is deducted from the money paid out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class RechargeBonus:
    min_fen: int
    bonus_fen: int
    starts_at: datetime | None = None
    ends_at: datetime | None = None


def bonus_for(bonuses: Iterable[RechargeBonus], amount: int, at: datetime) -> int:
    """The bonus of the largest tier a recharge of ``amount`` reaches (0 if none)."""
    best = 0
    for tier in bonuses:
        live = (tier.starts_at is None or at >= tier.starts_at) and (
            tier.ends_at is None or at < tier.ends_at
        )
        if live and amount >= tier.min_fen:
            best = max(best, tier.bonus_fen)
    return best


def split_spend(principal: int, bonus: int, amount: int, bonus_first: bool) -> tuple[int, int]:
    """(principal, bonus) a spend of ``amount`` draws; the caller checks the total suffices."""
    if bonus_first:
        from_bonus = min(bonus, amount)
        return amount - from_bonus, from_bonus
    from_principal = min(principal, amount)
    return from_principal, amount - from_principal


def spend_refund_split(
    paid_principal: int,
    paid_bonus: int,
    refunded_principal: int,
    refunded_bonus: int,
    amount: int,
) -> tuple[int, int]:
    """(principal, bonus) a refund of ``amount`` returns, in proportion to how it was paid."""
    paid = paid_principal + paid_bonus
    refunded = refunded_principal + refunded_bonus + amount
    if refunded > paid:
        raise ValueError("refund exceeds the payment")
    target = paid_principal if refunded == paid else paid_principal * refunded // paid
    principal = target - refunded_principal
    bonus = amount - principal
    bonus_left = paid_bonus - refunded_bonus
    if bonus > bonus_left:  # rounding pushed too much to bonus: move it to principal
        principal += bonus - bonus_left
        bonus = bonus_left
    return principal, bonus


def recharge_bonus_due(bonus: int, taken_back: int, refunded_total: int, principal: int) -> int:
    """Bonus still to take back once ``refunded_total`` of a recharge's principal is refunded."""
    target = bonus if refunded_total >= principal else bonus * refunded_total // principal
    return max(target - taken_back, 0)
