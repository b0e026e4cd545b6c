"""Results, progress lines and the final table.

Every result is a ratio against a baseline measured in the same run on the same machine, so the
numbers travel between machines; the absolute figures are printed only to explain the ratio.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    benchmark: str
    measured: float
    unit: str
    baseline: float
    baseline_label: str
    target: float  # on the ratio
    higher_is_better: bool = True  # False: the ratio is a time ratio ("within 1.5×")
    notes: list[str] = field(default_factory=list)
    disturbed: bool = False  # other processes took CPU, or the CPU's speed drifted (notes)

    @property
    def ratio(self) -> float:
        return self.measured / self.baseline if self.baseline else float("nan")

    @property
    def met(self) -> bool:
        if self.higher_is_better:
            return self.ratio >= self.target
        return self.ratio <= self.target

    @property
    def target_text(self) -> str:
        return f"{'≥' if self.higher_is_better else '≤'} {self.target:.2f}×"


def say(message: str) -> None:
    """A progress line, flushed at once (the benchmarks run for a while)."""
    print(message, flush=True)


class Ticker:
    """Prints a progress line at most every ``every`` seconds."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self._last = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            return True
        return False


def _number(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "ms":
        return f"{value:,.1f} ms"
    return f"{value:,.0f} {unit}"


def table(results: list[Result]) -> str:
    headers = ("benchmark", "measured", "baseline", "ratio", "target", "met?")
    rows = [
        (
            r.benchmark,
            _number(r.measured, r.unit),
            f"{_number(r.baseline, r.unit)} ({r.baseline_label})",
            f"{r.ratio:.2f}×",
            r.target_text,
            ("yes" if r.met else "NO") + (" (disturbed)" if r.disturbed else ""),
        )
        for r in results
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    notes = [f"  {r.benchmark}: {n}" for r in results for n in r.notes]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def print_table(results: list[Result]) -> None:
    say("")
    say(table(results))
    sys.stdout.flush()
