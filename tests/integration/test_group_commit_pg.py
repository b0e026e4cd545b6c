"""Group commit through the event queue on PostgreSQL: concurrent single events of every
process applied together, each with its own outcome, none lost when a request or a batch fails.

Requests sent with ``Prefer: respond-async`` always take this path; those that wait for their
outcome take it with ``HUIYUAN_GROUP_COMMIT_WAITING=queue``, which these tests set (by default
they are combined in their own process: ``test_combiner_pg.py``). Every PostgreSQL test that
sends single events goes through group commit (it is on by default), so the whole suite checks
that it answers as one event per transaction did; these tests check what is particular to it.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from huiyuan.api.app import create_app
from huiyuan.db import queue_repo, tables
from huiyuan.domain.errors import DomainError
from huiyuan.schemas.validation import parse_event
from huiyuan.services import event_apply, group_commit
from huiyuan.services import events as event_service
from huiyuan.services import owners as owner_service
from huiyuan.services.event_handlers import inbox_row
from huiyuan.services.principals import SYSTEM, Principal, Scope

from .bodies import item, paid
from .ledger import BASE_RULE, apply, assert_reconciled, document
from .stored import drop_connections, inbox, row_counts, rows
from .threads import all_at_once, assert_each_got_its_own, leader_at_work

pytestmark = pytest.mark.postgres_only

THREADS = 16


@pytest.fixture
def pg(make_pg: Any) -> Any:
    """Requests that wait for their outcome go through the queue too."""
    return make_pg(group_commit_waiting="queue")


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The event ids of every batch a leader applied."""
    seen: list[list[str]] = []
    original = group_commit._apply_rows

    def spy(tx: Any, svc: Any, rows: Any) -> Any:
        seen.append([row.event_id for row in rows])
        return original(tx, svc, rows)

    monkeypatch.setattr(group_commit, "_apply_rows", spy)
    return seen


def order(n: int, member: str, amount: int) -> dict[str, Any]:
    return paid(f"pay-{n}", f"o{n}", member, amount=amount, items=[item("coat", amount)])


def queue_is_empty(svc: Any) -> bool:
    return row_counts(svc)["event_queue"] == 0


def test_concurrent_payments_are_applied_in_batches_each_with_its_own_outcome(pg, batches):
    # given the platform's 1 point per ¥1
    apply(pg, document())
    # when 16 members pay at the same moment, one of them naming a store that does not exist
    bodies = [order(i, f"u{i}", 1000 * (i + 1)) for i in range(16)]
    bodies[5]["store_id"] = "nowhere"
    outcomes = all_at_once(lambda i: event_service.ingest_event(pg, SYSTEM, bodies[i]), THREADS)
    # then some leader applied several of them in one transaction
    assert sum(len(batch) for batch in batches) == THREADS
    assert max(len(batch) for batch in batches) > 1
    # and each request got the answer for its own event, the refused one its own error
    assert_each_got_its_own(pg, outcomes, refused=5)
    # and the queue is empty, the ledger adds up
    assert queue_is_empty(pg)
    assert_reconciled(pg)


def test_one_member_paying_from_many_requests_at_once_gets_every_payment_once(pg):
    # given the platform's 1 point per ¥1
    apply(pg, document())
    # when one member's 16 payments (and a resend of each) arrive together
    bodies = [order(i % 16, "u1", 1000) for i in range(32)]
    outcomes = all_at_once(lambda i: event_service.ingest_event(pg, SYSTEM, bodies[i]), 32)
    # then each payment applied once and its resend replayed the same answer
    assert {o.status for o in outcomes} == {200}
    assert sum(not o.replayed for o in outcomes) == 16
    for i in range(16):
        first, second = outcomes[i], outcomes[i + 16]
        assert first.body == second.body
    # and the member has 16 orders and 160 pending points
    assert row_counts(pg)["orders"] == 16
    (account,) = rows(pg, tables.point_accounts, member_id="u1")
    assert account.pending == 160
    assert queue_is_empty(pg)
    assert_reconciled(pg)


def test_events_of_the_platform_and_of_a_store_in_one_batch_keep_their_senders(pg, batches):
    # given a store with its own key
    owner_service.add_store(pg, "s1", "优衣库", program=False, actor="test")
    store = Principal("s1", "store", frozenset({Scope.WRITE}), "test")
    apply(pg, document())

    # when the platform and the store send payments together
    def send(i: int) -> Any:
        principal = store if i % 2 else SYSTEM
        return event_service.ingest_event(pg, principal, order(i, f"u{i}", 1000))

    outcomes = all_at_once(send, THREADS)
    # then each was recorded under the key that sent it, the store's orders in the store
    assert {o.status for o in outcomes} == {200}
    for i in range(THREADS):
        row = inbox(pg, f"pay-{i}", sender="s1" if i % 2 else "platform")
        assert row.store_id == ("s1" if i % 2 else None)
    assert queue_is_empty(pg)


@pytest.fixture
def fragile_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault that fails any batch holding more than one event."""
    original = group_commit._apply_rows

    def fragile(tx: Any, svc: Any, rows: Any) -> Any:
        if len(rows) > 1:
            raise RuntimeError("a fault of the batch, not of any one event")
        return original(tx, svc, rows)

    monkeypatch.setattr(group_commit, "_apply_rows", fragile)


def test_a_batch_that_fails_lets_each_of_its_events_apply_alone(pg, fragile_batches, caplog):
    # given a fault that fails any batch holding more than one event
    apply(pg, document())
    # when 16 payments arrive together
    bodies = [order(i, f"u{i}", 1000) for i in range(16)]
    with caplog.at_level(logging.ERROR, logger="huiyuan.services.group_commit"):
        outcomes = all_at_once(lambda i: event_service.ingest_event(pg, SYSTEM, bodies[i]), 16)
    # then every one of them was applied (alone), once
    assert {o.status for o in outcomes} == {200}
    assert row_counts(pg)["orders"] == 16
    assert queue_is_empty(pg)
    assert_reconciled(pg)
    # and the failed batches were logged
    assert any("applying each alone" in r.getMessage() for r in caplog.records)


def break_event(monkeypatch: pytest.MonkeyPatch, event_id: str) -> None:
    """Make the handling of one event fail (a bug), in a batch and alone; ``monkeypatch.undo()``
    mends it."""
    batch, alone = group_commit._apply_rows, event_apply.apply_event

    def broken_batch(tx: Any, svc: Any, rows: Any) -> Any:
        if any(row.event_id == event_id for row in rows):
            raise RuntimeError("a bug")
        return batch(tx, svc, rows)

    def broken_alone(tx: Any, svc: Any, sender: str, event: Any) -> Any:
        if event.id == event_id:
            raise RuntimeError("a bug")
        return alone(tx, svc, sender, event)

    monkeypatch.setattr(group_commit, "_apply_rows", broken_batch)
    monkeypatch.setattr(event_apply, "apply_event", broken_alone)


def test_an_event_that_fails_alone_fails_only_its_own_request(pg, monkeypatch):
    # given an event whose handling fails (a bug): in a batch, and alone
    apply(pg, document())
    break_event(monkeypatch, "pay-3")

    def send(i: int) -> Any:
        try:
            return event_service.ingest_event(pg, SYSTEM, order(i, f"u{i}", 1000))
        except RuntimeError as error:
            return error

    # when it arrives together with seven others
    outcomes = all_at_once(send, 8)
    # then its own request failed, every other was applied, and its row stays for the drain job
    assert isinstance(outcomes[3], RuntimeError)
    assert all(o.status == 200 for i, o in enumerate(outcomes) if i != 3)
    assert not rows(pg, tables.events, event_id="pay-3")
    assert row_counts(pg)["orders"] == 7
    assert [(r.event_id, r.status) for r in rows(pg, tables.event_queue)] == [("pay-3", "solo")]


def test_an_event_left_queued_by_a_request_that_went_away_is_applied(pg, clock):
    # given an event queued by a request whose process died before any leader took it
    apply(pg, document())
    orphan = parse_event(paid("pay-orphan", "o-orphan", "u9"), pg.now())
    part = group_commit.partition("u9", pg.settings.group_commit_partitions)
    with pg.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        queue_repo.enqueue(conn, inbox_row("platform", orphan, pg.now()), part)[0]
    # when the next single event of the same partition arrives
    neighbour = next(
        f"n{i}"
        for i in range(1000)
        if group_commit.partition(f"n{i}", pg.settings.group_commit_partitions) == part
    )
    body = paid("pay-next", "o-next", neighbour)
    assert event_service.ingest_event(pg, SYSTEM, body).status == 200
    # then its leader applied the orphan too, and the orphan's outcome waits to be collected
    assert inbox(pg, "pay-orphan").status == "applied"
    (left,) = rows(pg, tables.event_queue)
    assert (left.event_id, left.status, left.outcome_status) == ("pay-orphan", "done", 200)
    # and after an hour nobody collected it, drain forgets it
    clock.advance(hours=2)
    group_commit.drain(pg)
    assert queue_is_empty(pg)


def test_drain_applies_queued_and_solo_events_nobody_waits_for(pg, clock):
    # given a queued event and a solo one, both left by requests that went away
    apply(pg, document())
    with pg.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        ids = []
        for n, member in ((1, "u1"), (2, "u2")):
            event = parse_event(paid(f"pay-{n}", f"o{n}", member), pg.now())
            part = group_commit.partition(member, pg.settings.group_commit_partitions)
            ids.append(queue_repo.enqueue(conn, inbox_row("platform", event, pg.now()), part)[0])
        queue_repo.set_solo(conn, [ids[1]])
    # when the drain job runs (a minute later: a solo event's requester may still be at it)
    clock.advance(minutes=2)
    applied = group_commit.drain(pg)
    # then both were applied, and nothing is left but the queued one's uncollected outcome
    assert applied == 2
    assert inbox(pg, "pay-1").status == "applied"
    assert inbox(pg, "pay-2").status == "applied"
    assert [(r.event_id, r.status) for r in rows(pg, tables.event_queue)] == [("pay-1", "done")]
    assert_reconciled(pg)


def test_group_commit_can_be_turned_off(make_pg):
    svc = make_pg(group_commit=False)
    assert not group_commit.enabled(svc)
    apply(svc, {"points": {"earning": [BASE_RULE]}})
    assert event_service.ingest_event(svc, SYSTEM, paid("pay-1", "o1")).status == 200
    assert queue_is_empty(svc)


def test_a_request_failing_while_it_leads_does_not_keep_its_partition_locked(pg, monkeypatch):
    # given stepping down fails once (the connection broke just then, say)
    apply(pg, document())
    original = queue_repo.step_down
    failures = []

    def broken(conn: Any, part: int) -> bool:
        if not failures:
            failures.append(part)
            raise RuntimeError("connection lost")
        return original(conn, part)

    monkeypatch.setattr(queue_repo, "step_down", broken)
    # when a request leads and then fails to step down
    with pytest.raises(RuntimeError):
        event_service.ingest_event(pg, SYSTEM, order(1, "u1", 1000))
    # then its event was applied, and no connection is left holding a partition's lock
    assert inbox(pg, "pay-1").status == "applied"
    with pg.engine.connect() as conn:
        held = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :c "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"c": queue_repo.LOCK_CLASS},
        ).scalar_one()
    assert held == 0
    # and the next event of that member is applied as usual
    assert event_service.ingest_event(pg, SYSTEM, order(2, "u1", 1000)).status == 200


# ---------------------------------------------------------------- not waiting (respond-async)


def send_async(svc: Any, body: dict[str, Any]) -> Any:
    return event_service.ingest_event(svc, SYSTEM, body, wait=False)


def test_an_event_that_does_not_wait_is_answered_queued_and_applied_by_the_next_leader(pg):
    # given a leader at work on every partition
    apply(pg, document())
    with leader_at_work(pg):
        # when a payment is sent without waiting
        outcome = send_async(pg, order(1, "u1", 1000))
        # then it is answered at once: queued, durable, and not applied yet
        assert outcome.status == 202
        assert outcome.body["status"] == "queued"
        assert event_service.event_status(pg, SYSTEM, "pay-1")["status"] == "queued"
        assert not rows(pg, tables.orders, order_id="o1")
    # when the next event of any member arrives and finds no leader
    assert send_async(pg, order(2, "u2", 1000)).status == 200  # it led, so it knows
    # then both are applied and the queue holds no row for anyone to collect
    status = event_service.event_status(pg, SYSTEM, "pay-1")
    assert status["status"] == "applied"
    assert status["result"]["effects"]
    assert queue_is_empty(pg)
    assert_reconciled(pg)


def test_events_that_do_not_wait_are_never_left_behind_by_a_leader_stepping_down(pg):
    # given the platform's 1 point per ¥1
    apply(pg, document())
    # when, three times over, 24 requests send at once (two in three without waiting), so
    # that requests find a leader at work, and leaders step down, all the time
    for round_ in range(3):
        bodies = [order(100 * round_ + i, f"u{i}", 1000) for i in range(24)]

        def send(i: int, bodies: list[dict[str, Any]] = bodies) -> Any:
            wait = i % 3 == 0
            return event_service.ingest_event(pg, SYSTEM, bodies[i], wait=wait)

        outcomes = all_at_once(send, 24)
        assert {o.status for o in outcomes} <= {200, 202}
        # then, with no drain job, every event of the round is applied once the requests end
        left = [(r.event_id, r.status, r.waits) for r in rows(pg, tables.event_queue)]
        assert not left
        for body in bodies:
            assert inbox(pg, body["id"]).status == "applied"
    assert row_counts(pg)["orders"] == 72
    assert_reconciled(pg)


def test_a_request_far_behind_waits_for_its_event_to_apply(make_pg):
    # given a partition behind by more than the backlog allowed (none)
    svc = make_pg(group_commit_backlog=0, group_commit_waiting="queue")
    apply(svc, document())
    with leader_at_work(svc):
        # when an event is sent without waiting
        sent = ThreadPoolExecutor(max_workers=1).submit(send_async, svc, order(1, "u1", 1000))
        # then it is not answered while the leader works …
        with pytest.raises(FuturesTimeout):
            sent.result(timeout=0.5)
    # … but once the leader is done, with its event applied
    outcome = sent.result(timeout=10)
    assert outcome.status == 200
    assert outcome.body["status"] == "applied"
    assert queue_is_empty(svc)


def test_events_nobody_waits_for_in_a_failed_batch_are_applied_alone_by_the_leader(
    pg, fragile_batches, caplog
):
    # given a fault that fails any batch holding more than one event
    apply(pg, document())
    member = "u1"
    # and six payments of one partition queued without waiting while a leader was at work
    with leader_at_work(pg):
        for i in range(6):
            assert send_async(pg, order(i, member, 1000)).status == 202
    # when a request that waits arrives and leads their batch
    with caplog.at_level(logging.ERROR, logger="huiyuan.services.group_commit"):
        outcome = event_service.ingest_event(pg, SYSTEM, order(9, member, 1000))
    # then its batch failed, it applied the six alone, and its own event too
    assert outcome.status == 200
    assert any("applying each alone" in r.getMessage() for r in caplog.records)
    assert row_counts(pg)["orders"] == 7
    assert queue_is_empty(pg)
    assert_reconciled(pg)


def test_events_are_applied_when_the_pooled_connections_died(pg):
    # given a pool of connections that have served events
    apply(pg, document())
    assert event_service.ingest_event(pg, SYSTEM, order(1, "u1", 1000)).status == 200
    assert event_service.ingest_batch(pg, SYSTEM, [order(2, "u2", 1000)])[0].status == 200
    # when the database drops every one of them (a restart, a proxy timing out)
    assert drop_connections(pg) >= 1
    # then single events, waiting or not, and batches are applied on fresh connections
    assert event_service.ingest_event(pg, SYSTEM, order(3, "u3", 1000)).status == 200
    assert send_async(pg, order(4, "u4", 1000)).status in (200, 202)
    assert event_service.ingest_batch(pg, SYSTEM, [order(5, "u5", 1000)])[0].status == 200
    group_commit.drain(pg)
    assert row_counts(pg)["orders"] == 5
    assert_reconciled(pg)


def test_a_queued_event_refused_when_applied_tells_its_refusal_for_the_retention(pg, clock):
    # given a payment naming a store that does not exist, queued while a leader was at work
    apply(pg, document())
    body = order(1, "u1", 1000)
    body["store_id"] = "nowhere"
    with leader_at_work(pg):
        assert send_async(pg, body).status == 202
    # when the next leader applies it
    assert send_async(pg, order(2, "u2", 1000)).status == 200
    # then nothing of it is stored and it left the queue, but its status tells the refusal
    assert not rows(pg, tables.events, event_id="pay-1")
    assert queue_is_empty(pg)
    status = event_service.event_status(pg, SYSTEM, "pay-1")
    assert status["status"] == "rejected"
    assert status["result"]["code"] == "unknown_store"
    assert status["first_response"]["status"] == 422
    # and still does six days later, whatever the drain job does meanwhile
    clock.advance(days=6)
    group_commit.drain(pg)
    assert event_service.event_status(pg, SYSTEM, "pay-1")["status"] == "rejected"
    # until the retention (7 days by default) has passed
    clock.advance(days=2)
    group_commit.drain(pg)
    assert not rows(pg, tables.event_outcomes)
    with pytest.raises(DomainError):
        event_service.event_status(pg, SYSTEM, "pay-1")


def test_a_queued_event_that_cannot_be_applied_says_failed_and_can_be_sent_again(
    pg, clock, monkeypatch, caplog
):
    # given a payment whose handling fails every time (a bug), sent without waiting while a
    # leader was at work, and its batch failing with it
    apply(pg, document())
    break_event(monkeypatch, "pay-1")
    with leader_at_work(pg):
        assert send_async(pg, order(1, "u1", 1000)).status == 202
    # when the next leader fails it alone, and the drain job fails it once more, its last try
    with caplog.at_level(logging.ERROR, logger="huiyuan.services.group_commit"):
        assert event_service.ingest_event(pg, SYSTEM, order(2, "u2", 1000)).status == 200
        assert event_service.event_status(pg, SYSTEM, "pay-1")["status"] == "queued"
        clock.advance(minutes=2)
        group_commit.drain(pg)
    # then nothing of it is stored, and its status says it failed on Huiyuan's side
    assert any("given up" in r.getMessage() for r in caplog.records)
    assert not rows(pg, tables.events, event_id="pay-1")
    status = event_service.event_status(pg, SYSTEM, "pay-1")
    assert status["status"] == "failed"
    assert status["first_response"]["status"] == 500
    assert status["result"]["code"] == "event_apply_failed"
    # and once the bug is gone, the same event sent again is applied
    monkeypatch.undo()
    assert event_service.ingest_event(pg, SYSTEM, order(1, "u1", 1000)).status == 200
    assert event_service.event_status(pg, SYSTEM, "pay-1")["status"] == "applied"
    assert row_counts(pg)["orders"] == 2
    # and after the retention the drain job has forgotten the failure
    assert queue_is_empty(pg)
    clock.advance(days=8)
    group_commit.drain(pg)
    assert not rows(pg, tables.event_outcomes)
    assert_reconciled(pg)


def test_the_api_applies_events_a_dead_leader_left_queued(make_pg, clock):
    # given an API sweeping the queue every 50 ms
    svc = make_pg(group_commit_sweep_seconds=0.05, group_commit_waiting="queue")
    apply(svc, document())
    # and an event queued by a request that died before any leader took it, a while ago
    orphan = parse_event(order(1, "u1", 1000), svc.now())
    part = group_commit.partition("u1", svc.settings.group_commit_partitions)
    with svc.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        queue_repo.enqueue(conn, inbox_row("platform", orphan, svc.now()), part, waits=False)
    clock.advance(seconds=10)
    # when the API runs, with no request coming
    with TestClient(create_app(svc)):
        deadline = time.monotonic() + 10
        while not rows(svc, tables.events, event_id="pay-1"):
            assert time.monotonic() < deadline, "the queued event was never applied"
            time.sleep(0.05)
    # then the event was applied and nothing is left queued
    assert inbox(svc, "pay-1").status == "applied"
    assert queue_is_empty(svc)


def test_a_request_meeting_a_dead_connection_is_told_to_retry_and_the_next_one_works(make_pg):
    # given an API (not sweeping the queue meanwhile) whose pooled connections the database
    # has just dropped
    pg = make_pg(group_commit_sweep_seconds=0, group_commit_waiting="queue")
    with TestClient(create_app(pg)) as client:
        assert client.get("/healthz").status_code == 200
        assert drop_connections(pg) >= 1
        # when a request that is not an event meets a dead connection
        first = client.get("/healthz")
        # then it is told to come back in a second, not that something broke
        assert first.status_code == 503
        assert first.json()["code"] == "database_unavailable"
        assert first.headers["Retry-After"] == "1"
        # and the next request gets a fresh connection
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(("waits", "setting"), [(True, "off"), (False, "on")])
def test_only_a_row_whose_requester_waits_commits_without_waiting_for_the_disk(
    pg: Any, waits: bool, setting: str
) -> None:
    # given an event queued inside a transaction, so that the setting its commit will use
    # can be read before the commit
    event = parse_event(order(1, "u1", 1000), pg.now())
    with pg.engine.connect() as conn:
        queue_repo.enqueue(conn, inbox_row("platform", event, pg.now()), 0, waits=waits)
        # then a requester waiting for its outcome (answered only after a leader's durable
        # commit, later in the WAL) does not wait for the flush; one answered "queued" from
        # the row alone does
        assert conn.execute(sa.text("SHOW synchronous_commit")).scalar_one() == setting
        conn.rollback()
    # and the setting was the transaction's own
    with pg.engine.connect() as conn:
        assert conn.execute(sa.text("SHOW synchronous_commit")).scalar_one() == "on"
