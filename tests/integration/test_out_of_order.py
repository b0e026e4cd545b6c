"""Events that arrive before their cause wait for it; order rules refuse impossible moves."""

import pytest

from huiyuan.db import tables
from huiyuan.services import events as event_service
from huiyuan.services.principals import SYSTEM

from .bodies import cancelled, completed, event, item, login, paid, refunded, registered
from .stored import inbox, one, row_counts, rows, the_effect

FEB = "2026-02-{:02d}T10:00:00+08:00"


def status_of(api, event_id):
    response = api.get(f"/v1/events/{event_id}")
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.mark.parametrize(
    "early",
    [
        refunded("ref-1", "o1", "r1", 5000),
        completed("done-1", "o1"),
        cancelled("cancel-1", "o1"),
    ],
    ids=["refund", "completion", "cancellation"],
)
def test_an_order_event_before_its_payment_is_deferred_and_applies_nothing(api, early):
    # given no payment for order o1 yet
    before = row_counts(api.svc)
    # when a refund, completion or cancellation of o1 arrives
    response = api.post("/v1/events", early)
    # then it is accepted as deferred, waiting on the order
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "deferred"
    assert body["waiting_on"] == "order:o1"
    assert "order.paid of order o1" in body["detail"]
    # and only its inbox row was written: no member, no order, no refund
    after = row_counts(api.svc)
    assert after["events"] == before["events"] + 1
    assert {k: v for k, v in after.items() if k != "events"} == {
        k: v for k, v in before.items() if k != "events"
    }
    stored = inbox(api.svc, early["id"])
    assert (stored["status"], stored["waiting_on"]) == ("deferred", "order:o1")
    assert stored["applied_at"] is None
    # and its status says so
    assert status_of(api, early["id"])["status"] == "deferred"


def test_a_deferred_event_sent_again_replays_its_deferral(api):
    # given a deferred refund
    body = refunded("ref-1", "o1", "r1", 5000)
    first = api.post("/v1/events", body)
    # when it is sent again
    again = api.post("/v1/events", body)
    # then the deferral replays and it is still one inbox row
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(rows(api.svc, tables.events)) == 1


def test_deferred_events_apply_in_the_order_they_occurred_when_the_payment_arrives(api):
    # given, before any payment, a refund of Feb 4th, a refund of Feb 3rd and a completion of
    # Feb 5th arrive in that order
    sent = [
        refunded("ref-2", "o1", "r2", 2000, occurred_at=FEB.format(4)),
        refunded("ref-1", "o1", "r1", 5000, occurred_at=FEB.format(3)),
        completed("done-1", "o1", occurred_at=FEB.format(5)),
    ]
    assert [api.post("/v1/events", b).status_code for b in sent] == [202, 202, 202]
    # when the payment of Feb 1st arrives
    response = api.post("/v1/events", paid("pay-1", "o1", occurred_at=FEB.format(1)))
    # then it applies and, by the time it answers, so does everything that waited for it
    assert response.status_code == 200, response.json()
    for event_id in ("ref-1", "ref-2", "done-1"):
        status = status_of(api, event_id)
        assert status["status"] == "applied"
        assert status["waiting_on"] is None
        assert status["applied_at"] is not None
        assert status["result"]["status"] == "applied"
    # and in the order they occurred: the Feb 3rd refund first, then the Feb 4th one
    first, second = (status_of(api, e)["result"]["effects"] for e in ("ref-1", "ref-2"))
    assert the_effect(first, "order.refunded")["refunded_total"] == 5000
    assert the_effect(second, "order.refunded")["refunded_total"] == 7000
    # and the pending points of the ¥299 order were cancelled in proportion, then the rest
    # released on completion: 299 × 50/299 = 50, then 299 × 70/299 − 50 = 20, leaving 229
    assert the_effect(first, "points.cancelled")["points"] == 50
    assert the_effect(second, "points.cancelled")["points"] == 20
    done = status_of(api, "done-1")["result"]["effects"]
    assert the_effect(done, "points.released")["points"] == 229
    order = one(api.svc, tables.orders, order_id="o1")
    assert (order["status"], order["refunded_amount"]) == ("completed", 7000)
    assert len(rows(api.svc, tables.refunds, order_id="o1")) == 2


def test_a_completion_and_a_cancellation_that_waited_are_judged_in_occurred_order(api):
    # given a cancellation of Feb 3rd, then a completion of Feb 2nd, both before the payment
    api.post("/v1/events", cancelled("cancel-1", "o1", occurred_at=FEB.format(3)))
    api.post("/v1/events", completed("done-1", "o1", occurred_at=FEB.format(2)))
    # when the payment arrives
    assert api.post("/v1/events", paid("pay-1", "o1")).status_code == 200
    # then the earlier completion applies and the later cancellation is rejected
    assert status_of(api, "done-1")["status"] == "applied"
    cancel = status_of(api, "cancel-1")
    assert cancel["status"] == "rejected"
    assert cancel["waiting_on"] is None
    assert cancel["result"]["code"] == "order_already_completed"
    assert cancel["result"]["status"] == 409
    assert one(api.svc, tables.orders, order_id="o1")["status"] == "completed"


def test_a_deferred_refund_that_turns_out_too_large_is_rejected_with_a_problem(api):
    # given a deferred refund of ¥500 for an order that will be ¥299, and a fitting one of ¥50
    api.post("/v1/events", refunded("ref-big", "o1", "r-big", 50000, occurred_at=FEB.format(2)))
    api.post("/v1/events", refunded("ref-ok", "o1", "r-ok", 5000, occurred_at=FEB.format(3)))
    # when the ¥299 payment arrives
    response = api.post("/v1/events", paid("pay-1", "o1"))
    # then the payment stands, the big refund is rejected and the fitting one applied
    assert response.status_code == 200, response.json()
    big = status_of(api, "ref-big")
    assert big["status"] == "rejected"
    assert big["result"]["code"] == "refund_exceeds_order"
    assert big["result"]["field"] == "data.amount"
    assert big["result"]["type"].endswith("refund_exceeds_order")
    assert status_of(api, "ref-ok")["status"] == "applied"
    assert [r["refund_id"] for r in rows(api.svc, tables.refunds)] == ["r-ok"]
    assert one(api.svc, tables.orders, order_id="o1")["refunded_amount"] == 5000
    # and resending the refund replays the first response (the deferral), while its status
    # tells what became of it
    again = api.post(
        "/v1/events", refunded("ref-big", "o1", "r-big", 50000, occurred_at=FEB.format(2))
    )
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["status"] == "deferred"
    assert status_of(api, "ref-big")["result"]["code"] == "refund_exceeds_order"
    assert status_of(api, "ref-big")["first_response"]["status"] == 202


def test_a_deferred_event_of_another_member_is_rejected_when_the_order_arrives(api):
    # given u2 refunding order o1 before it is paid
    api.post("/v1/events", refunded("ref-1", "o1", "r1", 100, member_id="u2"))
    # when u1 pays for o1
    assert api.post("/v1/events", paid("pay-1", "o1", "u1")).status_code == 200
    # then u2's refund is rejected: the order is not theirs
    status = status_of(api, "ref-1")
    assert status["status"] == "rejected"
    assert status["result"]["code"] == "order_member_mismatch"
    assert rows(api.svc, tables.refunds) == []


def test_a_review_deletion_before_its_approval_waits_for_it(api):
    # given a review deletion that arrives first
    first = api.post(
        "/v1/events", event("del-1", "review.deleted", review_id="rv1", occurred_at=FEB.format(3))
    )
    assert first.status_code == 202
    assert first.json()["waiting_on"] == "review:rv1"
    # when the approval arrives
    api.post("/v1/events", event("ok-1", "review.approved", review_id="rv1"))
    # then the deletion applies
    assert status_of(api, "del-1")["status"] == "applied"
    assert one(api.svc, tables.reviews, review_id="rv1")["deleted_at"] is not None


def test_a_batch_carrying_a_refund_before_its_payment_applies_both(api):
    # given one batch listing a refund before the payment it refunds
    batch = {"events": [refunded("ref-1", "o1", "r1", 5000), paid("pay-1", "o1")]}
    # when it is posted
    results = api.post("/v1/events:batch", batch).json()["results"]
    # then the refund was deferred at first and applied once the payment came
    assert [r["outcome"] for r in results] == ["deferred", "applied"]
    assert status_of(api, "ref-1")["status"] == "applied"
    assert one(api.svc, tables.orders, order_id="o1")["refunded_amount"] == 5000


# ---------------------------------------------------------------- registration only


def ingest(svc, body):
    return event_service.ingest_event(svc, SYSTEM, body)


def test_with_registration_only_a_login_waits_for_the_registration(make_services):
    # given a program that enrolls members only on registration
    svc = make_services(auto_enroll="registration_only")
    # when an unknown member logs in
    outcome = ingest(svc, login("l1"))
    # then the login waits for the member, and no member exists
    assert outcome.status == 202
    assert outcome.body["waiting_on"] == "member:u1"
    assert rows(svc, tables.members) == []
    assert rows(svc, tables.logins) == []
    # when the member registers
    registration = ingest(svc, registered("reg-1", occurred_at=FEB.format(2)))
    # then the member exists and the waiting login is counted
    assert registration.status == 200
    assert inbox(svc, "l1")["status"] == "applied"
    assert one(svc, tables.logins, member_id="u1")["count"] == 1
    assert one(svc, tables.members, member_id="u1")["origin"] == "registered"


def test_with_registration_only_waiting_events_release_one_another_in_a_chain(make_services):
    # given registration-only enrolment and, before the registration, a payment and its refund
    svc = make_services(auto_enroll="registration_only")
    assert ingest(svc, paid("pay-1", "o1")).body["waiting_on"] == "member:u1"
    assert ingest(svc, refunded("ref-1", "o1", "r1", 5000)).body["waiting_on"] == "order:o1"
    # when the member registers
    ingest(svc, registered("reg-1"))
    # then the payment applies, and the refund that waited on it applies too
    assert inbox(svc, "pay-1")["status"] == "applied"
    assert inbox(svc, "ref-1")["status"] == "applied"
    assert one(svc, tables.orders, order_id="o1")["refunded_amount"] == 5000


def test_with_any_event_enrolment_a_login_creates_the_member(make_services):
    # given the default policy
    svc = make_services()
    # when an unknown member logs in
    outcome = ingest(svc, login("l1"))
    # then the member is created on the spot, marked as not registered
    assert outcome.status == 200
    assert {"kind": "member.created"} in outcome.body["effects"]
    assert one(svc, tables.members, member_id="u1")["origin"] == "auto"


# ---------------------------------------------------------------- giving up


def test_a_deferred_event_whose_cause_never_comes_is_rejected_after_the_ttl(make_services, clock):
    # given a refund deferred now, with a 72-hour wait
    svc = make_services(deferred_event_ttl_hours=72)
    ingest(svc, refunded("ref-1", "o1", "r1", 5000))
    # when 71 hours pass, expiry leaves it waiting
    clock.advance(hours=71)
    assert event_service.expire_deferred(svc) == 0
    assert inbox(svc, "ref-1")["status"] == "deferred"
    # when more than 72 hours have passed
    clock.advance(hours=2)
    expired = event_service.expire_deferred(svc)
    # then it is rejected as its cause never arrived
    assert expired == 1
    stored = inbox(svc, "ref-1")
    assert (stored["status"], stored["waiting_on"]) == ("rejected", None)
    assert stored["response_status"] == 202  # the first response stays what it was
    assert stored["result"]["code"] == "cause_never_arrived"
    assert stored["result"]["status"] == 409
    assert "order.paid of order o1" in stored["result"]["detail"]
    # and a payment arriving afterwards does not bring it back
    assert ingest(svc, paid("pay-1", "o1")).status == 200
    assert inbox(svc, "ref-1")["status"] == "rejected"
    assert rows(svc, tables.refunds) == []
    assert event_service.expire_deferred(svc) == 0


# ---------------------------------------------------------------- order rules


@pytest.fixture
def order(api):
    """u1's ¥299 order o1 (coat ¥199, two scarves ¥100), paid."""
    assert api.post("/v1/events", paid("pay-1", "o1")).status_code == 200
    return api


def assert_conflict(api, body, code, field=None):
    before = row_counts(api.svc)
    response = api.post("/v1/events", body)
    assert response.status_code == 409, response.json()
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    if field is not None:
        assert problem["field"] == field
    assert row_counts(api.svc) == before, "a refused event must write nothing"
    assert api.get(f"/v1/events/{body['id']}").status_code == 404
    return problem


def test_a_cancelled_order_cannot_be_completed(order):
    # given the order was cancelled
    order.post("/v1/events", cancelled("cancel-1", "o1"))
    # when it is completed
    assert_conflict(order, completed("done-1", "o1"), "order_cancelled")
    # then it stays cancelled
    assert one(order.svc, tables.orders, order_id="o1")["status"] == "cancelled"


def test_a_completed_order_cannot_be_cancelled_nor_completed_twice(order):
    # given the order was completed
    order.post("/v1/events", completed("done-1", "o1"))
    # then cancelling or completing it again is refused
    assert_conflict(order, cancelled("cancel-1", "o1"), "order_already_completed")
    assert_conflict(order, completed("done-2", "o1"), "order_already_completed")


def test_a_refund_beyond_what_was_paid_is_refused(order):
    # given ¥250 of the ¥299 already refunded
    assert order.post("/v1/events", refunded("ref-1", "o1", "r1", 25000)).status_code == 200
    # when ¥50 more is refunded
    assert_conflict(
        order, refunded("ref-2", "o1", "r2", 5000), "refund_exceeds_order", "data.amount"
    )
    # then the remaining ¥49 can still be refunded, and after that nothing more
    assert order.post("/v1/events", refunded("ref-3", "o1", "r3", 4900)).status_code == 200
    assert_conflict(order, refunded("ref-4", "o1", "r4", 1), "order_fully_refunded")
    assert one(order.svc, tables.orders, order_id="o1")["refunded_amount"] == 29900


def test_an_item_cannot_be_returned_twice(order):
    # given one coat returned
    coat = [{"sku": "coat", "quantity": 1, "amount": 10000}]
    assert (
        order.post("/v1/events", refunded("ref-1", "o1", "r1", 10000, items=coat)).status_code
        == 200
    )
    # when the coat is returned again
    assert_conflict(
        order,
        refunded("ref-2", "o1", "r2", 10000, items=coat),
        "refund_exceeds_order",
        "data.items[0].quantity",
    )


def test_an_order_paid_twice_under_two_event_ids_is_refused(order):
    # when another event pays for o1 again
    again = paid("pay-2", "o1", amount=100, items=[item("x", 100)])
    problem = assert_conflict(order, again, "order_already_paid", "data.order_id")
    # then the first payment stands
    assert "pay-1" in problem["detail"]
    stored = one(order.svc, tables.orders, order_id="o1")
    assert (stored["amount"], stored["paid_event_id"]) == (29900, "pay-1")


def test_a_refund_id_cannot_be_used_twice(order):
    # given refund r1 recorded
    assert order.post("/v1/events", refunded("ref-1", "o1", "r1", 100)).status_code == 200
    # when another event reports refund r1 again
    assert_conflict(order, refunded("ref-2", "o1", "r1", 100), "refund_id_reused", "data.refund_id")
    # then it counted once
    assert one(order.svc, tables.orders, order_id="o1")["refunded_amount"] == 100


def test_an_order_event_from_another_member_is_refused(order):
    # when u2 completes u1's order
    assert_conflict(order, completed("done-1", "o1", "u2"), "order_member_mismatch", "member_id")
    # then u2 was not even created
    assert rows(order.svc, tables.members, member_id="u2") == []


def test_a_review_id_cannot_be_approved_twice(order):
    # given review rv1 approved
    order.post("/v1/events", event("rev-1", "review.approved", review_id="rv1"))
    # when another event approves rv1 again
    assert_conflict(
        order,
        event("rev-2", "review.approved", review_id="rv1"),
        "record_id_reused",
        "data.review_id",
    )
