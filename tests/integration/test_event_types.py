"""Every event type is accepted over HTTP and leaves the facts it should in the database."""

from datetime import UTC, date, datetime

import pytest

from huiyuan.db import tables
from huiyuan.services.programs import apply_document

from .bodies import cancelled, completed, event, item, login, paid, refunded, registered
from .stored import inbox, one, row_counts, rows, the_effect


def send(api, body, status=200):
    response = api.post("/v1/events", body)
    assert response.status_code == status, response.json()
    return response.json()


def shanghai(text):
    return datetime.fromisoformat(text).astimezone(UTC)


def test_a_registration_stores_the_profile_and_enrolls_the_member(api):
    # given a member registering in the app with a full profile
    body = registered(
        "reg-1",
        phone="+86 138-0013-8000",
        name="张伟",
        nickname="伟伟",
        gender="male",
        birthday="1990-05-20",
        region="上海",
        email="zhangwei@example.com",
        education="本科",
        occupation="工程师",
        inviter_id="u0",
        addresses=[
            {"recipient": "张伟", "phone": "13800138000", "region": "上海 浦东", "detail": "1 号"}
        ],
        invoice_titles=[{"kind": "company", "title": "某某公司", "tax_id": "91310000X"}],
    )
    # when it is posted
    result = send(api, body)
    # then it is applied, creating and enrolling the member
    assert result["status"] == "applied"
    assert {"kind": "member.created"} in result["effects"]
    assert {"kind": "member.enrolled", "program_id": "platform"} in result["effects"]
    # and the inbox keeps the event with its response
    stored = inbox(api.svc, "reg-1")
    assert stored["status"] == "applied"
    assert stored["response_status"] == 200
    assert stored["type"] == "member.registered"
    assert stored["applied_at"] is not None
    # and the member's profile holds every field, the phone in its stored form
    member = one(api.svc, tables.members, member_id="u1")
    assert member["phone"] == "13800138000"
    assert (member["name"], member["nickname"], member["gender"]) == ("张伟", "伟伟", "male")
    assert member["birthday"] == date(1990, 5, 20)
    assert (member["region"], member["email"]) == ("上海", "zhangwei@example.com")
    assert (member["education"], member["occupation"]) == ("本科", "工程师")
    assert member["origin"] == "registered"
    assert member["registered_at"] == shanghai("2026-02-01T10:00:00+08:00")
    assert member["registration_channel"] == "app"
    assert member["inviter_id"] == "u0"
    assert member["addresses"][0]["region"] == "上海 浦东"
    assert member["addresses"][0]["is_default"] is False
    assert member["invoice_titles"] == [
        {"kind": "company", "title": "某某公司", "tax_id": "91310000X", "is_default": False}
    ]
    assert [e["program_id"] for e in rows(api.svc, tables.enrollments, member_id="u1")] == [
        "platform"
    ]


def test_a_member_first_seen_through_an_order_becomes_registered_on_registering(api):
    # given a member Huiyuan first saw through a payment
    send(api, paid("pay-1", "o1"))
    assert one(api.svc, tables.members, member_id="u1")["origin"] == "auto"
    # when their registration arrives
    result = send(api, registered("reg-1", occurred_at="2026-02-02T10:00:00+08:00"))
    # then they are registered, with the registration's profile, and not enrolled again
    assert {"kind": "member.registered", "channel": "app"} in result["effects"]
    assert not [e for e in result["effects"] if e["kind"] in ("member.created", "member.enrolled")]
    member = one(api.svc, tables.members, member_id="u1")
    assert (member["origin"], member["name"]) == ("registered", "张伟")
    assert member["registered_at"] == shanghai("2026-02-02T10:00:00+08:00")
    # and a second registration changes nothing of the registration
    again = send(api, registered("reg-2", occurred_at="2026-02-03T10:00:00+08:00", channel="h5"))
    assert {"kind": "member.already_registered"} in again["effects"]
    member = one(api.svc, tables.members, member_id="u1")
    assert member["registration_channel"] == "app"
    assert member["registered_at"] == shanghai("2026-02-02T10:00:00+08:00")


def test_a_member_update_changes_only_the_fields_it_names(api):
    # given a registered member with a name, nickname and email
    send(api, registered("reg-1", nickname="伟伟", email="old@example.com", region="上海"))
    # when an update names only the nickname
    result = send(
        api,
        event("upd-1", "member.updated", occurred_at="2026-02-02T10:00:00+08:00", nickname="小张"),
    )
    # then only the nickname changes
    assert result["effects"] == [{"kind": "profile.updated", "fields": ["nickname"]}]
    member = one(api.svc, tables.members, member_id="u1")
    assert member["nickname"] == "小张"
    assert (member["name"], member["email"], member["region"]) == (
        "张伟",
        "old@example.com",
        "上海",
    )
    assert member["phone"] == "13800138000"


def test_a_null_in_a_member_update_clears_that_field(api):
    # given a registered member with an email, a phone and an address
    send(
        api,
        registered(
            "reg-1",
            email="old@example.com",
            addresses=[{"recipient": "张伟", "phone": "1", "region": "上海", "detail": "1 号"}],
        ),
    )
    # when an update sends null for the email, the phone and the addresses
    send(
        api,
        event(
            "upd-1",
            "member.updated",
            occurred_at="2026-02-02T10:00:00+08:00",
            email=None,
            phone=None,
            addresses=None,
        ),
    )
    # then those are cleared and the rest is kept
    member = one(api.svc, tables.members, member_id="u1")
    assert member["email"] is None
    assert member["phone"] is None
    assert member["addresses"] == []
    assert member["name"] == "张伟"


def test_a_stale_member_update_arriving_late_is_ignored(api):
    # given a registration on Feb 1st and an update on Feb 3rd
    send(api, registered("reg-1"))
    send(
        api,
        event("upd-new", "member.updated", occurred_at="2026-02-03T10:00:00+08:00", name="新名"),
    )
    # when an update made on Feb 2nd arrives afterwards
    result = send(
        api,
        event("upd-old", "member.updated", occurred_at="2026-02-02T10:00:00+08:00", name="旧名"),
    )
    # then it is accepted but changes nothing
    assert result["status"] == "applied"
    assert result["effects"][0]["kind"] == "profile.stale_ignored"
    member = one(api.svc, tables.members, member_id="u1")
    assert member["name"] == "新名"
    assert member["profile_updated_at"] == shanghai("2026-02-03T10:00:00+08:00")


def test_a_login_counts_on_its_shanghai_business_day(api):
    # given a member
    send(api, registered("reg-1"))
    # when they log in at 23:59 and 00:01 Shanghai time (the same UTC date) and again at 08:00
    send(api, login("l1", occurred_at="2026-02-01T23:59:00+08:00", channel="app"))
    send(api, login("l2", occurred_at="2026-02-02T00:01:00+08:00", device="iPhone"))
    result = send(api, login("l3", occurred_at="2026-02-02T08:00:00+08:00"))
    # then the logins fall on two business days, the second counted twice
    assert result["effects"] == [{"kind": "login.recorded", "business_day": "2026-02-02"}]
    days = {r["business_day"]: r for r in rows(api.svc, tables.logins, member_id="u1")}
    assert sorted(days) == [date(2026, 2, 1), date(2026, 2, 2)]
    assert days[date(2026, 2, 1)]["count"] == 1
    assert days[date(2026, 2, 2)]["count"] == 2
    assert days[date(2026, 2, 2)]["first_at"] == shanghai("2026-02-02T00:01:00+08:00")
    # and the member's last login is the latest one
    member = one(api.svc, tables.members, member_id="u1")
    assert member["last_login_at"] == shanghai("2026-02-02T08:00:00+08:00")


def test_a_paid_order_is_stored_with_its_items(api):
    # given a member paying ¥299 for a coat and two scarves with ¥10 shipping
    body = paid(
        "pay-1",
        "o1",
        items=[
            item("coat", 19900, category="服装", brand="BrandA"),
            item("scarf", 10000, quantity=2, unit_price=6000),
        ],
        shipping_fee=1000,
        channel="mini_program",
    )
    # when it is posted
    result = send(api, body)
    # then the order and its lines are stored
    assert {"kind": "order.recorded", "order_id": "o1", "amount": 29900} in result["effects"]
    order = one(api.svc, tables.orders, order_id="o1")
    assert order["member_id"] == "u1"
    assert order["status"] == "paid"
    assert (order["amount"], order["shipping_fee"], order["refunded_amount"]) == (29900, 1000, 0)
    assert order["channel"] == "mini_program"
    assert order["paid_at"] == shanghai("2026-02-01T10:00:00+08:00")
    assert (order["sender"], order["paid_event_id"]) == ("platform", "pay-1")
    lines = rows(api.svc, tables.order_items, order_id="o1")
    assert [(li["line_no"], li["sku"], li["quantity"], li["paid_amount"]) for li in lines] == [
        (0, "coat", 1, 19900),
        (1, "scarf", 2, 10000),
    ]
    assert (lines[0]["category"], lines[0]["brand"]) == ("服装", "BrandA")
    assert lines[1]["unit_price"] == 6000
    # and the member it names was created on the fly and enrolled
    assert one(api.svc, tables.members, member_id="u1")["origin"] == "auto"
    assert inbox(api.svc, "pay-1")["status"] == "applied"


def test_a_completed_order_is_marked_completed(api):
    # given a paid order
    send(api, paid("pay-1", "o1"))
    # when it is completed
    result = send(api, completed("done-1", "o1", occurred_at="2026-02-05T10:00:00+08:00"))
    # then the order says so, and its pending points (1 per ¥1 by default) are released
    lot = one(api.svc, tables.point_lots, order_id="o1")
    assert result["effects"] == [
        {"kind": "order.completed", "order_id": "o1"},
        {"kind": "points.released", "program_id": "platform", "lot_id": lot["id"], "points": 299},
    ]
    assert (lot["status"], lot["remaining"]) == ("active", 299)
    order = one(api.svc, tables.orders, order_id="o1")
    assert order["status"] == "completed"
    assert order["completed_at"] == shanghai("2026-02-05T10:00:00+08:00")
    assert inbox(api.svc, "done-1")["status"] == "applied"


def test_a_cancelled_order_is_marked_cancelled(api):
    # given a paid order
    send(api, paid("pay-1", "o1"))
    # when it is cancelled
    send(api, cancelled("cancel-1", "o1", reason="changed my mind"))
    # then the order says so
    order = one(api.svc, tables.orders, order_id="o1")
    assert order["status"] == "cancelled"
    assert order["cancelled_at"] == shanghai("2026-02-01T10:00:00+08:00")
    assert inbox(api.svc, "cancel-1")["status"] == "applied"


def test_a_refund_is_recorded_against_the_order_and_its_items(api):
    # given a ¥299 order (coat ¥199, two scarves ¥100)
    send(api, paid("pay-1", "o1"))
    # when one scarf is returned for ¥50, then ¥20 is refunded without naming items
    first = send(
        api,
        refunded(
            "ref-1",
            "o1",
            "r1",
            5000,
            items=[{"sku": "scarf", "quantity": 1, "amount": 5000}],
            reason="too short",
        ),
    )
    send(api, refunded("ref-2", "o1", "r2", 2000))
    # then both refunds are recorded and the order's refunded total is ¥70
    assert the_effect(first["effects"], "order.refunded") == {
        "kind": "order.refunded",
        "order_id": "o1",
        "refund_id": "r1",
        "amount": 5000,
        "refunded_total": 5000,
    }
    # and the first refund cancelled its share of the order's pending points (299 × 50/299)
    lot = one(api.svc, tables.point_lots, order_id="o1")
    assert the_effect(first["effects"], "points.cancelled") == {
        "kind": "points.cancelled",
        "program_id": "platform",
        "lot_id": lot["id"],
        "points": 50,
        "debt": 0,
    }
    refunds = rows(api.svc, tables.refunds, order_id="o1")
    assert [(r["refund_id"], r["amount"]) for r in refunds] == [("r1", 5000), ("r2", 2000)]
    assert refunds[0]["reason"] == "too short"
    assert refunds[0]["items"] == [{"sku": "scarf", "quantity": 1, "amount": 5000}]
    assert one(api.svc, tables.orders, order_id="o1")["refunded_amount"] == 7000
    # and the scarf line counts one returned
    scarf = one(api.svc, tables.order_items, order_id="o1", sku="scarf")
    assert (scarf["refunded_quantity"], scarf["refunded_amount"]) == (1, 5000)
    coat = one(api.svc, tables.order_items, order_id="o1", sku="coat")
    assert (coat["refunded_quantity"], coat["refunded_amount"]) == (0, 0)


def test_an_approved_review_is_stored_and_a_deletion_marks_it(api):
    # given a member's order
    send(api, paid("pay-1", "o1"))
    # when their review with photos is approved
    send(
        api,
        event(
            "rev-1",
            "review.approved",
            review_id="rv1",
            order_id="o1",
            sku="coat",
            rating=5,
            has_photos=True,
        ),
    )
    # then it is stored
    review = one(api.svc, tables.reviews, review_id="rv1")
    assert (review["member_id"], review["order_id"], review["sku"]) == ("u1", "o1", "coat")
    assert (review["rating"], review["has_photos"], review["deleted_at"]) == (5, True, None)
    # when the review is deleted
    result = send(
        api,
        event(
            "rev-del-1", "review.deleted", occurred_at="2026-02-03T10:00:00+08:00", review_id="rv1"
        ),
    )
    # then it is marked deleted, not removed
    assert result["effects"] == [{"kind": "review.deleted", "review_id": "rv1"}]
    review = one(api.svc, tables.reviews, review_id="rv1")
    assert review["deleted_at"] == shanghai("2026-02-03T10:00:00+08:00")


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("custom.sign_in_streak", {"days": 7, "anything": {"goes": ["here"]}}),
        ("custom.birthday_gift", {}),
    ],
)
def test_events_kept_for_later_capabilities_are_recorded_in_the_inbox(api, event_type, data):
    # given a member
    send(api, registered("reg-1"))
    before = row_counts(api.svc)
    # when a plan purchase or a custom event arrives
    result = send(api, event("e-1", event_type, **data))
    # then it is applied and its data kept in the inbox
    assert result["status"] == "applied"
    assert result["type"] == event_type
    assert result["effects"] == [{"kind": "event.recorded"}]
    stored = inbox(api.svc, "e-1")
    assert (stored["status"], stored["type"]) == ("applied", event_type)
    assert stored["data"] == data
    assert stored["response_body"] == result
    # and nothing but the inbox row was written
    after = row_counts(api.svc)
    assert after["events"] == before["events"] + 1
    assert {k: v for k, v in after.items() if k != "events"} == {
        k: v for k, v in before.items() if k != "events"
    }


def test_a_share_is_recorded_and_earns_nothing_without_a_share_rule(api):
    # given a member, and a program whose (default) rules give nothing for sharing
    send(api, registered("reg-1"))
    before = row_counts(api.svc)
    # when they share a post
    data = {"content_id": "post-9", "target": "wechat"}
    result = send(api, event("e-1", "content.shared", **data))
    # then it is applied as a share and its data kept in the inbox
    assert (result["status"], result["type"]) == ("applied", "content.shared")
    assert result["effects"] == [{"kind": "share.recorded"}]
    stored = inbox(api.svc, "e-1")
    assert (stored["status"], stored["data"]) == ("applied", data)
    assert stored["response_body"] == result
    # and nothing but the inbox row was written
    after = row_counts(api.svc)
    assert after["events"] == before["events"] + 1
    assert {k: v for k, v in after.items() if k != "events"} == {
        k: v for k, v in before.items() if k != "events"
    }


def test_a_recharge_puts_money_in_the_members_wallet(api):
    # given a member
    send(api, registered("reg-1"))
    before = row_counts(api.svc)
    # when they recharge ¥500 in the app (no bonus tiers in the default program)
    data = {"recharge_id": "rc1", "amount": 50000, "channel": "app"}
    result = send(api, event("e-1", "wallet.recharged", **data))
    # then it is applied as a recharge of ¥500 principal
    assert (result["status"], result["type"]) == ("applied", "wallet.recharged")
    assert result["effects"] == [
        {"kind": "wallet.recharged", "program_id": "platform", "principal": 50000, "bonus": 0}
    ]
    assert inbox(api.svc, "e-1")["data"] == data
    # and the wallet holds it, with the recharge and a balanced transaction recorded
    account = one(api.svc, tables.wallet_accounts, member_id="u1")
    assert (account["principal"], account["bonus"], account["recharged_total"]) == (50000, 0, 50000)
    recharge = one(api.svc, tables.wallet_recharges, recharge_id="rc1")
    assert (recharge["member_id"], recharge["principal"], recharge["bonus"]) == ("u1", 50000, 0)
    txn = one(api.svc, tables.wallet_txns, member_id="u1")
    assert (txn["kind"], txn["principal"], txn["bonus"]) == ("recharge", 50000, 0)
    legs = rows(api.svc, tables.wallet_entries, txn_id=txn["id"])
    assert sorted((e["account"], e["amount"]) for e in legs) == [
        ("member", 50000),
        ("system:cash", -50000),
    ]
    # and nothing else was written
    after = row_counts(api.svc)
    grown = {k for k in after if after[k] != before[k]}
    assert grown == {
        "events",
        "wallet_accounts",
        "wallet_recharges",
        "wallet_txns",
        "wallet_entries",
    }


def publish_plus_plan(api, clock) -> None:
    """Publish, as of New Year 2026, a program document selling the PLUS plan the events buy."""
    saved = clock.now
    clock.now = datetime(2026, 1, 1, tzinfo=UTC)
    document = {
        "plans": [
            {
                "id": "plus",
                "name": {"zh": "PLUS", "en": "PLUS"},
                "price_fen": 100,
                "period": "monthly",
            }
        ]
    }
    apply_document(api.svc, "platform", document, actor="test")
    clock.now = saved


def test_a_membership_purchase_starts_a_subscription(api, clock):
    # given a member and a plan on sale
    publish_plus_plan(api, clock)
    send(api, registered("reg-1"))
    # when they buy it
    now = "2026-03-01T10:00:00+08:00"  # the test clock's now
    result = send(
        api,
        event(
            "e-1",
            "membership.purchased",
            occurred_at=now,
            purchase_id="p1",
            plan_id="plus",
            amount=100,
        ),
    )
    # then a subscription runs from the purchase
    assert [e["kind"] for e in result["effects"]] == ["membership.started"]
    subscription = one(api.svc, tables.subscriptions, purchase_id="p1")
    assert (subscription["plan_id"], subscription["status"]) == ("plus", "active")
    # and buying an unknown plan is refused, naming the field, with nothing written
    before = row_counts(api.svc)
    response = api.post(
        "/v1/events",
        event("e-2", "membership.purchased", purchase_id="p2", plan_id="nope", amount=100),
    )
    assert response.status_code == 422
    assert response.json()["field"] == "data.plan_id"
    assert row_counts(api.svc) == before


def test_every_event_type_is_accepted_over_http(api, clock):
    # given a plan on sale and one event of every type, in an order in which each makes sense
    publish_plus_plan(api, clock)
    bodies = [
        registered("e01"),
        event("e02", "member.updated", occurred_at="2026-02-02T10:00:00+08:00", region="北京"),
        login("e03"),
        paid("e04", "o1"),
        paid("e05", "o2"),
        paid("e06", "o3"),
        completed("e07", "o1"),
        cancelled("e08", "o2"),
        refunded("e09", "o3", "r1", 100),
        event("e10", "review.approved", review_id="rv1"),
        event("e11", "review.deleted", review_id="rv1"),
        event("e12", "content.shared"),
        event("e13", "wallet.recharged", recharge_id="rc1", amount=100),
        event("e14", "membership.purchased", purchase_id="p1", plan_id="plus", amount=100),
        event("e15", "custom.birthday_gift"),
    ]
    types = {b["type"] for b in bodies}
    assert len(types) == 13
    # when each is posted
    statuses = [api.post("/v1/events", b).status_code for b in bodies]
    # then each is applied
    assert statuses == [200] * len(bodies)
    assert {r["status"] for r in rows(api.svc, tables.events)} == {"applied"}
    assert len(rows(api.svc, tables.events)) == len(bodies)
