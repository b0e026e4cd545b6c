"""Real threads released together, for races on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from huiyuan.db import queue_repo, tables

from .stored import rows


def all_at_once(work: Callable[[int], Any], count: int) -> list[Any]:
    """Run ``work(i)`` for i in range(count) on as many threads, released together."""
    start = threading.Barrier(count)

    def run(i: int) -> Any:
        start.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


@contextmanager
def leader_at_work(svc: Any) -> Iterator[None]:
    """Hold every group-commit partition's lock from another connection, as a leader at work
    would: single events sent meanwhile stay queued."""
    with svc.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        for part in range(svc.settings.group_commit_partitions):
            queue_repo.try_lead(conn, part)
        try:
            yield
        finally:
            for part in range(svc.settings.group_commit_partitions):
                queue_repo.release(conn, part)


def assert_each_got_its_own(svc: Any, outcomes: list[Any], refused: int) -> None:
    """Concurrent payments ``pay-<i>`` of ¥10 × (i + 1) under 1 point per ¥1: each request got
    the answer for its own event (points for its own amount), and the ``refused`` one (naming
    a store that does not exist) its own error, with nothing of it written."""
    for i, outcome in enumerate(outcomes):
        if i == refused:
            continue
        assert outcome.status == 200, outcome.body
        assert outcome.body["id"] == f"pay-{i}"
        (pending,) = [e for e in outcome.body["effects"] if e["kind"] == "points.pending"]
        assert pending["points"] == 10 * (i + 1)
    assert outcomes[refused].status == 422
    assert outcomes[refused].body["code"] == "unknown_store"
    assert not rows(svc, tables.events, event_id=f"pay-{refused}")
    assert not rows(svc, tables.orders, order_id=f"o{refused}")
