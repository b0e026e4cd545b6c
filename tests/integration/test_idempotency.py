"""The same event sent twice applies once; an id reused for another body is a conflict."""

import json

from huiyuan.db import tables

from .bodies import item, login, paid, refunded, registered
from .stored import inbox, one, row_counts, rows, the_effect


def test_a_resent_event_returns_the_first_response_and_applies_nothing_twice(api):
    # given a member who paid for an order
    body = paid("pay-1", "o1")
    first = api.post("/v1/events", body)
    assert first.status_code == 200, first.json()
    assert "Idempotent-Replayed" not in first.headers
    counts = row_counts(api.svc)
    # when the same event is sent again, twice
    again = api.post("/v1/events", body)
    third = api.post("/v1/events", body)
    # then each gets the identical first response, marked as replayed
    for replay in (again, third):
        assert replay.status_code == first.status_code
        assert replay.json() == first.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
    # and nothing was written again: still one order, its lines once, one enrollment
    assert row_counts(api.svc) == counts
    assert counts["orders"] == 1
    assert counts["order_items"] == 2
    assert counts["enrollments"] == 1


def test_a_resent_refund_is_not_refunded_twice(api):
    # given an order refunded ¥50
    api.post("/v1/events", paid("pay-1", "o1"))
    refund = refunded("ref-1", "o1", "r1", 5000)
    first = api.post("/v1/events", refund)
    assert first.status_code == 200, first.json()
    # when the refund event is sent again
    again = api.post("/v1/events", refund)
    # then it replays and the order is still refunded ¥50 once
    assert again.status_code == 200
    assert again.json() == first.json()
    assert one(api.svc, tables.orders, order_id="o1")["refunded_amount"] == 5000
    assert len(rows(api.svc, tables.refunds)) == 1


def test_an_event_id_reused_for_another_body_is_a_conflict(api):
    # given an applied payment of ¥299
    assert api.post("/v1/events", paid("pay-1", "o1")).status_code == 200
    counts = row_counts(api.svc)
    # when the same id comes with another amount
    other = paid("pay-1", "o1", amount=19900, items=[item("coat", 19900)])
    response = api.post("/v1/events", other)
    # then it is a 409 naming the id, and nothing changes
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "event_id_reused"
    assert problem["field"] == "id"
    assert problem["status"] == 409
    assert row_counts(api.svc) == counts
    assert one(api.svc, tables.orders, order_id="o1")["amount"] == 29900


def test_the_order_of_keys_in_the_json_does_not_make_another_body(api):
    # given a login sent with its keys in one order
    body = login("l1", channel="app", device="iPhone")
    first = api.client.post(
        "/v1/events",
        content=json.dumps(body),
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert first.status_code == 200, first.json()
    # when it is sent again with every key (and the keys of data) in reverse order
    reordered = {k: body[k] for k in reversed(list(body))}
    reordered["data"] = {k: body["data"][k] for k in reversed(list(body["data"]))}
    text = json.dumps(reordered, indent=2)
    assert text.index('"member_id"') < text.index('"id"')
    again = api.client.post(
        "/v1/events",
        content=text,
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    # then it is the same event, replayed
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert one(api.svc, tables.logins, member_id="u1")["count"] == 1


def test_event_ids_are_unique_per_sender_not_across_senders(api):
    # given a store with its own key
    assert api.post("/v1/owners", {"id": "s1", "name": "优衣库旗舰店"}).status_code == 201
    store_key = api.new_key("s1")
    other_store_key = api.new_key("s1")
    # when the store and the platform each send their own event "e1"
    by_store = api.post("/v1/events", login("e1", "u1"), key=store_key)
    by_platform = api.post("/v1/events", login("e1", "u2"))
    # then both apply: the id is the sender's
    assert by_store.status_code == 200, by_store.json()
    assert by_platform.status_code == 200, by_platform.json()
    assert "Idempotent-Replayed" not in by_platform.headers
    assert inbox(api.svc, "e1", sender="s1")["member_id"] == "u1"
    assert inbox(api.svc, "e1", sender="platform")["member_id"] == "u2"
    assert len(rows(api.svc, tables.logins)) == 2
    # and another key of the same store is the same sender: its "e1" replays
    replay = api.post("/v1/events", login("e1", "u1"), key=other_store_key)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == by_store.json()
    # while the platform reusing its "e1" for another body is a conflict
    reused = api.post("/v1/events", login("e1", "u3"))
    assert reused.status_code == 409
    assert reused.json()["code"] == "event_id_reused"


# ---------------------------------------------------------------- batches


def post_batch(api, events, key=None):
    return api.post("/v1/events:batch", {"events": events}, key=key)


def test_a_batch_gives_each_event_its_own_result_in_the_order_sent(api):
    # given a batch whose members are not in alphabetical order, with one bad event and one
    # a rule refuses
    events = [
        registered("b1", "zoe", phone="13900139000"),
        paid("b2", "o1", "alice"),
        {**login("b3", "mike"), "occurred_at": "2026-02-01T10:00:00"},  # no offset
        refunded("b4", "o1", "r1", 99999, member_id="alice"),  # more than was paid
        login("b5", "mike"),
        refunded("b6", "o1", "r2", 5000, member_id="alice"),
    ]
    # when it is posted
    response = post_batch(api, events)
    # then every event has its result at its own index
    assert response.status_code == 200, response.json()
    payload = response.json()
    results = payload["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["id"] for r in results] == ["b1", "b2", "b3", "b4", "b5", "b6"]
    assert [r["status"] for r in results] == [200, 200, 422, 409, 200, 200]
    assert [r["outcome"] for r in results] == [
        "applied",
        "applied",
        "rejected",
        "rejected",
        "applied",
        "applied",
    ]
    assert (payload["applied"], payload["rejected"], payload["deferred"]) == (4, 2, 0)
    assert results[2]["result"]["field"] == "occurred_at"
    assert results[3]["result"]["code"] == "refund_exceeds_order"
    refund = results[5]["result"]["effects"]
    assert the_effect(refund, "order.refunded")["refunded_total"] == 5000
    # and the refund cancelled its share of the order's pending points (299 × 50/299)
    assert the_effect(refund, "points.cancelled")["points"] == 50
    # and the bad events sank nothing but themselves
    assert sorted(r["event_id"] for r in rows(api.svc, tables.events)) == [
        "b1",
        "b2",
        "b5",
        "b6",
    ]
    assert [r["refund_id"] for r in rows(api.svc, tables.refunds)] == ["r2"]
    assert one(api.svc, tables.orders, order_id="o1")["refunded_amount"] == 5000
    assert one(api.svc, tables.logins, member_id="mike")["count"] == 1
    assert one(api.svc, tables.members, member_id="zoe")["phone"] == "13900139000"


def test_a_resent_batch_replays_every_event(api):
    # given an applied batch
    events = [paid("b1", "o1"), login("b2"), login("b3", "u2")]
    first = post_batch(api, events).json()
    counts = row_counts(api.svc)
    # when the same batch is sent again
    again = post_batch(api, events).json()
    # then each event replays its first result and nothing is written twice
    assert [r["outcome"] for r in again["results"]] == ["replayed"] * 3
    assert [r["result"] for r in again["results"]] == [r["result"] for r in first["results"]]
    assert again["replayed"] == 3
    assert row_counts(api.svc) == counts


def test_an_event_sent_singly_replays_inside_a_later_batch(api):
    # given a payment sent on its own
    single = api.post("/v1/events", paid("pay-1", "o1")).json()
    # when a batch repeats it beside a new event and one reusing an id for another body
    response = post_batch(api, [login("l1"), paid("pay-1", "o1"), paid("pay-1", "o2")])
    results = response.json()["results"]
    # then the repeat replays, the new one applies and the reuse conflicts
    assert [r["outcome"] for r in results] == ["applied", "replayed", "rejected"]
    assert results[1]["result"] == single
    assert results[2]["result"]["code"] == "event_id_reused"
    assert [o["order_id"] for o in rows(api.svc, tables.orders)] == ["o1"]


def test_a_batch_of_more_than_a_thousand_events_is_refused_whole(api):
    # given 1001 logins
    events = [login(f"l{i}", f"u{i}") for i in range(1001)]
    counts = row_counts(api.svc)
    # when they are posted as one batch
    response = post_batch(api, events)
    # then the batch is refused as too large and nothing is written
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "batch_too_large"
    assert row_counts(api.svc) == counts


def test_a_batch_of_exactly_a_thousand_events_is_accepted(api):
    # given 1000 logins of 10 members
    events = [login(f"l{i}", f"u{i % 10}") for i in range(1000)]
    # when they are posted as one batch
    response = post_batch(api, events)
    # then all apply and each member has 100 logins counted
    assert response.status_code == 200
    assert response.json()["applied"] == 1000
    assert {r["count"] for r in rows(api.svc, tables.logins)} == {100}


def test_a_batch_entry_that_is_not_an_event_fails_alone(api):
    # given a batch whose middle entry is a bare number
    response = post_batch(api, [login("l1"), 42, login("l2")])
    # then that entry is a 422 at its index and the others apply
    results = response.json()["results"]
    assert [(r["index"], r["id"], r["status"]) for r in results] == [
        (0, "l1", 200),
        (1, None, 422),
        (2, "l2", 200),
    ]
    assert results[1]["result"]["field"] == "body"
    assert one(api.svc, tables.logins, member_id="u1")["count"] == 2


def test_a_batch_body_without_an_events_list_is_refused(api):
    # when the body is not {"events": [...]}
    response = api.post("/v1/events:batch", [login("l1")])
    # then it is a 422 naming "events"
    assert response.status_code == 422
    assert response.json()["field"] == "events"
    assert row_counts(api.svc)["events"] == 0
