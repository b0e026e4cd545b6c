"""Group commit (PostgreSQL): concurrent single events applied together.

Applied one transaction each, an ``order.paid`` costs about twenty round trips and a commit;
applied many at once (``order_batch``) it costs a fraction of one. So a single event is not
applied by its own request alone:

1. The request writes the validated event to ``event_queue`` and commits: from here on the
   event is durable — if the process dies, the next leader of its partition applies it.
2. If no one leads the event's partition (a session advisory lock; the partition is a hash of
   the member id, so two leaders never share a member), it becomes the *leader*: it takes
   every queued event of the partition, locking their rows (its own and those of requests
   that arrived while the previous leader worked, up to ``group_commit_batch``), applies them
   with ``event_apply.apply_events`` in one transaction, stores each outcome on its queue row,
   commits and lets the lock go.
3. Otherwise, if the running leader took its row, it waits on the row's lock, which the
   leader's commit lets go, and collects its outcome (deleting the row): all the requests of
   a batch wake at once. If its row came too late for that batch, it queues for the
   partition's lock, first come first served; holding it, it collects the outcome a leader
   before it stored, or leads. Each of these steps is one round trip (the ``huiyuan_*``
   functions of migration 0006).

A request gets exactly the outcome it would have got alone: the batch path gives every event
its own outcome and undoes a refused one alone. If a batch fails for a reason of its own (a
bug, not a refusal), each of its events is marked *solo* and applied alone by its requester,
so one bad event cannot fail the others. ``drain`` (``huiyuan events drain``, also in the
nightly jobs) applies what requesters left behind: queued events of a partition with no
leader, solo events, and outcomes nobody collected.
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Row

from huiyuan.db import queue_repo
from huiyuan.db.uow import UnitOfWork, run_with_retry
from huiyuan.schemas.validation import ValidEvent
from huiyuan.services.context import Services
from huiyuan.services.event_apply import (
    EventOutcome,
    apply_events,
    apply_or_refuse,
    stored_event,
)
from huiyuan.services.event_handlers import inbox_row

log = logging.getLogger(__name__)

FORGET_AFTER = timedelta(hours=1)  # outcomes nobody collected
SOLO_AFTER = timedelta(minutes=1)  # solo events whose requester went away


def enabled(svc: Services) -> bool:
    return svc.settings.group_commit and svc.engine.dialect.name == "postgresql"


def partition(member_id: str, parts: int) -> int:
    return zlib.crc32(member_id.encode()) % parts


def ingest(svc: Services, sender: str, event: ValidEvent) -> EventOutcome:
    """Apply one validated event through its partition's leader; see the module docstring."""
    part = partition(event.member_id, svc.settings.group_commit_partitions)
    with _queue_connection(svc) as conn:
        row_id = queue_repo.enqueue(conn, inbox_row(sender, event, svc.now()), part)
        state, outcome = queue_repo.collect(conn, part, row_id)
        while True:
            if outcome is not None:
                return EventOutcome(*outcome)
            if state == "wait":
                state, outcome = queue_repo.lead_or_collect(conn, part, row_id)
                continue
            if state != "lead":  # solo, or applied alone by ``drain`` already: a replay
                return _alone(svc, conn, sender, event, row_id)
            try:
                mine = _lead(svc, conn, part, row_id)
            finally:
                queue_repo.step_down(conn, part)
            if mine is not None:
                return mine
            # Not among the oldest ``group_commit_batch`` events, or the batch failed (its
            # events are solo now): queue again.
            state, outcome = queue_repo.lead_or_collect(conn, part, row_id)


@contextmanager
def _queue_connection(svc: Services) -> Iterator[Connection]:
    """A connection in autocommit mode for the queue's statements. If anything fails while it
    is in use, it is closed rather than returned to the pool: it may hold a partition's session
    lock (a rollback does not let one go), and closing it is the only sure way to free it."""
    with svc.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield conn
        except BaseException:
            conn.invalidate()
            raise


def drain(svc: Services) -> int:
    """Apply what requesters left behind; returns how many events were applied."""
    if not enabled(svc):
        return 0
    count = 0
    with _queue_connection(svc) as conn:
        for part in queue_repo.parts_with_work(conn):
            if not queue_repo.try_lead(conn, part):
                continue  # a leader is at work on it right now
            try:
                while True:
                    applied = _apply_queued(svc, conn, part)[0]
                    count += applied
                    if not applied:
                        break
            except _BatchFailed:
                pass  # its events are solo now: applied alone below
            finally:
                queue_repo.step_down(conn, part)
        now = svc.now()
        while rows := queue_repo.solo_before(conn, now - SOLO_AFTER, 100):
            for row in rows:
                try:
                    _alone(svc, conn, row.sender, stored_event(row), row.id)
                    count += 1
                except Exception:
                    log.exception("event %s/%s failed alone; dropped", row.sender, row.event_id)
                    queue_repo.remove(conn, row.id)
        queue_repo.forget_done(conn, now - FORGET_AFTER)
    return count


# ---------------------------------------------------------------- leading


def _lead(svc: Services, conn: Connection, part: int, mine: int) -> EventOutcome | None:
    """Apply the partition's queued events; the outcome of ``mine`` if it was among them."""
    try:
        return _apply_queued(svc, conn, part, mine)[1]
    except _BatchFailed:
        return None  # every event of the batch, this one included, is now solo


def _apply_queued(
    svc: Services, conn: Connection, part: int, mine: int | None = None
) -> tuple[int, EventOutcome | None]:
    """One batch of the partition's queue in one transaction: (events taken, the outcome of
    ``mine`` — its row is deleted rather than given its outcome)."""
    taken: list[int] = []

    def attempt() -> tuple[int, EventOutcome | None]:
        with _transaction(svc, conn) as tx:
            rows = queue_repo.take(tx.conn, part, svc.settings.group_commit_batch)
            taken[:] = [row.id for row in rows]
            outcomes = _apply_rows(tx, svc, rows)
            own = outcomes.pop(mine, None) if mine is not None else None
            queue_repo.record(
                tx.conn,
                [
                    {"id": row_id, "status": o.status, "body": o.body, "replayed": o.replayed}
                    for row_id, o in outcomes.items()
                ],
                remove=mine if own is not None else None,
            )
            tx.commit()
            return len(rows), own

    try:
        return run_with_retry(attempt)
    except Exception as error:
        # Not a refusal (those are outcomes): something failed the whole batch. Each of its
        # events is applied alone from now on, so that the others do not fail with it.
        log.exception("group commit: a batch of %d events failed; applying each alone", len(taken))
        queue_repo.set_solo(conn, [*taken, *([mine] if mine is not None else [])])
        raise _BatchFailed from error


class _BatchFailed(Exception):
    pass


def _apply_rows(tx: UnitOfWork, svc: Services, rows: Any) -> dict[int, EventOutcome]:
    """Apply queued rows, each sender's with its own identity; outcomes by row id."""
    by_sender: dict[str, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        by_sender[row.sender].append(row)
    outcomes: dict[int, EventOutcome] = {}
    for sender, group in by_sender.items():
        events: list[ValidEvent | EventOutcome] = [stored_event(row) for row in group]
        for row, outcome in zip(group, apply_events(tx, svc, sender, events), strict=True):
            outcomes[row.id] = outcome
    return outcomes


def _alone(
    svc: Services, conn: Connection, sender: str, event: ValidEvent, row_id: int
) -> EventOutcome:
    """Apply one event in its own transaction, as if there were no queue, and remove its row
    in the same transaction."""

    def attempt() -> EventOutcome:
        with _transaction(svc, conn) as tx:
            outcome = apply_or_refuse(tx, svc, sender, event)
            queue_repo.remove(tx.conn, row_id)
            tx.commit()
            return outcome

    return run_with_retry(attempt)


@contextmanager
def _transaction(svc: Services, conn: Connection) -> Iterator[UnitOfWork]:
    """A transaction on the request's own connection, which is otherwise in autocommit mode:
    a request never holds two connections, so a full pool cannot leave a leader waiting for
    one while the requests queued behind it hold them all."""
    conn.commit()  # SQLAlchemy's own marker of the autocommit statements; nothing is sent
    conn.execution_options(isolation_level=conn.default_isolation_level)
    try:
        with UnitOfWork(svc.engine, conn) as tx:
            yield tx
    finally:
        conn.execution_options(isolation_level="AUTOCOMMIT")
