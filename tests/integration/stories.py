"""Running the ledgers' Hypothesis state machines: random stories of one member, each checked
against a model after every step (``test_points_state_machine``, ``test_wallet_state_machine``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test


def stories_wanted(db_url: str) -> int:
    """How many stories to tell: 50 on SQLite and 20 on PostgreSQL in ``make test``; a longer
    hunt sets ``HUIYUAN_STATEFUL_EXAMPLES`` (the README)."""
    default = 50 if db_url.startswith("sqlite") else 20
    return int(os.environ.get("HUIYUAN_STATEFUL_EXAMPLES", default))


def tell(machine: type[RuleBasedStateMachine], stories: int, steps: int) -> None:
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=stories,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


class PastAnswers:
    """Answers about instants a story has passed, which must never change: whatever happens
    later is dated later (a story sends every event at the clock's time). ``check`` records
    the instant it is called at; once the clock has moved past an instant, asks ``ask`` about
    it (the last ``window`` of them, after every step) and fails if the answer is not what it
    was the first time."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.first: dict[datetime, Any] = {}

    def check(self, now: datetime, ask: Callable[[datetime], Any]) -> None:
        self.first.setdefault(now, None)
        for at in sorted(t for t in self.first if t < now)[-self.window :]:
            found = ask(at)
            if self.first[at] is None:
                self.first[at] = found
            else:
                assert found == self.first[at], (
                    f"as of {at.isoformat()}: {self.first[at]} then {found}"
                )
