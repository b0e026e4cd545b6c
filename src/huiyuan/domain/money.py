"""Money as integer fen (分). ``Money(12990)`` is ¥129.90.

A float never becomes money: the constructor refuses it, so a rounding error cannot enter the
ledger through a careless ``amount * 0.9``. Rates are ``Decimal`` and every conversion names its
rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True, order=True, slots=True)
class Money:
    fen: int

    def __post_init__(self) -> None:
        if isinstance(self.fen, bool) or not isinstance(self.fen, int):
            raise TypeError(f"Money takes integer fen, not {type(self.fen).__name__}")

    def __add__(self, other: Money) -> Money:
        return Money(self.fen + _fen(other))

    def __sub__(self, other: Money) -> Money:
        return Money(self.fen - _fen(other))

    def __neg__(self) -> Money:
        return Money(-self.fen)

    def __bool__(self) -> bool:
        return self.fen != 0

    def times(self, rate: Decimal, rounding: str = ROUND_HALF_UP) -> Money:
        """This amount times a rate, rounded to whole fen as stated."""
        if not isinstance(rate, Decimal):
            raise TypeError("rates are Decimal")
        return Money(int((Decimal(self.fen) * rate).to_integral_value(rounding=rounding)))

    def __str__(self) -> str:
        sign = "-" if self.fen < 0 else ""
        yuan, fen = divmod(abs(self.fen), 100)
        return f"{sign}¥{yuan}.{fen:02d}"


def _fen(other: object) -> int:
    if not isinstance(other, Money):
        raise TypeError(f"cannot combine Money with {type(other).__name__}")
    return other.fen


ZERO = Money(0)
