"""Real threads against PostgreSQL: a duplicate in flight applies once, no update is lost.

These run on PostgreSQL only: SQLite takes one writer at a time, so it cannot race.
"""

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from huiyuan.db import events_repo, tables
from huiyuan.services import events as event_service
from huiyuan.services.context import Services
from huiyuan.services.principals import SYSTEM

from .bodies import item, login, paid, refunded, registered
from .stored import inbox, one, row_counts, rows
from .threads import all_at_once as _all_at_once

pytestmark = pytest.mark.postgres_only

THREADS = 32


def all_at_once(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    return _all_at_once(work, count)


def ingest(svc: Services, body: dict[str, Any]) -> event_service.EventOutcome:
    return event_service.ingest_event(svc, SYSTEM, body)


def test_the_same_payment_sent_by_32_threads_at_once_applies_exactly_once(pg):
    # given one payment event
    body = paid("pay-1", "o1")
    # when 32 threads send it at the same moment
    outcomes = all_at_once(lambda _: ingest(pg, body))
    # then exactly one applied it and every other got the same answer as a replay
    fresh = [o for o in outcomes if not o.replayed]
    assert len(fresh) == 1
    assert fresh[0].status == 200
    assert {o.status for o in outcomes} == {200}
    assert all(o.body == fresh[0].body for o in outcomes)
    # and there is one event, one order with its two lines, one member and one enrollment
    counts = row_counts(pg)
    assert (counts["events"], counts["orders"], counts["order_items"]) == (1, 1, 2)
    assert (counts["members"], counts["enrollments"]) == (1, 1)


def test_the_same_refund_sent_by_32_threads_at_once_refunds_once(pg):
    # given a ¥299 order and one refund event of ¥50
    ingest(pg, paid("pay-1", "o1"))
    body = refunded("ref-1", "o1", "r1", 5000)
    # when 32 threads send the refund together
    outcomes = all_at_once(lambda _: ingest(pg, body))
    # then it was refunded once
    assert sum(not o.replayed for o in outcomes) == 1
    assert {o.status for o in outcomes} == {200}
    assert one(pg, tables.orders, order_id="o1")["refunded_amount"] == 5000
    assert len(rows(pg, tables.refunds)) == 1


def test_32_logins_of_a_new_member_at_once_are_all_counted(pg):
    # given a member nobody has seen yet
    # when 32 different login events for them arrive at once, all on one business day
    outcomes = all_at_once(lambda i: ingest(pg, login(f"l{i}")))
    # then every login applied and none was lost
    assert [o.status for o in outcomes] == [200] * THREADS
    assert one(pg, tables.logins, member_id="u1")["count"] == THREADS
    # and the member was created and enrolled exactly once
    assert len(rows(pg, tables.members)) == 1
    assert len(rows(pg, tables.enrollments)) == 1
    assert sum({"kind": "member.created"} in o.body["effects"] for o in outcomes) == 1
    assert len(rows(pg, tables.outbox)) == 1, "one member.enrolled message, not one per racer"


def test_32_payments_of_one_member_at_once_are_all_recorded(pg):
    # given a registered member
    ingest(pg, registered("reg-1"))

    # when they pay 32 different orders at the same moment, each of ¥(i+1)
    def pay(i):
        return ingest(
            pg, paid(f"pay-{i}", f"o{i}", amount=(i + 1) * 100, items=[item("sku", (i + 1) * 100)])
        )

    outcomes = all_at_once(pay)
    # then all 32 orders are there and the member's totals add up
    assert [o.status for o in outcomes] == [200] * THREADS
    assert len(rows(pg, tables.orders, member_id="u1")) == THREADS
    assert len(rows(pg, tables.order_items)) == THREADS
    with pg.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.sum(tables.orders.c.amount))).scalar_one()
    assert total == sum((i + 1) * 100 for i in range(THREADS))


def test_32_refunds_racing_on_one_order_never_refund_more_than_was_paid(pg):
    # given a ¥299 order
    ingest(pg, paid("pay-1", "o1"))
    # when 32 different ¥10 refunds arrive at once (only 29 of them fit)
    outcomes = all_at_once(lambda i: ingest(pg, refunded(f"ref-{i}", "o1", f"r{i}", 1000)))
    # then exactly 29 applied and the rest were refused as exceeding the order
    applied = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status != 200]
    assert len(applied) == 29
    assert {(o.status, o.body["code"]) for o in refused} == {(409, "refund_exceeds_order")}
    assert one(pg, tables.orders, order_id="o1")["refunded_amount"] == 29000
    assert len(rows(pg, tables.refunds)) == 29


def test_one_order_paid_by_32_events_at_once_is_paid_once(pg):
    # given 32 different events, from 32 members, all claiming to pay order o1
    # when they arrive at once
    outcomes = all_at_once(lambda i: ingest(pg, paid(f"pay-{i}", "o1", f"u{i}")))
    # then one payment stands and every other is refused as already paid, not a server error
    assert sorted(o.status for o in outcomes) == [200] + [409] * (THREADS - 1)
    assert {o.body["code"] for o in outcomes if o.status == 409} == {"order_already_paid"}
    assert len(rows(pg, tables.orders)) == 1


def test_refunds_racing_their_payment_are_all_applied_in_the_end(pg):
    # given a registered member whose ¥299 payment and 16 ¥10 refunds arrive at the same moment
    ingest(pg, registered("reg-1"))

    def send(i):
        if i == 0:
            return ingest(pg, paid("pay-1", "o1"))
        return ingest(pg, refunded(f"ref-{i}", "o1", f"r{i}", 1000))

    outcomes = all_at_once(send, count=17)
    # then each refund either applied at once or was deferred and applied with the payment
    assert outcomes[0].status == 200
    assert {o.status for o in outcomes[1:]} <= {200, 202}
    statuses = {inbox(pg, f"ref-{i}")["status"] for i in range(1, 17)}
    assert statuses == {"applied"}, "a refund deferred while its payment committed was stranded"
    assert one(pg, tables.orders, order_id="o1")["refunded_amount"] == 16 * 1000


def test_logins_racing_the_registration_they_wait_for_are_all_applied(make_pg, monkeypatch):
    # given members are enrolled only on registration
    svc = make_pg(auto_enroll="registration_only")
    # and a deferral takes its time to commit, so the registration commits meanwhile
    finish = events_repo.finish_event

    def slow_deferral(conn, sender, event_id, values):
        finish(conn, sender, event_id, values)
        if values["status"] == "deferred":
            time.sleep(0.1)

    monkeypatch.setattr(events_repo, "finish_event", slow_deferral)

    # when a new member's registration and 16 logins arrive at the same moment
    def send(i):
        if i == 0:
            return ingest(svc, registered("reg-1"))
        return ingest(svc, login(f"l{i}"))

    outcomes = all_at_once(send, count=17)
    # then every login was applied, either at once or released by the registration
    assert outcomes[0].status == 200
    assert {inbox(svc, f"l{i}")["status"] for i in range(1, 17)} == {"applied"}
    assert one(svc, tables.logins, member_id="u1")["count"] == 16


def test_concurrent_batches_over_the_same_members_all_apply(pg):
    # given 8 batches of 60 logins each over the same 12 members, in shuffled orders, and each
    # batch also carrying 10 events shared with every other batch
    members = [f"m{i:02d}" for i in range(12)]
    shared = [login(f"shared-{i}", members[i % 12]) for i in range(10)]
    batches = []
    for b in range(8):
        own = [login(f"b{b}-{i}", members[i % 12]) for i in range(60)]
        events = own + shared
        random.Random(b).shuffle(events)
        batches.append(events)
    # when they are all sent at once
    outcomes = all_at_once(lambda b: event_service.ingest_batch(pg, SYSTEM, batches[b]), count=8)
    # then no event failed, each shared event applied once and replayed elsewhere
    assert {o.status for batch in outcomes for o in batch} == {200}
    fresh_shared = sum(
        not o.replayed
        for batch, events in zip(outcomes, batches, strict=True)
        for o, e in zip(batch, events, strict=True)
        if e["id"].startswith("shared-")
    )
    assert fresh_shared == 10
    # and every login was counted once: 8 * 5 own logins per member plus the shared ones
    counts = {r["member_id"]: r["count"] for r in rows(pg, tables.logins)}
    assert counts == {m: 8 * 5 + (1 if int(m[1:]) < 10 else 0) for m in members}
    assert len(rows(pg, tables.events)) == 8 * 60 + 10
    assert len(rows(pg, tables.members)) == 12


def test_a_batch_does_not_wait_for_a_busy_member_before_applying_the_others(pg):
    # given three known members, one of them held by another transaction
    for n, member in enumerate(("u1", "u2", "u3")):
        assert ingest(pg, paid(f"first-{n}", f"first-{n}", member)).status == 200
    holder = pg.engine.connect()
    holder.execute(
        sa.select(tables.members).where(tables.members.c.member_id == "u2").with_for_update()
    )
    # when a batch pays for all three (u2 twice, in order: paid then refunded)
    bodies = [
        paid("pay-1", "o1", "u1"),
        paid("pay-2", "o2", "u2"),
        refunded("ref-2", "o2", "r2", 5000, member_id="u2"),
        paid("pay-3", "o3", "u3"),
    ]
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        sent = pool.submit(event_service.ingest_batch, pg, SYSTEM, bodies)
        # then the free members' payments are applied and committed while u2 is held …
        deadline = time.monotonic() + 10
        while not (
            rows(pg, tables.orders, order_id="o1") and rows(pg, tables.orders, order_id="o3")
        ):
            assert time.monotonic() < deadline, "the free members waited for the busy one"
            time.sleep(0.05)
        assert not rows(pg, tables.orders, order_id="o2")
        assert not sent.done()
    finally:
        holder.rollback()  # … and u2's events follow, in order, once it is let go
        holder.close()
        pool.shutdown(wait=True)
    outcomes = sent.result(timeout=10)
    assert [o.status for o in outcomes] == [200, 200, 200, 200]
    assert one(pg, tables.orders, order_id="o2").refunded_amount == 5000
