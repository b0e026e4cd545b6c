"""The tier endpoints over HTTP, on SQLite and PostgreSQL: the member's tier card (等级卡) with
progress to the next tier, what keeps the current one and when it is next evaluated; the growth
history; and an operator setting a tier by hand (floor or fixed, with an end date), which the
checkpoint job respects and the tier history records.

The test clock stands at 2026-03-01 10:00 Shanghai; each story applies its document first and
sends events at the clock's time.
"""

from copy import deepcopy
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from huiyuan.db import tables
from huiyuan.demo import programs as demo
from huiyuan.services import owners as owner_service
from huiyuan.services import tiers

from .bodies import completed, item, login, paid
from .ledger import apply, iso
from .stored import one, rows

SHANGHAI = ZoneInfo("Asia/Shanghai")


def shanghai(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def jd_document():
    """The demo's JD-like platform ladder (注册 0 / 铜牌 500 / 银牌 2000 / 金牌 6000 / 钻石 15000 on
    365 days of growth, checked monthly after a 30-day stay), points only from upgrade gifts."""
    doc = deepcopy(demo.PLATFORM)
    doc["points"]["earning"] = []
    return doc


def post_event(api, body, key=None):
    response = api.post("/v1/events", body, key=key)
    assert response.status_code == 200, response.json()
    return response.json()


def order(api, clock, order_id, amount, member="u1", key=None):
    """The member pays ``amount`` fen for one item and the order completes, now."""
    body = paid(
        f"pay-{order_id}",
        order_id,
        member,
        amount=amount,
        items=[item(f"sku-{order_id}", amount)],
        occurred_at=iso(clock()),
    )
    post_event(api, body, key)
    return post_event(
        api, completed(f"done-{order_id}", order_id, member, occurred_at=iso(clock())), key
    )


def seen(api, clock, member="u1", key=None):
    """The member logs in, so the program knows them."""
    post_event(
        api, login(f"login-{member}-{clock().timestamp()}", member, occurred_at=iso(clock())), key
    )


def card(api, member="u1", key=None, **params):
    response = api.get(f"/v1/members/{member}/tier", key=key, **params)
    assert response.status_code == 200, response.json()
    return response.json()


def set_tier(api, tier_id, reason="客服补偿", member="u1", key=None, **body):
    return api.client.put(
        f"/v1/members/{member}/tier",
        json={"tier_id": tier_id, "reason": reason, **body},
        headers=api.headers(key),
    )


def checkpoint(svc, clock, *parts):
    """Time passes to 00:00 Shanghai of the day ``parts`` and the checkpoint job runs."""
    moment = shanghai(*parts)
    assert moment >= clock()
    clock.advance(seconds=(moment - clock()).total_seconds())
    return tiers.evaluate_checkpoints(svc)


def moves(card_body):
    """(from, to, cause) of the card's tier history, oldest first."""
    return [(h["from"], h["to"], h["cause"]) for h in reversed(card_body["history"])]


# ---------------------------------------------------------------- the tier card


def test_the_tier_card_shows_tier_progress_retention_benefits_and_history(api, clock):
    # given the JD-like ladder
    apply(api.svc, jd_document())
    # and a member whose ¥5,680 order lifted them past bronze to silver
    order(api, clock, "o1", 568000)
    # when the member centre reads their tier card
    body = card(api)
    # then it shows silver, reached now, with 5,680 growth in the 365-day window
    assert body["member_id"] == "u1" and body["program_id"] == "platform"
    assert body["tier"] == {
        "id": "silver",
        "name": {"zh": "银牌会员", "en": "Silver"},
        "reached_at": utc_iso(clock()),
    }
    assert body["metric"] == {
        "kind": "growth_window",
        "value": 5680,
        "window_days": 365,
        "growth_lifetime": 5680,
    }
    # and says 320 more growth reach gold
    assert body["next"] == {
        "tier_id": "gold",
        "needed": 320,
        "message": {"zh": "再获得 320 成长值升级为金牌会员", "en": "320 more growth to reach Gold"},
    }
    # and that 2,000 keep silver at the monthly checkpoint, 00:00 Shanghai on April 1st
    assert body["keep"] == {
        "needed": 0,
        "keep_at": 2000,
        "checkpoint": "monthly",
        "next_evaluation_at": "2026-03-31T16:00:00+00:00",
    }
    assert body["override"] is None
    # and lists silver's benefits and the move that brought them there
    assert body["benefits"] == [
        {
            "id": "birthday-gift",
            "kind": "birthday_gift",
            "name": {"zh": "生日礼包", "en": "birthday gift"},
            "source": "tier:silver",
        }
    ]
    (move,) = body["history"]
    assert (move["from"], move["to"], move["cause"], move["metric"]) == (
        "registered",
        "silver",
        "upgrade",
        5680,
    )
    assert move["actor"] == "event:platform/done-o1"


def test_a_gold_member_is_told_what_keeps_gold_and_a_diamond_member_has_no_next_tier(api, clock):
    # given the JD-like ladder and a member at gold with 6,000 growth
    apply(api.svc, jd_document())
    order(api, clock, "o1", 600000)
    body = card(api)
    # then gold is kept at 5,000 and diamond needs 9,000 more
    assert (body["tier"]["id"], body["keep"]["keep_at"], body["next"]["needed"]) == (
        "gold",
        5000,
        9000,
    )
    assert [b["id"] for b in body["benefits"]] == ["discount-95", "birthday-gift"]
    # when they reach diamond
    order(api, clock, "o2", 750000)  # ¥7,500 × 1.2 = 9,000 growth at gold
    body = card(api)
    # then there is no next tier to show
    assert (body["tier"]["id"], body["metric"]["value"], body["next"]) == ("diamond", 15000, None)
    assert body["keep"]["keep_at"] == 12000


def test_the_growth_history_lists_entries_with_reasons_newest_first_a_page_at_a_time(api, clock):
    # given the JD-like ladder and a member with two completed orders
    apply(api.svc, jd_document())
    order(api, clock, "o1", 29900)
    order(api, clock, "o2", 10000)
    # when customer service reads the growth history one entry at a time
    first = api.get("/v1/members/u1/growth/entries", limit=1).json()
    # then the newest comes first, with its order, rule, reason and document version
    (entry,) = first["entries"]
    assert (entry["amount"], entry["kind"], entry["order_id"], entry["rule_id"]) == (
        100,
        "purchase",
        "o2",
        "purchase",
    )
    assert entry["reason"] == {
        "zh": "订单 o2 消费成长值",
        "en": "order o2 purchase growth",
    }
    assert entry["config_version"] == 1
    # and the next page holds the older one
    second = api.get(
        "/v1/members/u1/growth/entries", limit=1, before_id=first["next_before_id"]
    ).json()
    assert [e["order_id"] for e in second["entries"]] == ["o1"]


def test_a_program_without_a_ladder_has_no_tier_card(api, clock):
    # given the platform's program without a tier ladder, and a member it knows
    seen(api, clock)
    # when the tier card is read
    response = api.get("/v1/members/u1/tier")
    # then it is a 404 saying there is no ladder
    assert response.status_code == 404
    assert response.json()["code"] == "no_tier_ladder"
    # and setting a tier there is the same 404
    assert set_tier(api, "gold").json()["code"] == "no_tier_ladder"
    # while unknown members and programs are 404s of their own
    assert api.get("/v1/members/u404/tier").json()["code"] == "member_not_found"
    unknown = api.get("/v1/members/u1/tier", program_id="nope")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "program_not_enrolled")


# ---------------------------------------------------------------- setting a tier by hand


def test_an_operators_floor_holds_a_member_up_until_its_end_date(api, clock):
    svc = api.svc
    # given the JD-like ladder and a registered member without growth
    apply(svc, jd_document())
    seen(api, clock)
    # when an operator sets gold as the member's floor until June 1st (Shanghai)
    response = set_tier(api, "gold", mode="floor", ends_at="2026-06-01T00:00:00+08:00")
    # then the member is gold at once, and the card shows the floor
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["tier"]["id"] == "gold"
    assert body["override"] == {
        "tier_id": "gold",
        "mode": "floor",
        "ends_at": "2026-05-31T16:00:00+00:00",
    }
    assert body["history"][0]["reason"] == "set by hand: 客服补偿"
    assert body["history"][0]["actor"].startswith("key:")
    # and the change is audited with who, what and why
    audit = one(svc, tables.audit_log, action="tier.set")
    assert audit["subject"] == "member:u1"
    assert audit["detail"] == {
        "program_id": "platform",
        "tier_id": "gold",
        "mode": "floor",
        "ends_at": "2026-06-01T00:00:00+08:00",
        "reason": "客服补偿",
    }
    # when the April and May checkpoints come, the member still has no growth
    for month in (4, 5):
        assert checkpoint(svc, clock, 2026, month, 1) == 1
        # then the floor keeps them gold and is not wiped
        body = card(api)
        assert (body["tier"]["id"], body["override"]["mode"]) == ("gold", "floor")
    # when the June checkpoint comes, the floor has ended
    assert checkpoint(svc, clock, 2026, 6, 1) == 1
    # then they drop to the tier their growth supports
    body = card(api)
    assert body["tier"]["id"] == "registered"
    assert moves(body) == [("registered", "gold", "override"), ("gold", "registered", "downgrade")]


def test_a_member_rises_above_a_floor_but_not_above_a_fixed_tier(api, clock):
    svc = api.svc
    # given the JD-like ladder and two members: one with a floor at bronze, one fixed at bronze
    apply(svc, jd_document())
    for member in ("u1", "u2"):
        seen(api, clock, member)
    assert set_tier(api, "bronze", member="u1", mode="floor").status_code == 200
    assert set_tier(api, "bronze", member="u2", mode="fixed").status_code == 200
    # when each completes a ¥2,500 order
    floored = order(api, clock, "o1", 250000, member="u1")["effects"]
    fixed = order(api, clock, "o2", 250000, member="u2")["effects"]
    # then the one with a floor climbs to silver, the fixed one stays bronze
    assert [e["to"] for e in floored if e["kind"] == "tier.upgraded"] == ["silver"]
    assert [e for e in fixed if e["kind"] == "tier.upgraded"] == []
    assert card(api, "u1")["tier"]["id"] == "silver"
    assert card(api, "u2")["tier"]["id"] == "bronze"
    # and the checkpoint job leaves the fixed tier and its override alone
    assert checkpoint(svc, clock, 2026, 4, 1) == 2
    body = card(api, "u2")
    assert (body["tier"]["id"], body["override"]["mode"]) == ("bronze", "fixed")
    assert moves(body) == [("registered", "bronze", "override")]


def test_a_fixed_tier_with_an_end_date_lets_the_ladder_decide_again_at_the_next_checkpoint(
    api, clock
):
    svc = api.svc
    # given the JD-like ladder and a member fixed at bronze until May 1st (Shanghai)
    apply(svc, jd_document())
    seen(api, clock)
    assert (
        set_tier(api, "bronze", mode="fixed", ends_at="2026-05-01T00:00:00+08:00").status_code
        == 200
    )
    # and whose ¥2,500 order would have made them silver
    order(api, clock, "o1", 250000)
    assert card(api)["tier"]["id"] == "bronze"
    # when the April checkpoint comes, then the fixed tier stands
    checkpoint(svc, clock, 2026, 4, 1)
    assert card(api)["tier"]["id"] == "bronze"
    # when the May checkpoint comes after its end date
    checkpoint(svc, clock, 2026, 5, 1)
    # then the ladder lifts them to silver, the tier their growth earns
    body = card(api)
    assert body["tier"]["id"] == "silver"
    assert moves(body) == [("registered", "bronze", "override"), ("bronze", "silver", "upgrade")]
    history = rows(svc, tables.tier_history, member_id="u1")
    assert [h["actor"] for h in history][1] == "system:checkpoint"


REFUSED = [
    ({"tier_id": "platinum", "reason": "x"}, "unknown_tier"),  # no such tier
    ({"tier_id": "gold", "reason": "x", "ends_at": "2026-02-01T00:00:00+08:00"}, None),  # past
    ({"tier_id": "gold", "reason": "x", "mode": "forever"}, None),  # no such mode
    ({"tier_id": "gold"}, None),  # no reason
]


def test_setting_a_tier_needs_a_known_tier_a_future_end_date_a_mode_and_a_reason(api, clock):
    # given the JD-like ladder and a member
    apply(api.svc, jd_document())
    seen(api, clock)
    for body, code in REFUSED:
        # when an operator sets a tier with ``body``
        response = api.client.put("/v1/members/u1/tier", json=body, headers=api.headers())
        # then it is refused as invalid
        assert response.status_code == 422, (body, response.json())
        if code:
            assert response.json()["code"] == code
    # and nothing changed
    assert card(api)["tier"]["id"] == "registered"
    assert rows(api.svc, tables.audit_log, action="tier.set") == []


def test_only_an_admin_key_sets_a_tier_and_an_unknown_member_is_a_404(api, clock):
    # given the JD-like ladder and a member
    apply(api.svc, jd_document())
    seen(api, clock)
    # when a read-write key tries to set a tier
    response = set_tier(api, "gold", key=api.new_key("platform", "read,write"))
    # then it lacks the admin scope
    assert response.status_code == 403
    assert response.json()["code"] == "scope_missing"
    assert card(api)["tier"]["id"] == "registered"
    # and an admin setting the tier of a member nobody knows gets a 404
    assert set_tier(api, "gold", member="u404").json()["code"] == "member_not_found"


# ---------------------------------------------------------------- stores


@pytest.fixture
def beauty(api):
    """A beauty store with its own no-downgrade ladder on spend, and its read-write key."""
    owner_service.add_store(api.svc, "store-beauty", "花漾美妆", actor="test")
    apply(api.svc, demo.STORES["store-beauty"], program="store-beauty")
    api.store_key = api.new_key("store-beauty")
    return api


def test_a_store_reads_its_own_ladder_for_its_own_members_only(beauty, clock):
    api = beauty
    # given a member who spent ¥1,000 in the beauty store (sent with the store's key)
    order(api, clock, "b1", 100000, key=api.store_key)
    # and a member the store has never seen
    seen(api, clock, "u2")
    # when the store reads its member's tier card in its own program
    body = card(api, key=api.store_key, program_id="store-beauty")
    # then it is the store's VIP, on spend in fen, never re-evaluated
    assert (body["program_id"], body["tier"]["id"], body["metric"]["kind"]) == (
        "store-beauty",
        "vip",
        "spend_window",
    )
    assert body["next"]["message"]["zh"] == "再获得 400000 消费金额(分)升级为SVIP"
    assert body["keep"]["next_evaluation_at"] is None
    # when it reads the other member, then that member does not exist for the store
    other = api.get("/v1/members/u2/tier", key=api.store_key, program_id="store-beauty")
    assert (other.status_code, other.json()["code"]) == (404, "member_not_found")
    # when it reads the platform's program, then it is refused: not its program
    platform = api.get("/v1/members/u1/tier", key=api.store_key, program_id="platform")
    assert (platform.status_code, platform.json()["code"]) == (403, "program_not_enrolled")
    assert platform.json()["field"] == "program_id"
    # and it may not set tiers with a read-write key
    assert set_tier(api, "svip", key=api.store_key, program_id="store-beauty").status_code == 403
    # while the platform reads the store's program too
    assert card(api, program_id="store-beauty")["tier"]["id"] == "vip"
