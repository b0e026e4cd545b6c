"""Running the ledgers' Hypothesis state machines: random stories of one member, each checked
against a model after every step (``test_points_state_machine``, ``test_wallet_state_machine``).
"""

from __future__ import annotations

import os

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
