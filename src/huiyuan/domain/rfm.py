"""RFM scoring: Recency, Frequency and Monetary into five bands each, and the growth change a
score earns (``weight × (score − 3)`` per dimension: average members neither gain nor lose).

Band edges are four ascending numbers; a value above the k-th edge scores k + 1. Without
configured edges the population's quintiles are used. Recency counts days since the last
order, so fewer days score higher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scores:
    r: int
    f: int
    m: int


def quantile_edges(values: Sequence[int]) -> list[int]:
    """Four edges splitting ``values`` into quintiles (nearest-rank)."""
    if not values:
        return [0, 0, 0, 0]
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[min(n - 1, (n * k) // 5)] for k in (1, 2, 3, 4)]


def band(value: int, edges: Sequence[int], *, lower_is_better: bool = False) -> int:
    """1–5: one plus the number of edges ``value`` is above (reversed where lower is better)."""
    above = sum(1 for edge in edges if value > edge)
    return 5 - above if lower_is_better else 1 + above


def growth_change(scores: Scores, weights: Mapping[str, int]) -> int:
    return (
        weights.get("r", 0) * (scores.r - 3)
        + weights.get("f", 0) * (scores.f - 3)
        + weights.get("m", 0) * (scores.m - 3)
    )
