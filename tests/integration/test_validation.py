"""A bad event gets a 4xx problem naming the field, and nothing of it is written."""

import copy

import pytest

from huiyuan.services import principals

from .bodies import event, item, paid, refunded, registered
from .stored import row_counts

PROBLEM = "application/problem+json"


@pytest.fixture
def shop(api):
    """A registered member with a paid ¥299 order, so there are rows to leave alone."""
    for body in (registered("reg-1"), paid("pay-1", "o1")):
        assert api.post("/v1/events", body).status_code == 200
    return api


def with_change(body, path, value):
    """A copy of the body with one field (a dotted path; ``[i]`` for list items) set or removed."""
    body = copy.deepcopy(body)
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    target = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is REMOVE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return body


REMOVE = object()
ORDER = paid("pay-2", "o2")


def assert_refused(api, body, status, code, field):
    before = row_counts(api.svc)
    response = api.post("/v1/events", body)
    assert response.status_code == status, response.json()
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["field"] == field
    assert problem["type"].endswith(code)
    assert problem["detail"]
    assert row_counts(api.svc) == before, "a refused event must write nothing"
    return problem


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("data.amount", 129.9, "data.amount"),
        ("data.amount", "12990", "data.amount"),
        ("data.amount", True, "data.amount"),
        ("data.amount", -100, "data.amount"),
        ("data.amount", REMOVE, "data.amount"),
        ("data.shipping_fee", 10.0, "data.shipping_fee"),
        ("data.items[0].paid_amount", 199.0, "data.items[0].paid_amount"),
        ("data.items[1].quantity", 0, "data.items[1].quantity"),
        ("data.items[1].sku", "围巾", "data.items[1].sku"),
        ("data.items", [], "data.items"),
        ("data.channel", "tiktok", "data.channel"),
        ("occurred_at", "2026-02-01T10:00:00", "occurred_at"),
        ("occurred_at", "yesterday", "occurred_at"),
        ("occurred_at", "2026-03-02T10:00:00+08:00", "occurred_at"),  # a day in the future
        ("type", "order.shipped", "type"),
        ("type", "custom.Bad-Name", "type"),
        ("member_id", REMOVE, "member_id"),
        ("member_id", "", "member_id"),
        ("id", REMOVE, "id"),
        ("id", "has space", "id"),
        ("store_id", "no/slash", "store_id"),
        ("data", [1, 2], "data"),
    ],
)
def test_an_invalid_payment_is_refused_naming_the_field(shop, path, value, field):
    # given a payment with one field wrong
    body = with_change(ORDER, path, value)
    # when it is posted
    problem = assert_refused(shop, body, 422, "validation_failed", field)
    # then the problem lists the field among its errors, and nothing was written
    assert field in [e["field"] for e in problem["errors"]]
    assert all(e["message"] for e in problem["errors"])


def test_a_misspelt_field_is_refused_instead_of_silently_missing(shop):
    # given a payment whose amount is spelt "ammount"
    body = copy.deepcopy(ORDER)
    body["data"]["ammount"] = body["data"].pop("amount")
    # when it is posted
    response = shop.post("/v1/events", body)
    # then both the unknown field and the missing one are named
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"data.ammount", "data.amount"}
    assert response.json()["field"] in fields


def test_an_unknown_envelope_field_is_refused(shop):
    # given an event with a top-level field the envelope does not have
    body = {**ORDER, "occured_at": ORDER["occurred_at"]}
    # then it is refused naming it
    problem = assert_refused(shop, body, 422, "validation_failed", "occured_at")
    assert problem["errors"] == [
        {"field": "occured_at", "message": problem["errors"][0]["message"]}
    ]


def test_every_bad_field_is_listed(shop):
    # given a payment with a float amount and a string quantity on its second line
    body = with_change(with_change(ORDER, "data.amount", 299.0), "data.items[1].quantity", "2")
    # when it is posted
    problem = assert_refused(shop, body, 422, "validation_failed", "data.amount")
    # then both fields are listed
    assert [e["field"] for e in problem["errors"]] == ["data.amount", "data.items[1].quantity"]
    assert "(and 1 more)" in problem["detail"]


def test_items_that_do_not_add_up_to_the_amount_are_refused(shop):
    # given a ¥299 payment whose lines add up to ¥298
    body = paid("pay-2", "o2", items=[item("coat", 19900), item("scarf", 9900, quantity=2)])
    # then it is refused as an amount mismatch on data.items, and nothing is written
    assert_refused(shop, body, 422, "amount_mismatch", "data.items")


def test_the_same_sku_on_two_lines_is_refused(shop):
    # given a payment listing the coat twice
    body = paid("pay-2", "o2", items=[item("coat", 19900), item("coat", 10000)])
    # then it is refused naming the second line
    assert_refused(shop, body, 422, "duplicate_sku", "data.items[1].sku")


def test_refund_items_that_do_not_add_up_to_the_refund_are_refused(shop):
    # given a ¥60 refund whose single item returns ¥50
    body = refunded(
        "ref-1", "o1", "r1", 6000, items=[{"sku": "scarf", "quantity": 1, "amount": 5000}]
    )
    # then it is refused, and the order is not refunded
    assert_refused(shop, body, 422, "amount_mismatch", "data.items")


def test_a_refund_of_an_item_not_in_the_order_is_refused(shop):
    # given a refund naming a hat the order does not have
    body = refunded("ref-1", "o1", "r1", 100, items=[{"sku": "hat", "quantity": 1, "amount": 100}])
    # then it is refused naming that sku
    assert_refused(shop, body, 422, "refund_item_unknown", "data.items[0].sku")


@pytest.mark.parametrize("amount", [0, 12.5, "100"])
def test_a_refund_amount_must_be_positive_integer_fen(shop, amount):
    # when a refund of zero, a float or a string comes
    body = refunded("ref-1", "o1", "r1", amount)
    # then it is refused on data.amount
    assert_refused(shop, body, 422, "validation_failed", "data.amount")


def test_a_registration_with_a_bad_phone_creates_no_member(api):
    # given a brand-new member registering with something that is not a phone
    body = registered("reg-9", "u9", phone="call me maybe")
    # then it is refused on data.phone, and neither the member nor the enrollment exists
    assert_refused(api, body, 422, "phone_invalid", "data.phone")
    assert api.get("/v1/members/u9").status_code == 404


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("member.updated", {"email": "not-an-email"}, "data.email"),
        ("member.updated", {"gender": "m"}, "data.gender"),
        ("member.updated", {"birthday": "1990-13-01"}, "data.birthday"),
        ("member.updated", {"addresses": [{"recipient": "张伟"}]}, "data.addresses[0].phone"),
        ("member.login", {"channel": "fax"}, "data.channel"),
        ("review.approved", {"review_id": "rv1", "rating": 6}, "data.rating"),
        ("review.approved", {}, "data.review_id"),
        ("wallet.recharged", {"recharge_id": "rc1", "amount": 99.5}, "data.amount"),
        ("membership.purchased", {"purchase_id": "p1", "plan_id": "plus"}, "data.amount"),
        ("order.completed", {}, "data.order_id"),
        ("order.refunded", {"order_id": "o1", "amount": 100}, "data.refund_id"),
    ],
)
def test_each_event_type_checks_its_own_data(shop, event_type, data, field):
    # given an event whose data breaks its type's rules
    body = event("bad-1", event_type, **data)
    # then it is refused naming the field
    problem = assert_refused(shop, body, 422, "validation_failed", field)
    assert field in [e["field"] for e in problem["errors"]]


def test_an_event_that_is_not_an_object_is_refused(shop):
    # when the body is a JSON list
    problem = assert_refused(shop, [ORDER], 422, "validation_failed", "body")
    # then the problem says what an event is
    assert "object" in problem["detail"]


@pytest.mark.parametrize("raw", [b'{"id": "e1", "type": ', b"not json at all", b"\xff\xfe{}", b""])
def test_a_body_that_is_not_json_is_a_bad_request(shop, raw):
    # given a body that does not parse as JSON
    before = row_counts(shop.svc)
    # when it is posted
    response = shop.client.post(
        "/v1/events",
        content=raw,
        headers={**shop.headers(), "Content-Type": "application/json"},
    )
    # then it is a 400 problem and nothing is written
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "malformed_json"
    assert row_counts(shop.svc) == before


def test_a_batch_that_is_not_json_is_a_bad_request(shop):
    # when a batch body does not parse
    response = shop.client.post(
        "/v1/events:batch", content=b"{[", headers={**shop.headers(), "Content-Type": "text/plain"}
    )
    # then it is a 400 problem
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer hy_nope_secret"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-Api-Key": "not-a-key"},
    ],
)
def test_an_event_without_a_valid_api_key_is_unauthorized(shop, headers):
    # given no key, an empty one, an unknown one, or another scheme
    before = row_counts(shop.svc)
    # when an event is posted with it
    response = shop.client.post("/v1/events", json=ORDER, headers=headers)
    # then it is a 401 asking for a bearer key, and nothing is written
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthorized"
    assert row_counts(shop.svc) == before


def test_a_key_with_a_wrong_secret_or_revoked_is_unauthorized(shop):
    # given a valid key, one with its secret altered, and a revoked key
    key = shop.new_key("platform")
    prefix = key.split("_")[1]
    forged = f"hy_{prefix}_{'x' * 32}"
    revoked = principals.create_api_key(
        shop.svc, "platform", (principals.Scope.WRITE,), "old", actor="test"
    )
    principals.revoke_api_key(shop.svc, revoked.prefix, actor="test")
    # then the forged and the revoked key are refused, while the valid key (also sent as
    # X-Api-Key) works
    assert shop.post("/v1/events", ORDER, key=forged).status_code == 401
    assert shop.post("/v1/events", ORDER, key=revoked.key).status_code == 401
    response = shop.client.post("/v1/events", json=ORDER, headers={"X-Api-Key": key})
    assert response.status_code == 200, response.json()


def test_reading_a_member_without_a_key_is_unauthorized(shop):
    # when a member is read without a key
    response = shop.client.get("/v1/members/u1")
    # then it is a 401
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
