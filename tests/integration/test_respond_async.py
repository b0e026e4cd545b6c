"""``Prefer: respond-async`` on ``POST /v1/events``: answered once durable where it can be.

On PostgreSQL (group commit) an event that finds a leader at work is answered ``202 queued``
and applied by that leader; on SQLite, and whenever nobody is at work, the preference is not
applied and the answer is the outcome, as without the header.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from .bodies import item, paid
from .ledger import apply, assert_reconciled, document
from .threads import leader_at_work

ASYNC = {"Prefer": "respond-async, wait=5"}


def post(api: Any, body: dict[str, Any], headers: dict[str, str]) -> Any:
    return api.client.post("/v1/events", json=body, headers={**api.headers(), **headers})


def test_an_event_sent_with_respond_async_is_answered_queued_while_a_leader_works(api):
    # given the platform's 1 point per ¥1
    apply(api.svc, document())
    on_pg = api.svc.engine.dialect.name == "postgresql"
    # when a payment is sent preferring an early answer while a leader is at work
    with leader_at_work(api.svc) if on_pg else nullcontext():
        response = post(
            api, paid("pay-1", "o1", "u1", amount=1000, items=[item("coat", 1000)]), ASYNC
        )
        status = api.get("/v1/events/pay-1").json()
    if on_pg:
        # then on PostgreSQL it is answered at once, queued, and says so
        assert response.status_code == 202, response.text
        assert response.headers["Preference-Applied"] == "respond-async"
        assert response.json()["status"] == "queued"
        assert status["status"] == "queued"
        # and the next event, finding nobody at work, leads and applies both
        assert post(api, paid("pay-2", "o2", "u2"), ASYNC).status_code == 200
    else:
        # then on SQLite the preference is not applied: the answer is the outcome
        assert response.status_code == 200, response.text
        assert "Preference-Applied" not in response.headers
        assert status["status"] == "applied"
    applied = api.get("/v1/events/pay-1").json()
    assert applied["status"] == "applied"
    assert applied["result"]["effects"]
    assert_reconciled(api.svc)


def test_a_malformed_event_is_refused_at_once_even_when_not_waiting(api):
    # when an event missing its member, and one whose lines do not add up to its amount, are
    # sent preferring an early answer
    missing = paid("pay-1", "o1", "u1")
    del missing["member_id"]
    uneven = paid("pay-2", "o2", "u2", amount=1000, items=[item("coat", 999)])
    answers = [post(api, body, ASYNC) for body in (missing, uneven)]
    # then each is refused now, naming the field, and nothing is queued
    assert [a.status_code for a in answers] == [422, 422]
    assert answers[0].json()["field"] == "member_id"
    assert answers[1].json()["field"] == "data.items"
    for event_id in ("pay-1", "pay-2"):
        assert api.get(f"/v1/events/{event_id}").status_code == 404
