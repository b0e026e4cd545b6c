"""Applying events inside a transaction: the part of ingestion that every entry point shares.

For each event:
1. claim ``(sender, id)`` in the inbox — a replay returns the first response, the same id with
   another body is a conflict, and a duplicate in flight waits for the first and then replays;
2. the member's row is locked (events of one member apply one at a time); if a fact the event
   needs has not arrived (a refund before its payment) the event is kept as *deferred* and
   nothing else happens — the deferral and the fact's arrival take one lock on the waiting key,
   so a deferral is never stranded by a cause committing at the same moment;
3. otherwise the member is created and enrolled if need be, the type's handler applies it, and
   the response is stored;
4. deferred events waiting for what this event brought are applied in the same transaction, in
   the order they occurred.
A refused event rolls back whole: its inbox row goes too, so nothing of it is written.

``apply_events`` does this for many events in one transaction (ordinary payments set-based
first, ``order_batch``); the caller owns the transaction and commits it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

from huiyuan.config import AutoEnrollPolicy
from huiyuan.db import events_repo, members_repo
from huiyuan.db.audit_repo import enqueue
from huiyuan.db.uow import UnitOfWork
from huiyuan.domain.errors import DomainError, EventError, conflict, invalid
from huiyuan.schemas.events import Envelope, data_model_for
from huiyuan.schemas.problems import STATUS_OF_KIND, problem_from_error
from huiyuan.schemas.validation import ValidEvent
from huiyuan.services import budgets, order_batch
from huiyuan.services.context import Services
from huiyuan.services.event_handlers import (
    Applied,
    Context,
    describe_waiting,
    handler_for,
    inbox_row,
    member_key,
    missing_prerequisite,
)

APPLIED, DEFERRED, QUEUED = 200, 202, 202


@dataclass(frozen=True, slots=True)
class EventOutcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.status < 400


@dataclass
class _Result:
    status: int
    body: dict[str, Any]
    satisfies: list[str] = field(default_factory=list)

    @property
    def waiting_on(self) -> str | None:
        value = self.body.get("waiting_on")
        return value if isinstance(value, str) else None


def apply_events(
    tx: UnitOfWork, svc: Services, sender: str, checked: list[ValidEvent | EventOutcome]
) -> list[EventOutcome]:
    """Apply the valid events of ``checked`` (the others are already outcomes) in ``tx``; each
    gets its own outcome and a refused one is undone alone (a savepoint each). Members are
    visited in a stable order so two batches lock rows in the same order, while each member's
    events keep the order they were sent in. Ordinary payments of known members are applied
    set-based first (``order_batch``)."""
    order = sorted(
        (i for i, c in enumerate(checked) if isinstance(c, ValidEvent)),
        key=lambda i: _member_of(checked[i]),
    )
    outcomes: list[EventOutcome | None] = [
        c if isinstance(c, EventOutcome) else None for c in checked
    ]
    events = [(i, c) for i in order if isinstance(c := checked[i], ValidEvent)]
    applied = order_batch.apply(tx, svc, sender, events)
    for index, body in applied.bodies.items():
        outcomes[index] = EventOutcome(APPLIED, body)
    rest = [(index, event) for index, event in events if index not in applied.bodies]
    with budgets.many_grants() if len(rest) > 1 else nullcontext():
        for index, event in rest:
            outcomes[index] = apply_or_refuse(tx, svc, sender, event)
    return [o for o in outcomes if o is not None]


def apply_events_of(
    tx: UnitOfWork, svc: Services, items: Sequence[tuple[str, ValidEvent | EventOutcome]]
) -> list[EventOutcome]:
    """``apply_events`` for the events of several senders in ``tx`` (sender, event or outcome
    already): each sender's with its own identity; outcomes in the order of ``items``."""
    by_sender: dict[str, list[int]] = defaultdict(list)
    for index, (sender, _) in enumerate(items):
        by_sender[sender].append(index)
    outcomes: dict[int, EventOutcome] = {}
    for sender, indexes in by_sender.items():
        applied = apply_events(tx, svc, sender, [items[i][1] for i in indexes])
        outcomes.update(zip(indexes, applied, strict=True))
    return [outcomes[index] for index in range(len(items))]


def apply_or_refuse(tx: UnitOfWork, svc: Services, sender: str, event: ValidEvent) -> EventOutcome:
    """Apply one event in a savepoint of ``tx``: a refusal undoes only what the event wrote,
    and becomes its outcome."""
    try:
        with tx.savepoint():
            return apply_event(tx, svc, sender, event)
    except DomainError as error:
        return EventOutcome(error_status(error), problem_from_error(error))


def apply_event(tx: UnitOfWork, svc: Services, sender: str, event: ValidEvent) -> EventOutcome:
    conn = tx.conn
    now = svc.now()
    claimed = events_repo.claim_event(conn, inbox_row(sender, event, now))
    if not claimed:
        return _replay(conn, sender, event)
    _check_store(conn, svc, event.store_id)
    result = _apply_or_defer(conn, svc, sender, event)
    _finish(conn, sender, event.id, result, now)
    _release_waiting(tx, svc, result.satisfies)
    return EventOutcome(result.status, result.body)


def _replay(conn: Connection, sender: str, event: ValidEvent) -> EventOutcome:
    row = events_repo.get_event(conn, sender, event.id)
    assert row is not None
    if row.body_hash != event.body_hash:
        raise conflict(
            EventError.ID_REUSED,
            f"event id {event.id!r} was already used for a different body",
            field="id",
        )
    return EventOutcome(row.response_status, row.response_body, replayed=True)


def _check_store(conn: Connection, svc: Services, store_id: str | None) -> None:
    if store_id is not None and not svc.directory.is_store(conn, store_id):
        raise invalid(EventError.UNKNOWN_STORE, f"no store {store_id!r}", field="store_id")


def _waiting_for(
    conn: Connection, svc: Services, event: ValidEvent, member: Row[Any] | None
) -> str | None:
    waiting = missing_prerequisite(conn, event)
    if (
        waiting is None
        and member is None
        and event.type != "member.registered"
        and svc.settings.auto_enroll is AutoEnrollPolicy.REGISTRATION_ONLY
    ):
        waiting = member_key(event.member_id)
    return waiting


def _apply_or_defer(conn: Connection, svc: Services, sender: str, event: ValidEvent) -> _Result:
    member, enrolled = members_repo.lock_member_with_programs(conn, event.member_id)
    waiting = _waiting_for(conn, svc, event, member)
    locked: set[str] = set()
    while waiting is not None and waiting not in locked:
        # The cause may be committing right now. Under the waiting key's lock (which its
        # satisfier also takes) look again: either the cause is visible now, or the satisfier
        # will find this deferral once it commits. Without this a deferral could be stranded.
        events_repo.lock_waiting_keys(conn, [waiting])
        locked.add(waiting)
        member, enrolled = members_repo.lock_member_with_programs(conn, event.member_id)
        waiting = _waiting_for(conn, svc, event, member)
    if waiting is not None:
        body = _body(event, "deferred")
        body["waiting_on"] = waiting
        body["detail"] = f"kept until {describe_waiting(waiting)} arrives"
        return _Result(DEFERRED, body)

    effects: list[dict[str, Any]] = []
    satisfies: list[str] = []
    if member is None:
        member, created = _create_member(conn, svc, event)
        # A concurrent first event may have created and enrolled the member meanwhile.
        enrolled = members_repo.enrolled_program_ids(conn, event.member_id)
        if created:  # else a concurrent event created the member a moment ago
            effects.append({"kind": "member.created"})
            satisfies.append(member_key(event.member_id))
    effects += _enroll(conn, svc, event, enrolled)
    applied: Applied = handler_for(event.type)(Context(svc, conn, sender, member), event)
    body = _body(event, "applied")
    body["effects"] = effects + applied.effects
    return _Result(APPLIED, body, satisfies + applied.satisfies)


def queued(event: ValidEvent) -> EventOutcome:
    """The answer to a request that did not wait: the event is durable and will be applied in
    a moment; ``GET /v1/events/{id}`` tells its outcome then."""
    body = _body(event, "queued")
    body["detail"] = "queued: applied in a moment; GET /v1/events/{id} tells the outcome"
    return EventOutcome(QUEUED, body)


def _body(event: ValidEvent, status: str) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "member_id": event.member_id,
        "store_id": event.store_id,
        "status": status,
    }


def _create_member(conn: Connection, svc: Services, event: ValidEvent) -> tuple[Row[Any], bool]:
    now = svc.now()
    created = members_repo.create_member(
        conn,
        {
            "member_id": event.member_id,
            "origin": "registered" if event.type == "member.registered" else "auto",
            "addresses": [],
            "invoice_titles": [],
            "created_at": now,
            "updated_at": now,
        },
    )
    member = members_repo.lock_member(conn, event.member_id)
    assert member is not None
    return member, created


def _enroll(
    conn: Connection, svc: Services, event: ValidEvent, have: set[str]
) -> list[dict[str, Any]]:
    """Enroll the member in the platform's programs and, for a store's event, the store's."""
    wanted = svc.programs_of_activity(conn, event.store_id)
    missing = [p for p in wanted if p not in have]
    if not missing:
        return []
    now = svc.now()
    members_repo.enroll(
        conn,
        [
            {
                "member_id": event.member_id,
                "program_id": program_id,
                "enrolled_at": event.occurred_at,
                "source_event_id": event.id,
            }
            for program_id in missing
        ],
    )
    enqueue(
        conn,
        [
            {
                "topic": "member.enrolled",
                "key": event.member_id,
                "payload": {"member_id": event.member_id, "program_id": program_id},
                "created_at": now,
            }
            for program_id in missing
        ],
    )
    return [{"kind": "member.enrolled", "program_id": p} for p in missing]


def _finish(conn: Connection, sender: str, event_id: str, result: _Result, now: datetime) -> None:
    events_repo.finish_event(
        conn,
        sender,
        event_id,
        {
            "status": "deferred" if result.status == DEFERRED else "applied",
            "waiting_on": result.waiting_on,
            "response_status": result.status,
            "response_body": result.body,
            "applied_at": now if result.status == APPLIED else None,
        },
    )


def _release_waiting(tx: UnitOfWork, svc: Services, keys: list[str]) -> None:
    """Apply deferred events whose cause has now arrived; each may release others in turn."""
    conn = tx.conn
    while keys:
        events_repo.lock_waiting_keys(
            conn, keys
        )  # see _apply_or_defer: a deferral in flight is seen
        rows = events_repo.waiting_on(conn, keys)
        keys = []
        for row in rows:
            event = stored_event(row)
            try:
                with tx.savepoint():
                    result = _apply_or_defer(conn, svc, row.sender, event)
                    applied = result.status == APPLIED
                    events_repo.settle_event(
                        conn,
                        row.sender,
                        row.event_id,
                        "applied" if applied else "deferred",
                        result.body,
                        applied_at=svc.now() if applied else None,
                        waiting_on=result.waiting_on,
                    )
                keys += result.satisfies
            except DomainError as error:
                events_repo.settle_event(
                    conn, row.sender, row.event_id, "rejected", problem_from_error(error)
                )


def stored_event(row: Row[Any]) -> ValidEvent:
    envelope = Envelope(
        id=row.event_id,
        type=row.type,
        occurred_at=row.occurred_at,
        member_id=row.member_id,
        store_id=row.store_id,
        data=row.data,
    )
    model = data_model_for(row.type)
    assert model is not None, "only valid events are stored"
    return ValidEvent.of(envelope, model.model_validate(row.data), row.body_hash)


def _member_of(item: ValidEvent | EventOutcome) -> str:
    return item.member_id if isinstance(item, ValidEvent) else ""


def error_status(error: DomainError) -> int:
    return STATUS_OF_KIND[error.kind]
