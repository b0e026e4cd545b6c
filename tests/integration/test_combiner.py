"""Group commit in memory: single events whose requests wait for their outcome are applied
together with the concurrent requests of the same process (``services.combiner``; on
PostgreSQL the default ``HUIYUAN_GROUP_COMMIT_WAITING=process``), each with its own outcome,
without the queue — on both databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from huiyuan.api.app import create_app
from huiyuan.db import tables
from huiyuan.services import events as event_service
from huiyuan.services import group_commit, principals
from huiyuan.services import owners as owner_service
from huiyuan.services.principals import SYSTEM, Principal, Scope

from .bodies import item, paid
from .ledger import apply, assert_reconciled, document
from .stored import drop_connections, inbox, row_counts, rows
from .threads import all_at_once, assert_each_got_its_own

THREADS = 16


class Gated:
    """Records the events of every combined batch; holds the first batch until ``lined_up``
    requests wait in the line behind it, so that they are combined into the next one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, svc: Any, lined_up: int) -> None:
        self.batches: list[list[str]] = []
        self.svc, self.lined_up = svc, lined_up
        self.original = event_service._apply_in_two
        self.fail_next_multiple = False
        monkeypatch.setattr(event_service, "_apply_in_two", self)

    def __call__(self, svc: Any, items: list[Any], deliver: Any = None) -> Any:
        self.batches.append([event.id for _, event in items])
        if len(self.batches) == 1:
            deadline = time.monotonic() + 10
            while len(self.svc.combiner._line) < self.lined_up:
                assert time.monotonic() < deadline, "the requests never lined up"
                time.sleep(0.001)
        if self.fail_next_multiple and len(items) > 1:
            self.fail_next_multiple = False
            raise RuntimeError("a bug, not a refusal")
        return self.original(svc, items, deliver)


def assert_settled(svc: Any) -> None:
    """Nothing went through (or was left in) the queue, and the ledger adds up."""
    assert row_counts(svc)["event_queue"] == 0
    assert_reconciled(svc)


def order(n: int, member: str, amount: int) -> dict[str, Any]:
    return paid(f"pay-{n}", f"o{n}", member, amount=amount, items=[item("coat", amount)])


def test_concurrent_payments_are_combined_in_memory_each_with_its_own_outcome(svc, monkeypatch):
    # given the platform's 1 point per ¥1
    apply(svc, document())
    gated = Gated(monkeypatch, svc, THREADS)
    # when 16 members pay at the same moment, one of them naming a store that does not exist
    bodies = [order(i, f"u{i}", 1000 * (i + 1)) for i in range(THREADS)]
    bodies[5]["store_id"] = "nowhere"
    outcomes = all_at_once(lambda i: event_service.ingest_event(svc, SYSTEM, bodies[i]), THREADS)
    # then they were applied in batches of several (a leader's batch, those that came meanwhile
    # in the next one)
    assert sorted(e for batch in gated.batches for e in batch) == sorted(
        f"pay-{i}" for i in range(THREADS)
    )
    assert len(gated.batches) < THREADS // 2
    # and each request got the answer for its own event, the refused one its own error
    assert_each_got_its_own(svc, outcomes, refused=5)
    # and nothing went through the queue; the ledger adds up
    assert_settled(svc)


def test_a_resend_combined_with_its_original_replays_the_same_answer(svc, monkeypatch):
    # given the platform's 1 point per ¥1, and one member's 8 payments each sent twice at once
    apply(svc, document())
    gated = Gated(monkeypatch, svc, THREADS)
    bodies = [order(i % 8, "u1", 1000) for i in range(THREADS)]
    outcomes = all_at_once(lambda i: event_service.ingest_event(svc, SYSTEM, bodies[i]), THREADS)
    # then (most of them in one batch) each payment applied once, its twin replaying its answer
    assert max(len(batch) for batch in gated.batches) > 8
    assert {o.status for o in outcomes} == {200}
    assert sum(not o.replayed for o in outcomes) == 8
    for i in range(8):
        assert outcomes[i].body == outcomes[i + 8].body
    (account,) = rows(svc, tables.point_accounts, member_id="u1")
    assert account.pending == 80
    assert row_counts(svc)["orders"] == 8
    assert_reconciled(svc)


def test_a_combined_batch_keeps_each_events_sender(svc, monkeypatch):
    # given a store with its own key
    owner_service.add_store(svc, "s1", "优衣库", program=False, actor="test")
    store = Principal("s1", "store", frozenset({Scope.WRITE}), "test")
    apply(svc, document())
    gated = Gated(monkeypatch, svc, THREADS)

    # when the platform and the store send payments together
    def send(i: int) -> Any:
        principal = store if i % 2 else SYSTEM
        return event_service.ingest_event(svc, principal, order(i, f"u{i}", 1000))

    outcomes = all_at_once(send, THREADS)
    # then they shared a batch, and each was recorded under the key that sent it
    assert any({int(e.split("-")[1]) % 2 for e in batch} == {0, 1} for batch in gated.batches)
    assert {o.status for o in outcomes} == {200}
    for i in range(THREADS):
        row = inbox(svc, f"pay-{i}", sender="s1" if i % 2 else "platform")
        assert row.store_id == ("s1" if i % 2 else None)
    assert_reconciled(svc)


def test_a_combined_batch_that_fails_lets_each_of_its_events_apply_alone(svc, monkeypatch, caplog):
    # given combined batches of several events fail once (a bug, not a refusal)
    apply(svc, document())
    gated = Gated(monkeypatch, svc, THREADS)
    gated.fail_next_multiple = True
    # when 16 members pay at once
    bodies = [order(i, f"u{i}", 1000) for i in range(THREADS)]
    with caplog.at_level(logging.ERROR, logger="huiyuan.services.combiner"):
        outcomes = all_at_once(
            lambda i: event_service.ingest_event(svc, SYSTEM, bodies[i]), THREADS
        )
    # then the failed batch was logged once, and each of its events was applied alone
    assert max(len(batch) for batch in gated.batches) > 1
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1
    assert {o.status for o in outcomes} == {200}
    assert not any(o.replayed for o in outcomes)
    for i in range(THREADS):
        assert inbox(svc, f"pay-{i}").status == "applied"
    assert_reconciled(svc)


@pytest.mark.postgres_only
def test_the_same_payments_sent_from_two_processes_at_once_apply_once(make_pg):
    # given two server processes (each its own services, pool and combiner)
    first, second = make_pg(), make_pg()
    apply(first, document())
    bodies = [order(i % 8, f"u{i % 4}", 1000) for i in range(THREADS)]
    start = threading.Barrier(2 * THREADS)

    def send(i: int) -> Any:
        svc = first if i < THREADS else second
        start.wait()
        return event_service.ingest_event(svc, SYSTEM, bodies[i % THREADS])

    # when both get every payment (each twice) at the same moment
    outcomes = all_at_once(send, 2 * THREADS)
    # then each payment was applied once, every other copy replaying its answer
    assert {o.status for o in outcomes} == {200}
    assert sum(not o.replayed for o in outcomes) == 8
    by_event: dict[str, list[Any]] = {}
    for outcome in outcomes:
        by_event.setdefault(outcome.body["id"], []).append(outcome.body)
    assert all(len(copies) == 4 and copies.count(copies[0]) == 4 for copies in by_event.values())
    assert row_counts(first)["orders"] == 8
    assert_reconciled(first)


@pytest.mark.postgres_only
def test_combined_events_are_applied_when_the_pooled_connections_died(pg):
    # given a pool of connections that have served combined events
    apply(pg, document())
    sent = all_at_once(
        lambda i: event_service.ingest_event(pg, SYSTEM, order(i, f"u{i}", 1000)), THREADS
    )
    assert {o.status for o in sent} == {200}
    # when the database drops every one of them (a restart, a proxy timing out)
    assert drop_connections(pg) >= 1
    # then the next requests, combined, are applied on fresh connections
    again = all_at_once(
        lambda i: event_service.ingest_event(pg, SYSTEM, order(THREADS + i, f"u{i}", 1000)),
        THREADS,
    )
    assert {o.status for o in again} == {200}
    assert not any(o.replayed for o in again)
    assert row_counts(pg)["orders"] == 2 * THREADS
    assert_reconciled(pg)


def test_concurrent_http_requests_to_one_api_process_are_combined(svc):
    # given the API of one process, with the platform's 1 point per ¥1
    apply(svc, document())
    key = principals.create_api_key(svc, "platform", (Scope.WRITE,), "test", actor="test").key
    auth = {"Authorization": f"Bearer {key}"}
    app = create_app(svc)

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hy") as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/events", json=order(i, f"u{i}", 1000), headers=auth)
                    for i in range(THREADS)
                )
            )

    # when 16 requests arrive at once
    responses = asyncio.run(send_all())
    # then each got its own event's outcome, and some were applied in one transaction
    assert [r.status_code for r in responses] == [200] * THREADS
    assert [r.json()["id"] for r in responses] == [f"pay-{i}" for i in range(THREADS)]
    assert svc.combiner.largest > 1
    assert svc.combiner.batches < THREADS
    assert_settled(svc)


@pytest.mark.postgres_only
def test_the_event_path_plans_its_statements_once_and_leaves_the_connection_as_it_was(
    pg, monkeypatch
):
    # given a spy reading the planner's setting inside the transaction that applies events
    apply(pg, document())
    seen: list[str] = []
    original = event_service.apply_events_of

    def spy(tx: Any, *args: Any) -> Any:
        seen.append(
            " ".join(
                tx.conn.exec_driver_sql(f"SHOW {name}").scalar_one()
                for name in ("plan_cache_mode", "enable_seqscan")
            )
        )
        pids.append(tx.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        return original(tx, *args)

    pids: list[int] = []

    monkeypatch.setattr(event_service, "apply_events_of", spy)
    # when an event is applied
    assert event_service.ingest_event(pg, SYSTEM, order(1, "u1", 1000)).status == 200
    # then its statements were planned once per connection (generic plans), keeping to the
    # keys …
    assert seen == ["force_generic_plan off"]
    # … for that transaction only: the pooled connection is back to the server's default
    with contextlib.ExitStack() as held:
        found = {}
        for _ in range(pg.engine.pool.checkedin() + 1):
            conn = held.enter_context(pg.engine.connect())
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            found[pid] = " ".join(
                conn.exec_driver_sql(f"SHOW {name}").scalar_one()
                for name in ("plan_cache_mode", "enable_seqscan")
            )
        assert found[pids[0]] == "auto on"


@pytest.mark.postgres_only
def test_a_payment_in_a_program_of_1500_balances_reads_only_its_members_balance(pg, monkeypatch):
    # given the platform's program holding 1,500 balances, its statistics up to date, and a
    # member whose next payment takes the set-based path (known, enrolled)
    apply(pg, document())
    assert event_service.ingest_event(pg, SYSTEM, order(1, "u1", 1000)).status == 200
    with pg.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO point_accounts (program_id, member_id, available, pending, reserved, "
            "debt, updated_at) SELECT 'platform', 'm' || g, 0, 0, 0, 0, now() "
            "FROM generate_series(1, 1500) AS g"
        )
    with pg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE point_accounts")
    scans: list[int] = []
    original = event_service.apply_events_of

    def spy(tx: Any, *args: Any) -> Any:
        applied = original(tx, *args)
        scans.append(
            tx.conn.exec_driver_sql(
                "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'point_accounts'"
            ).scalar_one()
        )
        return applied

    monkeypatch.setattr(event_service, "apply_events_of", spy)
    # when the member pays again
    assert event_service.ingest_event(pg, SYSTEM, order(2, "u1", 1000)).status == 200
    # then its transaction found the member's balance by key: it never read all 1,501 (the
    # planner, counting ten rows for an array it does not know, read them twice when it could)
    assert scans == [0]
    (account,) = rows(pg, tables.point_accounts, member_id="u1")
    assert account.pending == 20


@pytest.mark.postgres_only
def test_one_members_events_sent_waiting_and_not_waiting_at_once_all_apply_once(pg):
    # given the platform's 1 point per ¥1
    apply(pg, document())
    # when one member's 16 payments, each sent twice, arrive at once from 32 threads, half of
    # them waiting for their outcome (combined in memory) and half not (through the queue)
    bodies = [order(i % 16, "u1", 1000) for i in range(2 * THREADS)]

    def send(i: int) -> Any:
        return event_service.ingest_event(pg, SYSTEM, bodies[i], wait=i % 2 == 0)

    outcomes = all_at_once(send, 2 * THREADS)
    group_commit.drain(pg)  # whatever a leader left queued
    # then every request was answered without error, and each payment applied exactly once
    assert {o.status for o in outcomes} <= {200, 202}
    assert row_counts(pg)["orders"] == 16
    assert {row.status for row in rows(pg, tables.events)} == {"applied"}
    (account,) = rows(pg, tables.point_accounts, member_id="u1")
    assert account.pending == 160
    assert_settled(pg)


@pytest.mark.postgres_only
def test_requests_of_free_members_are_answered_while_their_batch_waits_for_a_busy_one(
    pg, monkeypatch
):
    # given members u0…u8 known, and u7's row held by another transaction
    apply(pg, document())
    for i in range(9):
        assert event_service.ingest_event(pg, SYSTEM, order(100 + i, f"u{i}", 1000)).ok
    gated = Gated(monkeypatch, pg, 9)
    with pg.engine.connect() as other:
        other.exec_driver_sql("SELECT 1 FROM members WHERE member_id = 'u7' FOR UPDATE")
        # and u8's payment leading a batch of its own, held until eight more line up behind it
        pool = ThreadPoolExecutor(max_workers=9)
        plug = pool.submit(event_service.ingest_event, pg, SYSTEM, order(8, "u8", 1000))
        deadline = time.monotonic() + 10
        while not gated.batches:
            assert time.monotonic() < deadline, "the first payment was never taken"
            time.sleep(0.001)
        # when u0…u7 pay at once: they are combined into the next batch, whatever the timing
        sent = [
            pool.submit(event_service.ingest_event, pg, SYSTEM, order(i, f"u{i}", 1000))
            for i in range(8)
        ]
        # then the requests combined with the busy member's are answered once the first
        # transaction commits — all but the batch's leader, whose thread goes on with it …
        deadline = time.monotonic() + 10
        while not (batch := next((b for b in gated.batches if "pay-7" in b), None)):
            assert time.monotonic() < deadline, "the busy member's event was never taken"
            time.sleep(0.005)
        early = [int(e.removeprefix("pay-")) for e in batch[1:] if e != "pay-7"]
        assert len(batch) == 8 and len(early) >= 6
        while not all(sent[i].done() for i in early):
            assert time.monotonic() < deadline, "the free members' requests were not answered"
            time.sleep(0.005)
        assert not sent[7].done()
        other.rollback()  # the busy member is free again
    # … and the busy member's payment is applied after
    assert [f.result(10).status for f in [plug, *sent]] == [200] * 9
    assert gated.batches[0] == ["pay-8"]
    assert row_counts(pg)["orders"] == 18
    assert_reconciled(pg)
    pool.shutdown()
