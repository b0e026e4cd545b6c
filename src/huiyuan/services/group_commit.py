"""Group commit through the event queue (PostgreSQL): concurrent single events of every
process applied together.

Applied one transaction each, an ``order.paid`` costs about twenty round trips and a commit;
applied many at once (``order_batch``) it costs a fraction of one. A request that waits for
its outcome is by default combined in memory with its own process's (``events.ingest_event``,
``combiner``); this queue takes the requests that do not wait (``Prefer: respond-async``), and
with ``HUIYUAN_GROUP_COMMIT_WAITING=queue`` the waiting ones too:

1. The request writes the validated event to ``event_queue`` and commits: if the process
   dies from here on, the next leader of its partition applies the event. A request that does
   not wait (below) is answered from that row alone, so its commit waits for the disk; one
   that waits for its outcome does not (migration 0012): it is answered only after a leader's
   durable commit, later in the WAL, which makes the row durable too.
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

A request may also not wait (``Prefer: respond-async``, ``wait=False``): finding a leader at
work, it is answered ``queued`` once its row is committed, and the leader deletes the row with
the batch that applies it (keeping the refusal in ``event_outcomes`` if the event was refused,
for ``HUIYUAN_EVENT_OUTCOME_RETENTION_DAYS``). So that no
such event is left queued, whoever lets a partition's lock go looks once more and leads on if
events are queued and nobody took the lock (``queue_repo.step_down``, and the same inside
``collect``/``lead_or_collect``; migration 0007). A partition further behind than
``group_commit_backlog`` makes such requests wait like the others: back-pressure.

A request gets exactly the outcome it would have got alone: the batch path gives every event
its own outcome and undoes a refused one alone. If a batch fails for a reason of its own (a
bug, not a refusal), each of its events is marked *solo* and applied alone by its requester,
so one bad event cannot fail the others. ``drain`` (``huiyuan events drain``, also in the
nightly jobs, and every few seconds in the API for events queued a while) applies what
requesters left behind: queued events of a partition with no leader, solo events, and
outcomes nobody collected.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import Connection

from huiyuan.db import queue_repo
from huiyuan.db.queue_repo import QueueRow
from huiyuan.db.uow import UnitOfWork, run_with_retry
from huiyuan.domain.errors import EventError
from huiyuan.schemas.problems import problem
from huiyuan.schemas.validation import ValidEvent
from huiyuan.services.context import Services
from huiyuan.services.event_apply import (
    EventOutcome,
    apply_events_of,
    apply_or_refuse,
    queued,
    stored_event,
)
from huiyuan.services.event_handlers import inbox_row

log = logging.getLogger(__name__)

LEAD_ROUNDS = 4  # full batches a leader applies before it lets others queued for the lock in
FORGET_AFTER = timedelta(hours=1)  # outcomes nobody collected
SOLO_AFTER = timedelta(minutes=1)  # solo events whose requester went away


def enabled(svc: Services) -> bool:
    return svc.settings.group_commit and svc.engine.dialect.name == "postgresql"


def partition(member_id: str, parts: int) -> int:
    return zlib.crc32(member_id.encode()) % parts


def ingest(svc: Services, sender: str, event: ValidEvent, *, wait: bool = True) -> EventOutcome:
    """Apply one validated event through its partition's leader; see the module docstring.
    ``wait=False`` answers as soon as the event is durable (``queued``), unless it finds no
    leader at work (it leads, and answers with its outcome) or its partition is further
    behind than ``group_commit_backlog`` (it waits its turn: back-pressure)."""
    part = partition(event.member_id, svc.settings.group_commit_partitions)
    with _queue_connection(svc) as conn:
        row_id, behind, leads = queue_repo.enqueue(
            conn,
            inbox_row(sender, event, svc.now()),
            part,
            waits=wait,
            backlog=svc.settings.group_commit_backlog,
        )
        if wait:
            state, outcome = queue_repo.collect(conn, part, row_id)
        elif leads:
            state, outcome = "lead", None
        elif behind > svc.settings.group_commit_backlog:
            state, outcome = queue_repo.lead_or_collect(conn, part, row_id)
        else:
            return queued(event)  # the leader at work will apply it (see ``_lead``)
        while True:
            if state == "lead":  # holding the partition's lock
                mine = _lead(svc, conn, part, row_id)[0]
                if outcome is not None:  # collected before it had to lead
                    return EventOutcome(*outcome)
                if mine is not None:
                    return mine
                # Not among the events taken, or its batch failed (its events are solo now),
                # or (not waiting) a leader before us applied it: look again.
                state, outcome = queue_repo.lead_or_collect(conn, part, row_id)
                continue
            if outcome is not None:
                return EventOutcome(*outcome)
            if state == "wait":
                state, outcome = queue_repo.lead_or_collect(conn, part, row_id)
                continue
            if state == "gone" and not wait:
                return queued(event)  # a leader applied it, and kept no outcome for us
            # solo, or applied alone by ``drain`` already (a replay)
            return _alone(svc, conn, sender, event, row_id)


@contextmanager
def _queue_connection(svc: Services) -> Iterator[Connection]:
    """A connection in autocommit mode for the queue's statements. If anything fails while it
    is in use, it is closed rather than returned to the pool: it may hold a partition's session
    lock (a rollback does not let one go), and closing it is the only sure way to free it.

    Autocommit is switched on the driver's connection, not through SQLAlchemy's isolation
    level (which sets it at checkout and resets it at checkin, a fifth of a respond-async
    request's CPU); it is switched back before the connection returns to the pool."""
    with svc.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        raw.autocommit = True
        try:
            yield conn
        except BaseException:
            conn.invalidate()
            raise
        else:
            conn.commit()  # ends SQLAlchemy's own marker of the autocommit statements
            raw.autocommit = False


def drain(svc: Services, stale_after: timedelta | None = None) -> int:
    """Apply what requesters left behind; returns how many events were applied.
    ``stale_after``: only partitions holding an event queued longer ago than this (the API's
    sweeper: a younger one will be applied by the requests still coming)."""
    if not enabled(svc):
        return 0
    count = 0
    now = svc.now()
    before = None if stale_after is None else now - stale_after
    with _queue_connection(svc) as conn:
        for part in queue_repo.parts_with_work(conn, before):
            if queue_repo.try_lead(conn, part):  # else a leader is at work on it right now
                count += _lead(svc, conn, part)[1]
        while rows := queue_repo.solo_before(conn, now - SOLO_AFTER, 100):
            count += _apply_alone(svc, conn, list(rows), last_try=True)
        queue_repo.forget_done(conn, now - FORGET_AFTER)
        queue_repo.forget_outcomes(
            conn, now - timedelta(days=svc.settings.event_outcome_retention_days)
        )
    return count


# ---------------------------------------------------------------- leading


def _lead(
    svc: Services, conn: Connection, part: int, mine: int | None = None
) -> tuple[EventOutcome | None, int]:
    """Lead the partition, holding its lock: apply queued batches, then step down. Returns
    the outcome of ``mine`` if it was among them, and how many events were taken."""
    own: EventOutcome | None = None
    count = 0
    while True:
        try:
            own, taken = _lead_rounds(svc, conn, part, mine, own)
        except BaseException:
            queue_repo.release(conn, part)
            raise
        count += taken
        # Requests that do not wait, finding us at work, left their events to us: if any are
        # queued still and nobody took the lock as we let it go, we hold it again: lead on.
        if not queue_repo.step_down(conn, part):
            return own, count


def _lead_rounds(
    svc: Services, conn: Connection, part: int, mine: int | None, own: EventOutcome | None
) -> tuple[EventOutcome | None, int]:
    """A few batches, while the queue is fuller than a batch; then the lock is let go, so
    that requests queued for it (waiting for their outcome) take their turn. A failed batch
    ends the rounds: its events are solo, those nobody waits for applied alone here."""
    count = 0
    for _ in range(LEAD_ROUNDS):
        try:
            taken, found = _apply_queued(svc, conn, part, mine if own is None else None)
        except _BatchFailed as failed:
            count += _apply_alone(svc, conn, failed.unwaited)
            break
        count += taken
        own = own if found is None else found
        if taken < svc.settings.group_commit_batch:
            break
    return own, count


def _apply_alone(
    svc: Services, conn: Connection, rows: list[QueueRow], *, last_try: bool = False
) -> int:
    """Apply each of these solo events alone: those of a failed batch whose requesters did not
    wait (nobody else would apply them soon), or those ``drain`` finds left behind. One that
    fails alone too stays solo for ``drain`` to try once more — or, on its ``last_try``, is
    logged and given a ``500 event_apply_failed`` outcome, kept like a refusal: ``GET
    /v1/events/{id}`` then says ``failed``, and the sender may send it again. Returns
    how many were applied."""
    count = 0
    for row in rows:
        try:
            _alone(svc, conn, row.sender, stored_event(row), row.id)
            count += 1
        except Exception:
            fate = "given up" if last_try else "left to drain"
            log.exception("event %s/%s failed alone; %s", row.sender, row.event_id, fate)
            if last_try:
                queue_repo.fail(conn, row, _failed(row.event_id), svc.now())
    return count


def _failed(event_id: str) -> dict[str, Any]:
    return problem(
        500,
        EventError.APPLY_FAILED,
        f"event {event_id!r} could not be applied, alone or with others (the failure is "
        "logged); nothing of it was stored: send it again",
    )


def _apply_queued(
    svc: Services, conn: Connection, part: int, mine: int | None = None
) -> tuple[int, EventOutcome | None]:
    """One batch of the partition's queue in one transaction: (events taken, the outcome of
    ``mine`` — its row is deleted rather than given its outcome). The rows of requesters that
    do not wait are deleted too; nothing of a refused event is stored, so its refusal is kept
    in ``event_outcomes`` for ``GET /v1/events/{id}`` (see ``drain``)."""
    taken: list[QueueRow] = []

    def attempt() -> tuple[int, EventOutcome | None]:
        with _transaction(svc, conn) as tx:
            rows = queue_repo.take(tx.conn, part, svc.settings.group_commit_batch)
            taken[:] = rows
            if not rows:
                return 0, None
            outcomes = _apply_rows(tx, svc, rows)
            own = outcomes.pop(mine, None) if mine is not None else None
            queue_repo.record(
                tx.conn,
                part,
                max(row.id for row in rows),
                [
                    {"id": row.id, "status": o.status, "body": o.body, "replayed": o.replayed}
                    for row in rows
                    if row.id != mine and row.waits and (o := outcomes.get(row.id)) is not None
                ],
                remove=[row.id for row in rows if row.id == mine or not row.waits],
                settled=[
                    {"id": row.id, "status": o.status, "body": o.body}
                    for row in rows
                    if row.id != mine and not row.waits and not (o := outcomes[row.id]).ok
                ],
                at=svc.now(),
            )
            tx.commit()
            return len(rows), own

    try:
        return run_with_retry(attempt)
    except Exception as error:
        # Not a refusal (those are outcomes): something failed the whole batch. Each of its
        # events is applied alone from now on, so that the others do not fail with it.
        log.exception("group commit: a batch of %d events failed; applying each alone", len(taken))
        queue_repo.set_solo(conn, [*(row.id for row in taken), *([mine] if mine else [])])
        raise _BatchFailed([row for row in taken if not row.waits]) from error


class _BatchFailed(Exception):
    def __init__(self, unwaited: list[QueueRow]) -> None:
        super().__init__(f"a batch failed; {len(unwaited)} of its events have nobody waiting")
        self.unwaited = unwaited


def _apply_rows(tx: UnitOfWork, svc: Services, rows: Any) -> dict[int, EventOutcome]:
    """Apply queued rows, each sender's with its own identity; outcomes by row id."""
    items = [(row.sender, stored_event(row)) for row in rows]
    return {row.id: o for row, o in zip(rows, apply_events_of(tx, svc, items), strict=True)}


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
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    conn.commit()  # SQLAlchemy's own marker of the autocommit statements; nothing is sent
    raw.autocommit = False
    try:
        with UnitOfWork(svc.engine, conn, generic_plans=True) as tx:
            yield tx
    except BaseException:
        # Rolled back; if the connection is broken it cannot be switched, and it is about to
        # be closed anyway (``_queue_connection``): the original error is what matters.
        with contextlib.suppress(psycopg.Error):
            raw.autocommit = True
        raise
    raw.autocommit = True
