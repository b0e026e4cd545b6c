"""The set-based ``order.paid`` path writes exactly what the general path writes.

The same random story — registrations, payments of known and new members in the platform and in
stores, resent events, reused order ids, completions, refunds, logins, paid-membership
purchases, a member holding points for a checkout — is sent twice through ``ingest_batch`` into
one database: once as it runs (payments applied set-based where they can be), once with the
set-based path switched off (every event through the general path), under two id prefixes.
Every row either run wrote, with surrogate ids replaced by the keys they stand for, and every
response must be the same.
"""

from __future__ import annotations

import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from huiyuan.db.tables import metadata
from huiyuan.demo.programs import PLATFORM, STORES
from huiyuan.services import events as event_service
from huiyuan.services import order_batch, owners, points, programs
from huiyuan.services.principals import SYSTEM

from .ledger import assert_reconciled

A, B = "AAA", "BBB"
SKUS = [
    ("sku-lip", "口红", "彩妆", "Glow", 19900),
    ("sku-tee", "T恤", "服装", "Acme", 9900),
    ("sku-tea", "龙井", "食品", "Westlake", 15800),
    ("sku-phone", "手机", "数码", "Mi", 199900),
    ("sku-card", "礼品卡", "虚拟", "Acme", 10000),
]


def _platform_document() -> dict[str, Any]:
    doc = {**PLATFORM, "points": {**PLATFORM["points"]}}
    doc["points"]["earning"] = [
        *PLATFORM["points"]["earning"],
        {  # gold members earn a bonus: the path must know each member's tier
            "kind": "per_amount",
            "id": "gold-bonus",
            "per_fen": 200,
            "points": 1,
            "conditions": {"tiers": ["gold", "diamond", "bronze"]},
        },
    ]
    doc["points"]["multipliers"] = [
        {"id": "app-week", "factor": "2", "conditions": {"channels": ["mini_program"]}},
        {"id": "plus-double", "factor": "2", "conditions": {"plans": ["plus-monthly"]}},
    ]
    return doc


def _capped_store() -> dict[str, Any]:
    """A store whose order rule has a daily cap: its payments take the general path."""
    return {
        "points": {
            "earning": [
                {
                    "kind": "per_amount",
                    "id": "base",
                    "per_fen": 100,
                    "points": 1,
                    "caps": {"per_day": 300},
                }
            ]
        }
    }


def _story(prefix: str, seed: int, start: datetime) -> list[list[dict[str, Any]]]:
    """Batches of events; ids carry ``prefix`` so two runs can share one database."""
    rng = random.Random(seed)
    members = [f"{prefix}m{i}" for i in range(14)]
    stores = [None, None, None, "store-beauty", "store-digital", "store-capped"]
    batches: list[list[dict[str, Any]]] = []
    sent: list[dict[str, Any]] = []
    paid_orders: list[tuple[str, str, str | None, int]] = []
    n = 0
    at = start
    for _ in range(12):
        batch: list[dict[str, Any]] = []
        for _ in range(rng.randint(1, 45)):
            n += 1
            at += timedelta(seconds=rng.randint(1, 40))
            member = rng.choice(members)
            roll = rng.random()
            event_id = f"{prefix}e{n}"
            if n <= 6:
                body = _event(
                    event_id,
                    "member.registered",
                    members[n - 1],
                    at,
                    None,
                    phone=f"1380013{n:04d}",
                    channel="app",
                )
            elif roll < 0.62 or not paid_orders:
                order_id = f"{prefix}o{n}"
                if paid_orders and rng.random() < 0.04:
                    order_id = rng.choice(paid_orders)[0]  # an order id used before
                store = rng.choice(stores)
                body = _paid(event_id, order_id, member, at, store, rng)
                paid_orders.append((order_id, member, store, body["data"]["amount"]))
            elif roll < 0.72:
                order_id, owner, store, _ = rng.choice(paid_orders)
                body = _event(event_id, "order.completed", owner, at, store, order_id=order_id)
            elif roll < 0.78:
                order_id, owner, store, amount = rng.choice(paid_orders)
                body = _event(
                    event_id,
                    "order.refunded",
                    owner,
                    at,
                    store,
                    order_id=order_id,
                    refund_id=f"{prefix}r{n}",
                    amount=max(1, amount // rng.choice((2, 3, 10))),
                )
            elif roll < 0.84:
                body = _event(event_id, "member.login", member, at, None)
            elif roll < 0.88:
                body = _event(
                    event_id,
                    "membership.purchased",
                    member,
                    at,
                    None,
                    purchase_id=f"{prefix}p{n}",
                    plan_id="plus-monthly",
                    amount=1500,
                )
            elif sent:
                body = rng.choice(sent)  # a resend: must replay, never apply twice
            else:
                continue
            batch.append(body)
            sent.append(body)
        batches.append(batch)
    return batches


def _event(
    event_id: str, kind: str, member: str, at: datetime, store: str | None, **data: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id,
        "type": kind,
        "occurred_at": at.isoformat(),
        "member_id": member,
        "data": data,
    }
    if store is not None:
        body["store_id"] = store
    return body


def _paid(
    event_id: str, order_id: str, member: str, at: datetime, store: str | None, rng: random.Random
) -> dict[str, Any]:
    items = []
    for sku, name, category, brand, price in rng.sample(SKUS, k=rng.choice((1, 1, 2, 3))):
        quantity = rng.choice((1, 1, 2))
        items.append(
            {
                "sku": sku,
                "name": name,
                "category": category,
                "brand": brand,
                "quantity": quantity,
                "unit_price": price,
                "paid_amount": price * quantity * rng.choice((100, 90)) // 100,
                "virtual": sku == "sku-card",
            }
        )
    amount = sum(i["paid_amount"] for i in items)
    if rng.random() < 0.03:
        amount += 1  # items that do not add up: refused by the general path
    return _event(
        event_id,
        "order.paid",
        member,
        at,
        store,
        order_id=order_id,
        amount=amount,
        shipping_fee=0 if amount >= 9900 else 800,
        items=items,
        channel=rng.choice(("app", "mini_program", "web")),
    )


# ---------------------------------------------------------------- comparing


class Normaliser:
    """Rows and responses with surrogate ids replaced by the keys they stand for and a run's
    id prefix by ``XXX``."""

    def __init__(self, svc: Any) -> None:
        with svc.engine.connect() as conn:
            self.tables = {
                t.name: [dict(r._mapping) for r in conn.execute(sa.select(t))]
                for t in metadata.sorted_tables
            }
        txns = self.tables["point_txns"]
        # Earning keys name orders and rules; the keys of later movements name a lot by its id.
        earned = {r["id"]: (r["program_id"], r["idem_key"]) for r in txns}
        self.lot_key = {r["id"]: earned[r["txn_id"]] for r in self.tables["point_lots"]}
        self.txn_key = {r["id"]: (r["program_id"], self._key(r["idem_key"])) for r in txns}
        for row in txns:
            row["idem_key"] = self._key(row["idem_key"])

    def _key(self, key: str) -> str:
        found = re.fullmatch(r"(release|clawback|takeback|expire):(\d+)(.*)", key)
        if found is None:
            return key
        kind, lot, rest = found.groups()
        return f"{kind}:{self.lot_key[int(lot)]}{rest}"

    def norm(self, value: Any, prefix: str, column: str = "") -> Any:
        if isinstance(value, dict):
            return {k: self.norm(v, prefix, k) for k, v in sorted(value.items())}
        if isinstance(value, list | tuple):
            return [self.norm(v, prefix) for v in value]
        if column == "lot_id" and value is not None:
            value = self.lot_key[value]
        elif column == "txn_id" and value is not None:
            value = self.txn_key[value]
        return repr(value).replace(prefix, "XXX")

    def snapshot(self, prefix: str) -> dict[str, list[str]]:
        """Every row mentioning ``prefix``, normalised."""
        found: dict[str, list[str]] = {}
        for name, table_rows in self.tables.items():
            kept = []
            for row in table_rows:
                if prefix not in repr(row):
                    continue
                if name == "point_lots":
                    row = {**row, "lot": self.lot_key[row["id"]]}
                row = {k: v for k, v in row.items() if k not in ("id", "body_hash")}
                kept.append(repr(self.norm(row, prefix)))
            found[name] = sorted(kept)
        return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_payments_applied_set_based_write_what_the_general_path_writes(
    svc, clock, monkeypatch, seed
):
    for store, doc in {**STORES, "store-capped": _capped_store()}.items():
        owners.add_store(svc, store, store, actor="test")
        programs.apply_document(svc, store, doc, actor="test")
    programs.apply_document(svc, "platform", _platform_document(), actor="test")
    start = clock()
    clock.advance(hours=1)

    applied_set_based: list[int] = []
    real_apply = order_batch.apply

    def counting(*args: Any) -> Any:
        result = real_apply(*args)
        applied_set_based.append(len(result.bodies))
        return result

    def run(prefix: str) -> list[list[Any]]:
        # a member of each run holds points for a checkout: their payments go the general way
        responses = []
        for number, batch in enumerate(_story(prefix, seed, start)):
            outcomes = event_service.ingest_batch(svc, SYSTEM, batch)
            responses.append([(o.status, o.body, o.replayed) for o in outcomes])
            if number == 3:
                _hold_points(svc, f"{prefix}m0", f"{prefix}hold")
        return responses

    monkeypatch.setattr(order_batch, "apply", counting)
    fast = run(A)
    monkeypatch.setattr(order_batch, "apply", lambda *a: order_batch.Applied({}))
    general = run(B)

    seen = Normaliser(svc)
    for got, want in zip(seen.norm(fast, A), seen.norm(general, B), strict=True):
        for one, other in zip(got, want, strict=True):
            assert one == other
    a, b = seen.snapshot(A), seen.snapshot(B)
    for table in a:
        assert a[table] == b[table], table
    assert_reconciled(svc)
    assert sum(applied_set_based) > 40, "the story must exercise the set-based path"


def _hold_points(svc: Any, member: str, reservation_id: str) -> None:
    view = points.summary(svc, SYSTEM, member, None)
    assert view["available"] >= 100, view  # the welcome points
    points.reserve(
        svc, SYSTEM, member, reservation_id, 100, order_id=None, program_id=None, ttl_seconds=86400
    )


def test_overlapping_batches_from_8_threads_apply_every_payment_once(make_services, clock):
    """Batches that share members and resend each other's events, all at once (a real race on
    PostgreSQL; SQLite queues the writers): no deadlock escapes the retries, every payment
    applies once, the ledger reconciles."""
    svc = make_services()
    members = [f"m{i}" for i in range(30)]
    for member in members:  # known members, so the payments take the set-based path
        event_service.ingest_event(
            svc, SYSTEM, _event(f"reg-{member}", "member.registered", member, clock(), None)
        )
    rng = random.Random(11)
    bodies = [
        _paid(f"pay-{n}", f"o{n}", rng.choice(members), clock(), None, rng) for n in range(400)
    ]
    bodies = [
        b
        for b in bodies
        if sum(i["paid_amount"] for i in b["data"]["items"]) == b["data"]["amount"]
    ]
    threads = 8
    start = threading.Barrier(threads)

    def send(i: int) -> list[Any]:
        mine = random.Random(i).sample(bodies, k=len(bodies) // 2)  # overlaps the others'
        start.wait()
        outcomes = []
        for at in range(0, len(mine), 50):
            outcomes += event_service.ingest_batch(svc, SYSTEM, mine[at : at + 50])
        return outcomes

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = [o for batch in pool.map(send, range(threads)) for o in batch]

    assert {o.status for o in results} == {200}
    fresh = [o for o in results if not o.replayed]
    sent = {b["id"] for b in bodies}
    applied = [o.body["id"] for o in fresh]
    chosen = {
        b["id"] for i in range(threads) for b in random.Random(i).sample(bodies, k=len(bodies) // 2)
    }
    assert sorted(applied) == sorted(chosen), "each event applied exactly once"
    assert chosen <= sent
    with svc.engine.connect() as conn:
        orders = conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
        pending = conn.execute(sa.text("SELECT sum(pending) FROM point_accounts")).scalar_one()
    assert orders == len(chosen)
    expected = sum(
        sum(i["paid_amount"] for i in b["data"]["items"] if not i["virtual"]) // 100
        for b in bodies
        if b["id"] in chosen
    )
    assert pending == expected
    assert_reconciled(svc)
