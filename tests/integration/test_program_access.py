"""Which program a member endpoint is about, and who may use it — one rule on every endpoint, on
SQLite and PostgreSQL: a call naming no program means the platform's program for a platform key
and the store's own program for a store's key; a store's key naming another owner's program is
``403 program_not_enrolled`` (``field: "program_id"``); an unknown program is
``404 program_not_enrolled``.
"""

import pytest

from huiyuan.services import owners as owner_service

from .bodies import completed, item, paid
from .ledger import BASE_RULE, apply, iso
from .stored import row_counts


def named(text):
    return {"zh": text, "en": text}


STORE_DOCUMENT = {
    "points": {"earning": [BASE_RULE]},
    "growth": {"rules": [{"kind": "purchase", "id": "purchase", "points": 1}]},
    "tiers": {
        "tiers": [
            {"id": "member", "name": named("member"), "threshold": 0},
            {"id": "vip", "name": named("vip"), "threshold": 1000},
        ]
    },
    "benefits": [
        {"id": "off", "kind": "percent_discount", "name": named("5% off"), "percent_off": "5"}
    ],
    "plans": [
        {
            "id": "plus",
            "name": named("PLUS"),
            "price_fen": 9900,
            "period": "monthly",
            "benefits": ["off"],
        }
    ],
}

READS = [
    ("/v1/members/u1/tier", {}),
    ("/v1/members/u1/growth/entries", {}),
    ("/v1/members/u1/membership", {}),
    ("/v1/members/u1/benefits", {}),
    ("/v1/members/u1/membership/savings", {"plan": "plus"}),
    ("/v1/members/u1/points", {}),
    ("/v1/members/u1/points/entries", {}),
    ("/v1/members/u1/wallet", {}),
    ("/v1/members/u1/wallet/entries", {}),
]
WRITES = [
    ("PUT", "/v1/members/u1/tier", {"tier_id": "vip", "reason": "门店补偿"}),
    ("POST", "/v1/members/u1/points/reservations", {"id": "hold-1", "amount": 10}),
    ("POST", "/v1/members/u1/points/redemptions", {"id": "red-1", "amount": 10, "reason": "x"}),
    ("POST", "/v1/members/u1/points/adjustments", {"id": "adj-1", "amount": 5, "reason": "x"}),
    ("POST", "/v1/members/u1/wallet/payments", {"id": "pay-1", "amount": 100}),
]


@pytest.fixture
def store(api, clock):
    """Store s1 runs its own program (points, growth, a ladder, a plan); member u1 completed a
    ¥500 order there, sent with the store's key. Store s9 runs no program."""
    owner_service.add_store(api.svc, "s1", "优衣库", actor="test")
    owner_service.add_store(api.svc, "s9", "无会员店", program=False, actor="test")
    apply(api.svc, STORE_DOCUMENT, program="s1")
    api.s1_admin = api.new_key("s1", "admin")
    api.s9_admin = api.new_key("s9", "admin")
    at = iso(clock())
    body = paid("pay-o1", "o1", amount=50000, items=[item("coat", 50000)], occurred_at=at)
    for event in (body, completed("done-o1", "o1", occurred_at=at)):
        response = api.post("/v1/events", event, key=api.s1_admin)
        assert response.status_code == 200, response.json()
    return api


def call(api, method, path, body, key, **params):
    headers = api.headers(key)
    if method == "GET":
        return api.client.get(path, params={**body, **params}, headers=headers)
    return api.client.request(method, path, json={**body, **params}, headers=headers)


@pytest.mark.parametrize(("path", "params"), READS)
def test_a_store_key_naming_no_program_reads_the_stores_own(store, path, params):
    # when the store reads its member naming no program
    response = store.get(path, store.s1_admin, **params)
    # then it reads its own program, whichever endpoint it is
    assert response.status_code == 200, response.json()
    assert response.json()["program_id"] == "s1"


@pytest.mark.parametrize(("path", "params"), READS)
def test_a_platform_key_naming_no_program_reads_the_platforms(store, path, params):
    # given the platform's program with the same ladder and plan as the store's
    apply(store.svc, STORE_DOCUMENT)
    # when the platform reads the member naming no program, then it reads its own program
    response = store.get(path, **params)
    assert response.status_code == 200, response.json()
    assert response.json()["program_id"] == "platform"


def test_a_store_key_naming_no_program_sets_a_tier_in_the_stores_own(store):
    # when the store sets its member's tier by hand without naming a program
    response = call(store, *WRITES[0], store.s1_admin)
    # then it is set in the store's program
    assert response.status_code == 200, response.json()
    assert (response.json()["program_id"], response.json()["tier"]["id"]) == ("s1", "vip")


@pytest.mark.parametrize(
    ("method", "path", "body"), [("GET", path, params) for path, params in READS] + WRITES
)
def test_a_store_key_naming_the_platforms_program_is_refused_alike_everywhere(
    store, method, path, body
):
    before = row_counts(store.svc)
    # when the store names the platform's program
    response = call(store, method, path, body, store.s1_admin, program_id="platform")
    # then every endpoint answers the same: 403 program_not_enrolled on program_id
    assert response.status_code == 403, response.json()
    assert (response.json()["code"], response.json()["field"]) == (
        "program_not_enrolled",
        "program_id",
    )
    # and nothing is written
    assert row_counts(store.svc) == before


@pytest.mark.parametrize(
    ("method", "path", "body"), [("GET", path, params) for path, params in READS] + WRITES
)
def test_an_unknown_program_is_a_404_alike_everywhere(store, method, path, body):
    for key in (None, store.s1_admin):
        response = call(store, method, path, body, key, program_id="nope")
        assert response.status_code == 404, response.json()
        assert response.json()["code"] == "program_not_enrolled"


@pytest.mark.parametrize(("path", "params"), READS)
def test_a_store_running_no_program_must_name_one(store, path, params):
    # when a store without a program of its own calls naming none
    response = store.get(path, store.s9_admin, **params)
    # then there is no program to read
    assert response.status_code == 404, response.json()
    assert response.json()["code"] == "program_not_enrolled"
    assert "runs no program" in response.json()["detail"]
