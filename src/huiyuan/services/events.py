"""Event ingestion: the one write path for everything a platform tells Huiyuan.

``ingest_event`` applies one event, ``ingest_batch`` many in one transaction (two on
PostgreSQL when other transactions hold some of their members); both validate first (a
malformed event is refused with every problem named and nothing written), then apply with
``event_apply`` (inbox claim, member lock, deferral, the type's handler, release of the events
that waited). On PostgreSQL a single event goes through group commit (``group_commit``): it is
queued durably and applied together with the events that other requests sent at the same
moment, each still getting its own outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from huiyuan.db import bulk_repo, events_repo, queue_repo
from huiyuan.db.uow import is_disconnect, is_retryable_or_disconnect, run_with_retry
from huiyuan.domain.errors import DomainError, EventError, forbidden, not_found
from huiyuan.schemas.events import OrderPaid
from huiyuan.schemas.problems import problem, problem_from_error, validation_problem
from huiyuan.schemas.validation import EventInvalid, ValidEvent, parse_event
from huiyuan.services import group_commit
from huiyuan.services.context import Services
from huiyuan.services.event_apply import (
    DEFERRED,
    EventOutcome,
    apply_events,
    apply_or_refuse,
    error_status,
)
from huiyuan.services.event_handlers import check_items_add_up, describe_waiting
from huiyuan.services.principals import Principal, Scope

__all__ = ["DEFERRED", "EventOutcome", "ingest_batch", "ingest_event"]


def ingest_event(
    svc: Services, principal: Principal, raw: Any, *, wait: bool = True
) -> EventOutcome:
    """Validate and apply one event: in its own transaction, or on PostgreSQL together with
    the events of concurrent requests (group commit). ``wait=False`` (``Prefer:
    respond-async``) may answer ``queued`` once the event is durable, before it is applied;
    without group commit it is applied at once all the same."""
    checked = _validate(svc, principal, raw)
    if isinstance(checked, EventOutcome):
        return checked
    if group_commit.enabled(svc):
        return run_with_retry(
            lambda: group_commit.ingest(svc, principal.owner_id, checked, wait=wait),
            attempts=3,
            when=is_disconnect,  # the rest is retried inside, on the request's own connection
        )

    def attempt() -> EventOutcome:
        with svc.uow() as tx:
            outcome = apply_or_refuse(tx, svc, principal.owner_id, checked)
            tx.commit()  # a refusal has been undone already
            return outcome

    return run_with_retry(attempt, when=is_retryable_or_disconnect)


def ingest_batch(svc: Services, principal: Principal, raws: list[Any]) -> list[EventOutcome]:
    """Apply many events (``event_apply.apply_events``); each gets its own outcome and a
    refused one is undone alone.

    On SQLite, one transaction. On PostgreSQL, the first transaction takes the members no
    other transaction holds, without waiting, and applies their events; the events of the
    busy members (another batch or request holds them) follow in a second transaction, which
    waits for them. Two batches sharing a few members thus run side by side instead of one
    after the other. A member's events all go in the same transaction, in order; a failure
    between the two leaves the first committed, and a resend of the batch replays it."""
    checked = [_validate(svc, principal, raw) for raw in raws]
    pg = svc.engine.dialect.name == "postgresql"
    outcomes = _apply_batch(svc, principal, checked, wait=not pg)
    if any(o is None for o in outcomes):
        later: list[ValidEvent | EventOutcome] = [
            c if o is None else o for c, o in zip(checked, outcomes, strict=True)
        ]
        outcomes = _apply_batch(svc, principal, later, wait=True)
    return [o for o in outcomes if o is not None]


def _apply_batch(
    svc: Services, principal: Principal, checked: list[ValidEvent | EventOutcome], *, wait: bool
) -> list[EventOutcome | None]:
    """One transaction. ``wait=False`` leaves out the events of busy members (``None`` in
    their places)."""

    def attempt() -> list[EventOutcome | None]:
        with svc.uow() as tx:
            busy: set[str] = set()
            if not wait:
                members = {c.member_id for c in checked if isinstance(c, ValidEvent)}
                locked, busy = bulk_repo.lock_free_members(tx.conn, members)
                tx.locked_members |= locked
            todo = [c for c in checked if not _of(c, busy)]
            done = iter(apply_events(tx, svc, principal.owner_id, todo))
            tx.commit()
        return [None if _of(c, busy) else next(done) for c in checked]

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
        return ValidEvent(envelope, event.data, event.body_hash)
    if event.store_id != principal.owner_id:
        raise forbidden(
            EventError.STORE_NOT_ALLOWED,
            "a store's API key may only send events of that store",
            field="store_id",
        )
    return event
