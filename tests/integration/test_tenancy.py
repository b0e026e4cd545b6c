"""Stores on the platform: each store's key speaks for that store and sees only its members."""

import pytest

from huiyuan.db import tables
from huiyuan.services import owners as owner_service

from .bodies import cancelled, completed, item, login, paid, refunded, registered
from .stored import inbox, one, row_counts, rows


@pytest.fixture
def stores(api):
    """Two stores with their own programs (one made over HTTP, one by the service) and keys."""
    response = api.post("/v1/owners", {"id": "store-a", "name": "优衣库旗舰店"})
    assert response.status_code == 201, response.json()
    assert response.json() == {
        "id": "store-a",
        "kind": "store",
        "name": "优衣库旗舰店",
        "programs": ["store-a"],
    }
    owner_service.add_store(api.svc, "store-b", "李宁官方店", actor="test")
    api.key_a = api.new_key("store-a")
    api.key_b = api.new_key("store-b")
    return api


def programs_of(api, member_id):
    return sorted(e["program_id"] for e in rows(api.svc, tables.enrollments, member_id=member_id))


def test_the_platform_lists_its_stores_and_their_programs(stores):
    # when the platform lists owners
    owners = stores.get("/v1/owners").json()["owners"]
    # then the platform and both stores are there with their programs
    assert {(o["id"], o["kind"], tuple(o["programs"])) for o in owners} == {
        ("platform", "platform", ("platform",)),
        ("store-a", "store", ("store-a",)),
        ("store-b", "store", ("store-b",)),
    }


def test_a_store_id_taken_or_a_store_key_cannot_register_stores(stores):
    # when the platform registers store-a again
    again = stores.post("/v1/owners", {"id": "store-a", "name": "again"})
    # then it is a conflict
    assert again.status_code == 409
    assert again.json()["code"] == "owner_exists"
    # and a store's key may not register stores at all
    by_store = stores.post("/v1/owners", {"id": "store-c", "name": "c"}, key=stores.key_a)
    assert by_store.status_code == 403
    assert by_store.json()["code"] == "scope_missing"
    assert {o["id"] for o in stores.get("/v1/owners").json()["owners"]} == {
        "platform",
        "store-a",
        "store-b",
    }


def test_a_store_key_cannot_send_events_for_another_store(stores):
    # given store-a's key
    before = row_counts(stores.svc)
    # when it sends a payment saying it happened in store-b
    response = stores.post("/v1/events", paid("pay-1", "o1", store_id="store-b"), key=stores.key_a)
    # then it is forbidden, naming store_id, and nothing is written
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "store_not_allowed"
    assert response.json()["field"] == "store_id"
    assert row_counts(stores.svc) == before


def test_a_store_batch_with_one_event_for_another_store_refuses_only_that_one(stores):
    # given store-a's batch of a login of its own and a payment claimed for store-b
    batch = {"events": [login("l1"), paid("pay-1", "o1", store_id="store-b")]}
    # when it is posted
    results = stores.post("/v1/events:batch", batch, key=stores.key_a).json()["results"]
    # then the login applies for store-a and the payment is forbidden
    assert [r["status"] for r in results] == [200, 403]
    assert results[1]["result"]["code"] == "store_not_allowed"
    assert inbox(stores.svc, "l1", sender="store-a")["store_id"] == "store-a"
    assert rows(stores.svc, tables.orders) == []


def test_a_store_keys_events_belong_to_its_store(stores):
    # when store-a's key sends a payment without naming a store
    response = stores.post("/v1/events", paid("pay-1", "o1"), key=stores.key_a)
    # then the event, the order and the member's enrollments are store-a's
    assert response.status_code == 200, response.json()
    assert response.json()["store_id"] == "store-a"
    assert inbox(stores.svc, "pay-1", sender="store-a")["store_id"] == "store-a"
    assert one(stores.svc, tables.orders, order_id="o1")["store_id"] == "store-a"
    assert programs_of(stores, "u1") == ["platform", "store-a"]
    # and naming its own store explicitly is the same
    own = stores.post("/v1/events", login("l1", store_id="store-a"), key=stores.key_a)
    assert own.status_code == 200, own.json()


def test_a_platform_event_in_a_store_enrolls_the_member_in_both_programs(stores):
    # when the platform reports a payment made in store-b
    response = stores.post("/v1/events", paid("pay-1", "o1", store_id="store-b"))
    # then the member joins the platform's program and store-b's
    assert response.status_code == 200, response.json()
    enrolled = [e for e in response.json()["effects"] if e["kind"] == "member.enrolled"]
    assert sorted(e["program_id"] for e in enrolled) == ["platform", "store-b"]
    assert programs_of(stores, "u1") == ["platform", "store-b"]
    # and a later payment in store-a adds store-a's program only
    stores.post("/v1/events", paid("pay-2", "o2", store_id="store-a"))
    assert programs_of(stores, "u1") == ["platform", "store-a", "store-b"]
    # while an event without a store enrolls in nothing new
    stores.post("/v1/events", login("l1"))
    assert len(rows(stores.svc, tables.enrollments, member_id="u1")) == 3


@pytest.mark.parametrize("store_id", ["store-z", "platform"])
def test_an_event_for_an_unknown_store_is_refused(stores, store_id):
    # given an event naming a store that does not exist (or the platform, which is no store)
    before = row_counts(stores.svc)
    response = stores.post("/v1/events", paid("pay-1", "o1", store_id=store_id))
    # then it is a 422 naming store_id, and nothing is written
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_store"
    assert response.json()["field"] == "store_id"
    assert row_counts(stores.svc) == before


def test_a_store_cannot_read_a_member_it_has_never_seen(stores):
    # given u1 known to the platform only and u2 known to store-b only
    stores.post("/v1/events", registered("reg-1", "u1"))
    stores.post("/v1/events", registered("reg-2", "u2", phone="13900139000"), key=stores.key_b)
    # when store-a reads them, and a member nobody knows
    responses = [stores.get(f"/v1/members/{m}", key=stores.key_a) for m in ("u1", "u2", "u404")]
    # then all three are the same 404: a store cannot tell "not yours" from "not there"
    assert [r.status_code for r in responses] == [404, 404, 404]
    assert {r.json()["code"] for r in responses} == {"member_not_found"}
    assert responses[0].json()["detail"] == "no member 'u1'"


def test_a_store_sees_its_members_with_only_its_own_enrollments_and_orders(stores):
    # given a member who bought ¥299 in store-a and ¥199 in store-b
    stores.post("/v1/events", registered("reg-1"))
    stores.post("/v1/events", paid("pay-a", "oa"), key=stores.key_a)
    coat = paid("pay-b", "ob", amount=19900, items=[item("coat", 19900)])
    stores.post("/v1/events", coat, key=stores.key_b)
    # when store-a reads the member
    response = stores.get("/v1/members/u1", key=stores.key_a)
    # then it sees the profile, its own program only and its own order only
    assert response.status_code == 200, response.json()
    member = response.json()
    assert member["profile"]["phone"] == "13800138000"
    assert [e["program_id"] for e in member["enrollments"]] == ["store-a"]
    assert member["activity"]["orders"] == 1
    assert member["activity"]["paid_total"] == 29900
    # while the platform sees every program and every order
    platform_view = stores.get("/v1/members/u1").json()
    assert sorted(e["program_id"] for e in platform_view["enrollments"]) == [
        "platform",
        "store-a",
        "store-b",
    ]
    assert platform_view["activity"]["paid_total"] == 29900 + 19900


def test_a_store_cannot_complete_cancel_or_refund_another_stores_order(stores):
    # given u1's ¥299 order in store-a
    assert stores.post("/v1/events", paid("pay-a", "oa"), key=stores.key_a).status_code == 200
    stores.post("/v1/events", login("l1"), key=stores.key_b)  # u1 is store-b's member too
    before = row_counts(stores.svc)
    # when store-b's key tries to complete, cancel or refund it
    attempts = [
        completed("b-done", "oa"),
        cancelled("b-cancel", "oa"),
        refunded("b-refund", "oa", "rb", 100),
    ]
    responses = [stores.post("/v1/events", body, key=stores.key_b) for body in attempts]
    # then each is refused, and the order is untouched
    assert [r.status_code for r in responses] == [409, 409, 409], [r.json() for r in responses]
    assert {r.json()["code"] for r in responses} == {"order_store_mismatch"}
    assert {r.json()["field"] for r in responses} == {"store_id"}
    assert row_counts(stores.svc) == before
    order = one(stores.svc, tables.orders, order_id="oa")
    assert (order["status"], order["refunded_amount"]) == ("paid", 0)
    # while store-a itself, and the platform, may move it
    done = stores.post("/v1/events", completed("a-done", "oa"), key=stores.key_a)
    assert done.status_code == 200, done.json()
    refund = stores.post("/v1/events", refunded("p-refund", "oa", "rp", 100))
    assert refund.status_code == 200, refund.json()


def test_a_store_cannot_look_up_another_senders_event(stores):
    # given an event sent by the platform
    stores.post("/v1/events", login("l1"))
    # when store-a asks for it by id
    response = stores.get("/v1/events/l1", key=stores.key_a)
    # then it is not found; the platform finds it
    assert response.status_code == 404
    assert response.json()["code"] == "event_not_found"
    assert stores.get("/v1/events/l1").json()["status"] == "applied"


def test_a_store_without_a_program_enrolls_members_in_the_platform_only(stores):
    # given a store registered without a program of its own
    response = stores.post("/v1/owners", {"id": "store-c", "name": "c", "program": False})
    assert response.status_code == 201
    assert response.json()["programs"] == []
    # when it reports a login
    key_c = stores.new_key("store-c")
    assert stores.post("/v1/events", login("l1"), key=key_c).status_code == 200
    # then the member is in the platform's program only
    assert programs_of(stores, "u1") == ["platform"]


# ---------------------------------------------------------------- scopes


def test_a_read_only_key_cannot_send_events(stores):
    # given a read-only key of the platform and of store-a
    readers = [stores.new_key("platform", "read"), stores.new_key("store-a", "read")]
    before = row_counts(stores.svc)
    for key in readers:
        # when it sends an event, singly or in a batch
        single = stores.post("/v1/events", login("l1"), key=key)
        batch = stores.post("/v1/events:batch", {"events": [login("l2")]}, key=key)
        # then it is forbidden for lack of the write scope
        assert single.status_code == 403
        assert single.json()["code"] == "scope_missing"
        assert batch.status_code == 403
        assert batch.json()["code"] == "scope_missing"
    assert row_counts(stores.svc) == before


def test_a_write_only_key_cannot_read_members(stores):
    # given a write-only key that has sent a registration
    writer = stores.new_key("platform", "write")
    assert stores.post("/v1/events", registered("reg-1"), key=writer).status_code == 200
    # when it reads the member, or searches by phone
    by_id = stores.get("/v1/members/u1", key=writer)
    by_phone = stores.get("/v1/members", key=writer, phone="13800138000")
    # then both are forbidden for lack of the read scope
    assert (by_id.status_code, by_phone.status_code) == (403, 403)
    assert by_id.json()["code"] == by_phone.json()["code"] == "scope_missing"
    # yet it may follow its own events
    assert stores.get("/v1/events/reg-1", key=writer).json()["status"] == "applied"


def test_a_read_key_reads_members_but_not_event_status(stores):
    # given a registered member and a read-only key
    stores.post("/v1/events", registered("reg-1"))
    reader = stores.new_key("platform", "read")
    # then it reads the member, but the event status is for senders
    assert stores.get("/v1/members/u1", key=reader).status_code == 200
    assert stores.get("/v1/events/reg-1", key=reader).status_code == 403


# ---------------------------------------------------------------- finding by phone


@pytest.mark.parametrize(
    "typed", ["13800138000", "+86 138-0013-8000", "008613800138000", "138 0013 8000"]
)
def test_customer_service_finds_a_member_by_phone_however_typed(stores, typed):
    # given a member registered with "+86 138-0013-8000"
    stores.post("/v1/events", registered("reg-1", phone="+86 138-0013-8000"))
    stores.post("/v1/events", registered("reg-2", "u2", phone="13900139000"))
    # when customer service searches with the number in any form
    response = stores.get("/v1/members", phone=typed)
    # then that member, and only that member, is found
    assert response.status_code == 200, response.json()
    assert [m["member_id"] for m in response.json()["members"]] == ["u1"]


def test_a_phone_search_by_a_store_finds_only_its_members(stores):
    # given two members sharing a phone: u1 known to store-a, u2 known to the platform only
    stores.post("/v1/events", registered("reg-1", "u1"), key=stores.key_a)
    stores.post("/v1/events", registered("reg-2", "u2"))
    # when the platform and the stores search that phone
    by_platform = stores.get("/v1/members", phone="13800138000").json()["members"]
    by_a = stores.get("/v1/members", key=stores.key_a, phone="+8613800138000").json()["members"]
    by_b = stores.get("/v1/members", key=stores.key_b, phone="13800138000").json()["members"]
    # then each sees only whom it may
    assert [m["member_id"] for m in by_platform] == ["u1", "u2"]
    assert [m["member_id"] for m in by_a] == ["u1"]
    assert [e["program_id"] for e in by_a[0]["enrollments"]] == ["store-a"]
    assert by_b == []


@pytest.mark.parametrize(("params", "field"), [({"phone": "12ab"}, "phone"), ({}, "phone")])
def test_a_phone_search_needs_a_phone(stores, params, field):
    # when the search has no phone, or one that is not a number
    response = stores.get("/v1/members", **params)
    # then it is a 422 naming the phone
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field


def test_a_store_cannot_overwrite_a_platform_members_profile(stores):
    # given a member the platform registered with a phone
    stores.post(
        "/v1/events",
        {
            "id": "reg-p",
            "type": "member.registered",
            "occurred_at": "2026-02-01T10:00:00+08:00",
            "member_id": "shared",
            "data": {"phone": "13800000001", "name": "王芳"},
        },
    )
    key = stores.new_key("store-a", "read,write")
    # when store-a sends a profile update about them
    response = stores.post(
        "/v1/events",
        {
            "id": "upd-a",
            "type": "member.updated",
            "occurred_at": "2026-02-02T10:00:00+08:00",
            "member_id": "shared",
            "data": {"phone": "13900000009", "name": "冒名"},
        },
        key=key,
    )
    # then the event applies (the member joins store-a's program) but the profile is unchanged
    assert response.status_code == 200, response.json()
    assert {"kind": "profile.not_owned"} in response.json()["effects"]
    profile = stores.get("/v1/members/shared").json()["profile"]
    assert (profile["phone"], profile["name"]) == ("13800000001", "王芳")
