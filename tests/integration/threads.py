"""Real threads released together, for races on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from huiyuan.db import queue_repo


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
