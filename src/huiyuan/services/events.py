"""Event ingestion: the one write path for everything a platform tells Huiyuan.

``ingest_event`` applies one event, ``ingest_batch`` many in one transaction (two on
PostgreSQL when other transactions hold some of their members); both validate first (a
malformed event is refused with every problem named and nothing written), then apply with
``event_apply`` (inbox claim, member lock, deferral, the type's handler, release of the events
that waited). A single event goes through group commit: it is applied together with the events
that other requests sent at the same moment, each still getting its own outcome — gathered in
memory among the requests of its process (``combiner``), or on PostgreSQL, for a request that
does not wait for its outcome, queued durably in the database (``group_commit``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from huiyuan.config import WaitingGroup
from huiyuan.db import bulk_repo, events_repo, queue_repo
from huiyuan.db.uow import is_disconnect, is_retryable_or_disconnect, run_with_retry
from huiyuan.domain.errors import DomainError, EventError, forbidden, not_found
from huiyuan.schemas.events import OrderPaid
from huiyuan.schemas.problems import problem, problem_from_error, validation_problem
from huiyuan.schemas.validation import EventInvalid, ValidEvent, parse_event
from huiyuan.services import group_commit
from huiyuan.services.combiner import BatchFailed
from huiyuan.services.context import Services
from huiyuan.services.event_apply import (
    DEFERRED,
    EventOutcome,
    apply_events_of,
    apply_or_refuse,
    error_status,
)
from huiyuan.services.event_handlers import check_items_add_up, describe_waiting
from huiyuan.services.principals import Principal, Scope

__all__ = ["DEFERRED", "EventOutcome", "ingest_batch", "ingest_event"]

_Item = tuple[str, ValidEvent | EventOutcome]  # (sender, the event or its outcome already)


def ingest_event(
    svc: Services, principal: Principal, raw: Any, *, wait: bool = True
) -> EventOutcome:
    """Validate and apply one event together with the events of concurrent requests (group
    commit): those of the same process, gathered in memory (``combiner``; also on SQLite), or
    on PostgreSQL — ``wait=False``, or ``HUIYUAN_GROUP_COMMIT_WAITING=queue`` — those of every
    process, through the event queue (``group_commit``). ``wait=False`` (``Prefer:
    respond-async``) may then answer ``queued`` once the event is durable, before it is applied;
    elsewhere it is applied at once all the same. With group commit off, each event is applied
    in its own transaction."""
    checked = _validate(svc, principal, raw)
    if isinstance(checked, EventOutcome):
        return checked
    settings = svc.settings
    if group_commit.enabled(svc) and (
        not wait or settings.group_commit_waiting is WaitingGroup.QUEUE
    ):
        return run_with_retry(
            lambda: group_commit.ingest(svc, principal.owner_id, checked, wait=wait),
            attempts=3,
            when=is_disconnect,  # the rest is retried inside, on the request's own connection
        )
    if settings.group_commit:
        try:
            outcome: EventOutcome = svc.combiner.submit(
                (principal.owner_id, checked),
                lambda items, deliver: _apply_in_two(svc, items, deliver),
                settings.group_commit_batch,
            )
            return outcome
        except BatchFailed:  # logged once, by the batch's leader
            pass
    return _apply_alone(svc, principal.owner_id, checked)


def _apply_alone(svc: Services, sender: str, event: ValidEvent) -> EventOutcome:
    def attempt() -> EventOutcome:
        with svc.uow(generic_plans=True) as tx:
            outcome = apply_or_refuse(tx, svc, sender, event)
            tx.commit()  # a refusal has been undone already
            return outcome

    return run_with_retry(attempt, when=is_retryable_or_disconnect)


def ingest_batch(svc: Services, principal: Principal, raws: list[Any]) -> list[EventOutcome]:
    """Apply many events (``event_apply.apply_events``); each gets its own outcome and a
    refused one is undone alone (``_apply_in_two``)."""
    checked = [_validate(svc, principal, raw) for raw in raws]
    return _apply_in_two(svc, [(principal.owner_id, c) for c in checked])


def _apply_in_two(
    svc: Services,
    items: list[_Item],
    deliver: Callable[[int, EventOutcome], None] | None = None,
) -> list[EventOutcome]:
    """Apply events of one or more senders, each getting its own outcome (``deliver``: told
    those of the first transaction once it is committed, when a second one follows).

    On SQLite, one transaction. On PostgreSQL, the first transaction takes the members no
    other transaction holds, without waiting, and applies their events; the events of the
    busy members (another batch or request holds them) follow in a second transaction, which
    waits for them. Two batches sharing a few members thus run side by side instead of one
    after the other. A member's events all go in the same transaction, in order; a failure
    between the two leaves the first committed, and a resend of the batch replays it."""
    pg = svc.engine.dialect.name == "postgresql"
    outcomes = _apply_batch(svc, items, wait=not pg)
    if any(o is None for o in outcomes):
        if deliver is not None:  # committed: their requests need not wait for the busy members
            for index, outcome in enumerate(outcomes):
                if outcome is not None:
                    deliver(index, outcome)
        later: list[_Item] = [
            item if o is None else (item[0], o) for item, o in zip(items, outcomes, strict=True)
        ]
        outcomes = _apply_batch(svc, later, wait=True)
    return [o for o in outcomes if o is not None]


def _apply_batch(svc: Services, items: list[_Item], *, wait: bool) -> list[EventOutcome | None]:
    """One transaction. ``wait=False`` leaves out the events of busy members (``None`` in
    their places). Each sender's events are applied with its identity."""

    def attempt() -> list[EventOutcome | None]:
        with svc.uow(generic_plans=True) as tx:
            busy: set[str] = set()
            if not wait:
                members = {c.member_id for _, c in items if isinstance(c, ValidEvent)}
                locked, busy = bulk_repo.lock_free_members(tx.conn, members)
                tx.locked_members |= locked
            todo = [index for index, (_, item) in enumerate(items) if not _of(item, busy)]
            applied = apply_events_of(tx, svc, [items[index] for index in todo])
            tx.commit()
        done = dict(zip(todo, applied, strict=True))
        return [done.get(index) for index in range(len(items))]

    return run_with_retry(attempt, when=is_retryable_or_disconnect)


def _of(item: ValidEvent | EventOutcome, members: set[str]) -> bool:
    return isinstance(item, ValidEvent) and item.member_id in members


def event_status(svc: Services, principal: Principal, event_id: str) -> dict[str, Any]:
    principal.require(Scope.WRITE)
    with svc.engine.connect() as conn:
        row = events_repo.get_event(conn, principal.owner_id, event_id)
        waiting = None if row is not None else queue_repo.find(conn, principal.owner_id, event_id)
        kept = None
        if row is None and waiting is None:
            kept = queue_repo.find_outcome(conn, principal.owner_id, event_id)
    if kept is not None:  # sent without waiting, and refused or failed when applied
        return _not_stored(kept, kept.received_at, kept.status, kept.body)
    if waiting is not None:
        if waiting.status == "done":  # refused or failed, its requester yet to collect it
            return _not_stored(
                waiting, waiting.queued_at, waiting.outcome_status, waiting.outcome_body
            )
        return _not_stored(waiting, waiting.queued_at)  # queued, or solo: still to be applied
    if row is None:
        raise not_found(EventError.EVENT_NOT_FOUND, f"no event {event_id!r} from this sender")
    return {
        "id": row.event_id,
        "type": row.type,
        "member_id": row.member_id,
        "status": row.status,
        "waiting_on": row.waiting_on,
        "received_at": row.received_at.isoformat(),
        "applied_at": row.applied_at.isoformat() if row.applied_at else None,
        "first_response": {"status": row.response_status, "body": row.response_body},
        "result": row.result if row.result is not None else row.response_body,
    }


def _not_stored(
    event: Any, received_at: datetime, status: int | None = None, body: Any = None
) -> dict[str, Any]:
    """The status of an event the inbox does not hold: ``queued`` (no outcome yet), or
    ``rejected`` (4xx, the event's fault) or ``failed`` (5xx, Huiyuan's: send it again) —
    nothing of a refused event is stored."""
    state = "queued" if status is None else "failed" if status >= 500 else "rejected"
    return {
        "id": event.event_id,
        "type": event.type,
        "member_id": event.member_id,
        "status": state,
        "waiting_on": None,
        "received_at": received_at.isoformat(),
        "applied_at": None,
        "first_response": None if status is None else {"status": status, "body": body},
        "result": body,
    }


def expire_deferred(svc: Services, limit: int = 1000) -> int:
    """Reject deferred events whose cause has not arrived within the configured time."""
    cutoff = svc.now() - timedelta(hours=svc.settings.deferred_event_ttl_hours)
    with svc.uow() as tx:
        rows = events_repo.deferred_before(tx.conn, cutoff, limit)
        for row in rows:
            body = problem(
                409,
                EventError.CAUSE_NEVER_ARRIVED,
                f"gave up waiting for {describe_waiting(row.waiting_on)}",
            )
            events_repo.settle_event(tx.conn, row.sender, row.event_id, "rejected", body)
        tx.commit()
    return len(rows)


# ---------------------------------------------------------------- before the transaction


def _validate(svc: Services, principal: Principal, raw: Any) -> ValidEvent | EventOutcome:
    try:
        principal.require(Scope.WRITE)
        event = parse_event(raw, svc.now())
        if isinstance(event.data, OrderPaid):  # needs nothing stored: refuse before queueing
            check_items_add_up(event.data)
        return _with_store(principal, event)
    except EventInvalid as error:
        return EventOutcome(422, validation_problem(error.problems))
    except DomainError as error:
        return EventOutcome(error_status(error), problem_from_error(error))


def _with_store(principal: Principal, event: ValidEvent) -> ValidEvent:
    """A store's key speaks only for that store; its events default to it."""
    if principal.is_platform:
        return event
    if event.store_id is None:
        envelope = event.envelope.model_copy(update={"store_id": principal.owner_id})
        return ValidEvent.of(envelope, event.data, event.body_hash)
    if event.store_id != principal.owner_id:
        raise forbidden(
            EventError.STORE_NOT_ALLOWED,
            "a store's API key may only send events of that store",
            field="store_id",
        )
    return event
