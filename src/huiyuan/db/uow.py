"""The unit of work: one connection, one transaction, committed once by the service that owns it.

Services receive a ``UnitOfWork`` factory and use it as ``with uow() as tx: ... tx.commit()``.
Leaving the block without ``commit()`` rolls everything back, so a failure half-way writes
nothing. ``run_with_retry`` repeats a whole unit of work when PostgreSQL reports a deadlock, a
serialization failure or a unique violation, which concurrent writers can cause and which is
always safe to retry — and, where asked (idempotent work), when the connection was dead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from huiyuan.db import driver

T = TypeVar("T")

# serialization_failure, deadlock_detected, and unique_violation: two transactions that both
# found a key free (two payments of one order) — on retry the loser sees the winner's row and
# refuses with its proper error instead of failing.
_RETRYABLE_SQLSTATES = {"40001", "40P01", "23505"}

_EVENT_PLANS = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true) AS plans, "
    "set_config('enable_seqscan', 'off', true) AS scans"
)


class UnitOfWork:
    """``UnitOfWork(engine)`` checks a connection out for the block; ``UnitOfWork(engine,
    conn)`` runs the transaction on a connection the caller holds (and keeps).

    ``generic_plans=True`` (the event path; PostgreSQL): plan each prepared statement of the
    transaction once per connection (a generic plan), not at each execution. The event path's
    statements take their lists as arrays (``bulk_repo._keyed``), which make the planner's default
    choice re-plan them every time: a fifth of the backend's time, by ``perf``; planning once
    cut the backend's CPU by 21–45% for batches of one to four events (``bench/README.md``).
    Its statements look rows up by key, where the generic plan is the custom one — provided
    the planner keeps to the keys: not knowing how long an array is, it counts ten rows, and
    against a table of up to some 2,500 rows (the balances of a new or small installation) ten
    probes of the key cost it more than reading the whole table, so every single event read
    all the balances twice (2,000 of them: 0.6 of a 1.6 ms backend's CPU per event). With
    sequential scans off the planner takes the keys whatever the table's size; a statement
    with no index to use still reads the table. The settings end with the transaction
    (``set_config(…, true)``, as ``SET LOCAL``)."""

    def __init__(
        self, engine: Engine, conn: Connection | None = None, *, generic_plans: bool = False
    ) -> None:
        self.engine = engine
        self._borrowed = conn
        self._generic_plans = generic_plans
        self._conn: Connection | None = None
        self._committed = False
        # Members whose rows this transaction holds locked (set where a batch locks many at
        # once, so that it does not ask for them again).
        self.locked_members: set[str] = set()

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside its 'with' block")
        return self._conn

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __enter__(self) -> UnitOfWork:
        self._conn = self._borrowed if self._borrowed is not None else self.engine.connect()
        self._conn.begin()
        self._committed = False
        self.locked_members = set()
        if self._generic_plans and self.dialect == "postgresql":
            try:
                driver.one(self._conn, _EVENT_PLANS, ())
            except BaseException:
                self.__exit__()
                raise
        return self

    def commit(self) -> None:
        self.conn.commit()
        self._committed = True

    def __exit__(self, *exc: object) -> None:
        conn = self.conn
        try:
            if not self._committed:
                conn.rollback()
        finally:
            if self._borrowed is None:
                conn.close()
            self._conn = None

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside undoes only what it wrote."""
        nested = self.conn.begin_nested()
        try:
            yield
        except BaseException:
            nested.rollback()
            raise
        else:
            nested.commit()


def is_retryable(error: BaseException) -> bool:
    if not isinstance(error, DBAPIError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None)
    return sqlstate in _RETRYABLE_SQLSTATES


def is_disconnect(error: BaseException) -> bool:
    """The connection turned out dead (the database restarted, a proxy dropped it). Pooled
    connections are not pinged before use (a round trip per request), so the first use after a
    restart is where a dead one shows; SQLAlchemy then discards every pooled connection made
    before it, and a retry gets a fresh one. Retry only idempotent work on it: the commit may
    have happened (event ingestion is idempotent, by id)."""
    return isinstance(error, DBAPIError) and error.connection_invalidated


def is_retryable_or_disconnect(error: BaseException) -> bool:
    return is_retryable(error) or is_disconnect(error)


def run_with_retry(
    work: Callable[[], T],
    attempts: int = 5,
    when: Callable[[BaseException], bool] | None = None,
) -> T:
    """Run ``work``, again (after a short, growing pause) while it fails with an error
    ``when`` accepts — by default ``is_retryable``."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as error:
            if attempt == attempts or not (when or is_retryable)(error):
                raise
            time.sleep(0.005 * 2**attempt)
    raise AssertionError("unreachable")
