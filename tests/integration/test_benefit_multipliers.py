"""A tier's or a paid plan's points multiplier (权益: 双倍积分) applies to what orders earn."""

from __future__ import annotations

from .bodies import event, paid, registered
from .ledger import BASE_RULE, apply, iso, send

DOUBLE = {
    "id": "points-x2",
    "kind": "points_multiplier",
    "name": {"zh": "双倍积分", "en": "x2"},
    "multiplier": "2",
}
TRIPLE = {
    "id": "points-x3",
    "kind": "points_multiplier",
    "name": {"zh": "三倍积分", "en": "x3"},
    "multiplier": "3",
}


def plus_document(overlap: str = "max") -> dict:
    return {
        "points": {"earning": [BASE_RULE]},
        "benefits": [DOUBLE, TRIPLE],
        "plans": [
            {
                "id": "plus",
                "name": {"zh": "PLUS", "en": "PLUS"},
                "price_fen": 9900,
                "period": "annual",
                "benefits": ["points-x2"],
            }
        ],
        "growth": {"rules": [{"kind": "registration", "id": "welcome", "points": 600}]},
        "tiers": {
            "tiers": [
                {"id": "regular", "name": {"zh": "普通", "en": "Regular"}, "threshold": 0},
                {
                    "id": "gold",
                    "name": {"zh": "金牌", "en": "Gold"},
                    "threshold": 500,
                    "benefits": ["points-x3"],
                },
            ]
        },
        "overlap": overlap,
    }


def pending_points(body: dict) -> int:
    return sum(e["points"] for e in body["effects"] if e["kind"] == "points.pending")


def test_a_plus_member_earns_double_points(svc, clock):
    # given a program whose PLUS plan doubles points, and a member without a tier benefit
    document = plus_document()
    document["growth"] = {"rules": []}
    apply(svc, document)
    now = iso(clock())
    send(svc, registered("reg", occurred_at=now))
    # when they pay ¥299 before and after buying PLUS
    before = send(svc, paid("pay-1", "o1", occurred_at=now))
    send(
        svc,
        event(
            "buy",
            "membership.purchased",
            occurred_at=now,
            purchase_id="p1",
            plan_id="plus",
            amount=9900,
        ),
    )
    after = send(svc, paid("pay-2", "o2", occurred_at=now))
    # then the second order earns twice the first
    assert (pending_points(before), pending_points(after)) == (299, 598)


def test_tier_and_plan_multipliers_combine_as_the_document_says(svc, clock):
    for overlap, expected in (("max", 897), ("multiply", 1794)):
        # given a gold member (x3) who also holds PLUS (x2)
        apply(svc, plus_document(overlap))
        now = iso(clock())
        member = f"m-{overlap}"
        send(svc, registered(f"reg-{overlap}", member, occurred_at=now))
        send(
            svc,
            event(
                f"buy-{overlap}",
                "membership.purchased",
                member,
                occurred_at=now,
                purchase_id=f"p-{overlap}",
                plan_id="plus",
                amount=9900,
            ),
        )
        # when they pay ¥299
        body = send(svc, paid(f"pay-{overlap}", f"o-{overlap}", member, occurred_at=now))
        # then the multipliers take the larger, or multiply, as configured
        assert pending_points(body) == expected, overlap
        clock.advance(minutes=1)
