"""Random sequences of points-mall redemptions and cancellations by three members, checked
against a plain model after every step: who is refused and why, the stock sold, each member's
balance — and the ledger reconciles (stock counts and redemptions included)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huiyuan.domain.errors import DomainError
from huiyuan.services import points_jobs, points_mall
from huiyuan.services.principals import SYSTEM

from .bodies import completed, item, paid
from .ledger import BASE_RULE, apply, figures, iso, send
from .stored import start_afresh

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
MEMBERS = ("u1", "u2", "u3")
START_POINTS = 3000
ITEMS = {
    # a cup: 400 points, 4 in stock, 2 per member a day
    "cup": {"points": 400, "stock": 4, "per_member_limit": 2, "limit_period": "day"},
    # a coupon: 250 points, unlimited stock, 3 per member ever
    "coupon": {"points": 250, "per_member_limit": 3},
}


@dataclass
class Redemption:
    member: str
    item: str
    quantity: int
    at: datetime
    cancelled: bool = False


def day_start(moment: datetime) -> datetime:
    local = moment.astimezone(SHANGHAI)
    return datetime.combine(local.date(), time(0), tzinfo=SHANGHAI)


steps = st.lists(
    st.tuples(
        st.sampled_from(["redeem", "redeem", "cancel"]),
        st.integers(0, len(MEMBERS) - 1),
        st.sampled_from(sorted(ITEMS)),
        st.integers(1, 3),
        st.integers(0, 20),  # hours that pass before the step
        st.integers(0, 50),  # which earlier redemption a cancellation picks
    ),
    min_size=1,
    max_size=25,
)


def test_random_mall_traffic_keeps_stock_limits_and_ledger_whole(svc, clock, db_url):
    examples = int(
        os.environ.get("HUIYUAN_MALL_EXAMPLES", 40 if db_url.startswith("sqlite") else 15)
    )

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(steps)
    def story(plan):
        start_afresh(svc, clock, START)
        mall = [{"id": key, "name": {"zh": key, "en": key}, **spec} for key, spec in ITEMS.items()]
        apply(svc, {"points": {"earning": [BASE_RULE], "mall": mall}})
        for member in MEMBERS:
            amount = START_POINTS * 100
            body = paid(f"pay-{member}", f"o-{member}", member, amount=amount,
                        items=[item("x", amount)], occurred_at=iso(clock()))  # fmt: skip
            send(svc, body)
            send(svc, completed(f"done-{member}", f"o-{member}", member, occurred_at=iso(clock())))
        balance = dict.fromkeys(MEMBERS, START_POINTS)
        sold = dict.fromkeys(ITEMS, 0)
        made: list[Redemption] = []
        for n, (action, who, item_id, quantity, hours, pick) in enumerate(plan):
            clock.advance(hours=hours)
            member = MEMBERS[who]
            if action == "cancel":
                mine = [(i, r) for i, r in enumerate(made) if r.member == member]
                if not mine:
                    continue
                index, redemption = mine[pick % len(mine)]
                answer = points_mall.cancel_redemption(
                    svc, SYSTEM, member, f"r{index}", "test", None
                )
                assert answer["replayed"] is redemption.cancelled
                if not redemption.cancelled:
                    redemption.cancelled = True
                    balance[member] += ITEMS[redemption.item]["points"] * redemption.quantity
                    sold[redemption.item] -= redemption.quantity
                continue
            spec = ITEMS[item_id]
            since = day_start(clock()) if spec.get("limit_period") == "day" else None
            had = sum(
                r.quantity
                for r in made
                if r.member == member and r.item == item_id and not r.cancelled
                and (since is None or r.at >= since)
            )  # fmt: skip
            price = spec["points"] * quantity
            if had + quantity > spec["per_member_limit"]:
                expected = "mall_item_limit_reached"
            elif price > balance[member]:
                expected = "insufficient_points"
            elif "stock" in spec and sold[item_id] + quantity > spec["stock"]:
                expected = "mall_item_out_of_stock"
            else:
                expected = "ok"
            request = f"r{len(made)}" if expected == "ok" else f"refused-{n}"
            try:
                points_mall.redeem_item(svc, SYSTEM, member, request, item_id, quantity, None)
                outcome = "ok"
            except DomainError as error:
                outcome = str(error.code)
            assert outcome == expected, (n, member, item_id, quantity, had, sold)
            if outcome == "ok":
                made.append(Redemption(member, item_id, quantity, clock()))
                balance[member] -= price
                if "stock" in spec:
                    sold[item_id] += quantity
            # after every step
            assert points_jobs.reconcile(svc).drifts == []
            for m in MEMBERS:
                assert figures(svc, m)[0] == balance[m]
            left = points_mall.catalogue(svc, SYSTEM, None)["items"]
            assert {i["id"]: i["left"] for i in left} == {"cup": 4 - sold["cup"], "coupon": None}

    story()
