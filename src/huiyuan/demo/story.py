"""A year in the life of the demo platform, as the events its systems would have sent.

Members register through the year; a heavy-tailed few buy often. Orders complete days after
payment, a few are cancelled, some are refunded in part or whole after delivery, some get
reviews (a few later deleted); members log in, share, recharge and buy the paid membership.
Everything is drawn from one seeded generator, so the same seed tells the same story.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from huiyuan.demo.catalog import CATALOG, PLANS, STORES
from huiyuan.demo.people import Person, invent_person

YEAR = timedelta(days=365)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


class Story:
    def __init__(self, seed: int, members: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.members = members
        self.now = now
        self.start = now - YEAR
        self._counter = 0

    def _id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{self._counter:08d}"

    def _event(
        self,
        person: Person,
        kind: str,
        at: datetime,
        data: dict[str, Any],
        store: str | None = None,
    ) -> None:
        person.events.append(
            {
                "id": self._id("evt"),
                "type": kind,
                "occurred_at": _stamp(at),
                "member_id": person.member_id,
                "store_id": store,
                "data": data,
            }
        )

    def _shopping_hour(self, day: datetime) -> datetime:
        hour = self.rng.choices(
            range(24),
            weights=[1, 1, 1, 1, 1, 1, 2, 4, 6, 7, 8, 9, 10, 8, 7, 7, 7, 8, 9, 11, 13, 14, 11, 5],
        )[0]
        return day.replace(hour=hour, minute=self.rng.randrange(60), second=self.rng.randrange(60))

    def events(self) -> list[dict[str, Any]]:
        """Every event of the year, in the order they happened."""
        people: list[Person] = []
        phones: set[str] = set()
        ids: list[str] = []
        for index in range(1, self.members + 1):
            offset = YEAR * (self.rng.random() ** 1.3)  # more sign-ups early in the year
            registered = self._shopping_hour(self.start + offset)
            registered = min(registered, self.now - timedelta(minutes=5))
            person = invent_person(self.rng, index, registered, phones, ids, list(STORES))
            ids.append(person.member_id)
            self._live(person)
            people.append(person)
        everything = [e for p in people for e in p.events]
        everything.sort(key=lambda e: e["occurred_at"])
        return everything

    def _live(self, p: Person) -> None:
        data = dict(p.profile, channel=p.channel)
        if p.inviter_id:
            data["inviter_id"] = p.inviter_id
        self._event(p, "member.registered", p.registered_at, data)
        days = max((self.now - p.registered_at).days, 1)
        for moment in self._moments(p, days, rate=0.025 * p.activity + 0.005):
            self._event(p, "member.login", moment, {"channel": p.channel})
        for moment in self._moments(p, days, rate=0.01 * p.activity):
            self._event(p, "member.signed_in", moment, {"channel": p.channel})
        for moment in self._moments(p, days, rate=0.012 * p.activity):
            self._order(p, moment)
        for moment in self._moments(p, days, rate=0.004 * p.activity):
            self._event(
                p,
                "content.shared",
                moment,
                {
                    "content_id": f"c{self.rng.randrange(500)}",
                    "target": self.rng.choice(("wechat", "moments", "weibo")),
                },
            )
        if self.rng.random() < 0.08:
            self._recharge(p, days)
        if self.rng.random() < 0.05 * min(p.activity, 4):
            plan, price = self.rng.choice(PLANS)
            moment = p.registered_at + timedelta(days=self.rng.randrange(days), hours=1)
            self._event(
                p,
                "membership.purchased",
                min(moment, self.now),
                {"purchase_id": self._id("plus"), "plan_id": plan, "amount": price},
            )
        if self.rng.random() < 0.15:
            moment = p.registered_at + timedelta(days=self.rng.randrange(days), minutes=30)
            self._event(
                p,
                "member.updated",
                min(moment, self.now),
                {"occupation": self.rng.choice(("设计师", "教师", "产品经理"))},
            )

    def _moments(self, p: Person, days: int, rate: float) -> Iterator[datetime]:
        count = sum(1 for _ in range(days) if self.rng.random() < rate)
        for _ in range(count):
            day = p.registered_at + timedelta(days=self.rng.randrange(days) + 1)
            moment = self._shopping_hour(day)
            if moment < self.now:
                yield moment

    def _recharge(self, p: Person, days: int) -> None:
        moment = p.registered_at + timedelta(days=self.rng.randrange(days), hours=2)
        amount = self.rng.choice((10000, 20000, 50000, 100000))
        self._event(
            p,
            "wallet.recharged",
            min(moment, self.now),
            {"recharge_id": self._id("rch"), "amount": amount, "channel": p.channel},
            store=p.home_store,
        )

    def _order(self, p: Person, paid_at: datetime) -> None:
        rng = self.rng
        store = p.home_store if rng.random() < 0.6 else rng.choice([*STORES, None])
        products = rng.sample(CATALOG[store], k=rng.choice((1, 1, 1, 2, 2, 3)))
        items: list[dict[str, Any]] = []
        for product in products:
            quantity = rng.choice((1, 1, 1, 2, 3))
            discount = rng.choice((100, 100, 95, 90, 85))
            paid = product.price * quantity * discount // 100
            items.append(
                {
                    "sku": product.sku,
                    "name": product.name,
                    "category": product.category,
                    "brand": product.brand,
                    "quantity": quantity,
                    "unit_price": product.price,
                    "paid_amount": paid,
                    "virtual": product.virtual,
                }
            )
        order_id = self._id("ord")
        amount = sum(i["paid_amount"] for i in items)
        all_virtual = all(product.virtual for product in products)
        shipping = 0 if amount >= 9900 or all_virtual else 800
        self._event(
            p,
            "order.paid",
            paid_at,
            {
                "order_id": order_id,
                "amount": amount,
                "shipping_fee": shipping,
                "items": items,
                "channel": p.channel,
            },
            store,
        )
        if rng.random() < 0.04:
            cancelled = paid_at + timedelta(minutes=rng.randint(5, 600))
            if cancelled < self.now:
                self._event(
                    p,
                    "order.cancelled",
                    cancelled,
                    {"order_id": order_id, "reason": "不想要了"},
                    store,
                )
            return
        completed = paid_at + timedelta(days=rng.randint(2, 9), hours=rng.randint(0, 12))
        if completed >= self.now:
            return
        self._event(p, "order.completed", completed, {"order_id": order_id}, store)
        if rng.random() < 0.08:
            self._refund(p, order_id, items, completed, store)
        elif rng.random() < 0.3:
            self._review(p, order_id, items, completed, store)

    def _refund(
        self,
        p: Person,
        order_id: str,
        items: list[dict[str, Any]],
        after: datetime,
        store: str | None,
    ) -> None:
        moment = after + timedelta(days=self.rng.randint(1, 6))
        if moment >= self.now:
            return
        item = self.rng.choice(items)
        line = {"sku": item["sku"], "quantity": item["quantity"], "amount": item["paid_amount"]}
        self._event(
            p,
            "order.refunded",
            moment,
            {
                "order_id": order_id,
                "refund_id": self._id("rfd"),
                "amount": item["paid_amount"],
                "items": [line],
                "reason": self.rng.choice(("质量问题", "尺寸不合适", "七天无理由")),
            },
            store,
        )

    def _review(
        self,
        p: Person,
        order_id: str,
        items: list[dict[str, Any]],
        after: datetime,
        store: str | None,
    ) -> None:
        moment = after + timedelta(days=self.rng.randint(0, 5), hours=3)
        if moment >= self.now:
            return
        review_id = self._id("rvw")
        item = self.rng.choice(items)
        self._event(
            p,
            "review.approved",
            moment,
            {
                "review_id": review_id,
                "order_id": order_id,
                "sku": item["sku"],
                "rating": self.rng.choices((5, 4, 3, 2, 1), weights=(60, 25, 8, 4, 3))[0],
                "has_photos": self.rng.random() < 0.3,
            },
            store,
        )
        if self.rng.random() < 0.03 and moment + timedelta(days=2) < self.now:
            self._event(
                p, "review.deleted", moment + timedelta(days=2), {"review_id": review_id}, store
            )
