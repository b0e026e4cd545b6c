"""The wallet (余额), on SQLite and PostgreSQL: recharges with bonuses (充500送50), payments drawn
from principal (本金) or bonus (赠送金) first, refunds back to the parts they came from, and
refunds of recharges that take their bonus back."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from huiyuan.db import tables
from huiyuan.services import owners as owner_service

from .bodies import event
from .ledger import apply, iso, send
from .stored import one, problem_of, row_counts, rows, the_effect

# 充500送50, 充1000送150
TIERS = [{"min_fen": 50000, "bonus_fen": 5000}, {"min_fen": 100000, "bonus_fen": 15000}]


def wallet_document(spend_order="principal_first", **wallet):
    return {"wallet": {"recharge_bonuses": TIERS, "spend_order": spend_order, **wallet}}


def recharge_body(clock, recharge_id, amount, member="u1", event_id=None, **kw):
    return event(
        event_id or f"rc-{recharge_id}",
        "wallet.recharged",
        member,
        occurred_at=iso(clock()),
        recharge_id=recharge_id,
        amount=amount,
        **kw,
    )


def recharge(svc, clock, recharge_id, amount, member="u1", status=200, event_id=None, **kw):
    body = recharge_body(clock, recharge_id, amount, member, event_id, **kw)
    return send(svc, body, status=status)


def recharge_refund_body(clock, recharge_id, refund_id, amount):
    return event(
        f"rr-{refund_id}",
        "wallet.recharge_refunded",
        occurred_at=iso(clock()),
        recharge_id=recharge_id,
        refund_id=refund_id,
        amount=amount,
    )


def refund_recharge(svc, clock, recharge_id, refund_id, amount, status=200):
    return send(svc, recharge_refund_body(clock, recharge_id, refund_id, amount), status=status)


def wallet(api, member="u1", **params):
    response = api.get(f"/v1/members/{member}/wallet", **params)
    assert response.status_code == 200, response.json()
    return response.json()


def parts(api, member="u1"):
    found = wallet(api, member)
    return found["principal"], found["bonus"]


def pay(api, payment_id, amount, member="u1", **body):
    return api.post(
        f"/v1/members/{member}/wallet/payments", {"id": payment_id, "amount": amount, **body}
    )


def refund_payment(api, payment_id, refund_id, amount):
    return api.post(
        f"/v1/members/u1/wallet/payments/{payment_id}/refunds", {"id": refund_id, "amount": amount}
    )


def assert_wallet_ledger_adds_up(svc):
    """Every wallet transaction balances and every balance equals the sum of its entries."""
    e = tables.wallet_entries
    with svc.engine.connect() as conn:
        unbalanced = conn.execute(
            sa.select(e.c.txn_id).group_by(e.c.txn_id).having(sa.func.sum(e.c.amount) != 0)
        ).all()
        sums = {
            (program, member, bucket): int(total)
            for program, member, bucket, total in conn.execute(
                sa.select(e.c.program_id, e.c.member_id, e.c.bucket, sa.func.sum(e.c.amount))
                .where(e.c.account == "member")
                .group_by(e.c.program_id, e.c.member_id, e.c.bucket)
            )
        }
        accounts = conn.execute(sa.select(tables.wallet_accounts)).all()
    assert unbalanced == []
    for account in accounts:
        key = (account.program_id, account.member_id)
        assert account.principal == sums.get((*key, "principal"), 0)
        assert account.bonus == sums.get((*key, "bonus"), 0)


@pytest.fixture
def bonus_program(api):
    apply(api.svc, wallet_document())
    return api


# ---------------------------------------------------------------- recharges


@pytest.mark.parametrize(
    ("amount", "bonus"), [(30000, 0), (50000, 5000), (80000, 5000), (100000, 15000)]
)
def test_a_recharge_brings_the_bonus_of_the_largest_tier_it_reaches(
    bonus_program, clock, amount, bonus
):
    # given the platform runs 充500送50 and 充1000送150
    # when a member recharges
    effects = recharge(bonus_program.svc, clock, "rc1", amount)["effects"]
    # then the wallet holds the money as principal and the tier's bonus beside it
    assert the_effect(effects, "wallet.recharged") == {
        "kind": "wallet.recharged",
        "program_id": "platform",
        "principal": amount,
        "bonus": bonus,
    }
    assert wallet(bonus_program) == {
        "member_id": "u1",
        "program_id": "platform",
        "principal": amount,
        "bonus": bonus,
        "total": amount + bonus,
        "recharged_total": amount,
    }
    assert_wallet_ledger_adds_up(bonus_program.svc)


def test_recharges_add_up_to_the_cumulative_recharged_total(bonus_program, clock):
    # when a member recharges ¥500, ¥300 and ¥1000 over a month
    for recharge_id, amount in [("a", 50000), ("b", 30000), ("c", 100000)]:
        recharge(bonus_program.svc, clock, recharge_id, amount)
        clock.advance(days=10)
    # then the wallet counts ¥1800 recharged and ¥200 of bonus (50 + 0 + 150)
    found = wallet(bonus_program)
    assert (found["principal"], found["bonus"], found["recharged_total"]) == (180000, 20000, 180000)
    # and the history lists each recharge with its reason
    history = bonus_program.get("/v1/members/u1/wallet/entries").json()["entries"]
    assert [(h["kind"], h["principal"], h["bonus"], h["ref_id"]) for h in history] == [
        ("recharge", 100000, 15000, "c"),
        ("recharge", 30000, 0, "b"),
        ("recharge", 50000, 5000, "a"),
    ]
    assert history[2]["reason"] == {
        "zh": "充值 ¥500.00，赠送 ¥50.00",
        "en": "recharge ¥500.00, bonus ¥50.00",
    }


def test_a_recharge_id_used_twice_is_refused(bonus_program, clock):
    recharge(bonus_program.svc, clock, "rc1", 50000)
    before = row_counts(bonus_program.svc)
    # when another event names the same recharge
    problem = recharge(bonus_program.svc, clock, "rc1", 50000, status=409, event_id="rc-again")
    assert (problem["code"], problem["field"]) == ("recharge_id_reused", "data.recharge_id")
    assert row_counts(bonus_program.svc) == before
    assert parts(bonus_program) == (50000, 5000)


def test_a_bonus_tier_outside_its_window_gives_nothing(api, clock):
    # given 充500送50 that ended yesterday
    ended = {"min_fen": 50000, "bonus_fen": 5000, "ends_at": iso(clock())}
    apply(api.svc, {"wallet": {"recharge_bonuses": [ended]}})
    recharge(api.svc, clock, "rc1", 50000)
    assert parts(api) == (50000, 0)


# ---------------------------------------------------------------- payments


@pytest.mark.parametrize(
    ("spend_order", "drawn"),
    [("principal_first", (8000, 0)), ("bonus_first", (3000, 5000))],
)
def test_a_payment_draws_principal_or_bonus_first_as_the_program_says(
    api, clock, spend_order, drawn
):
    # given a member who recharged ¥500 with ¥50 bonus
    apply(api.svc, wallet_document(spend_order))
    recharge(api.svc, clock, "rc1", 50000)
    # when they pay ¥80
    response = pay(api, "pay-1", 8000, order_id="o1")
    # then it draws from the part the program spends first
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["principal"], body["bonus"]) == drawn
    assert body["replayed"] is False
    assert parts(api) == (50000 - drawn[0], 5000 - drawn[1])
    assert body["balance"]["total"] == 47000
    assert_wallet_ledger_adds_up(api.svc)


def test_refunds_of_a_payment_return_to_the_parts_it_came_from(api, clock):
    # given ¥80 paid bonus first: ¥50 bonus and ¥30 principal
    apply(api.svc, wallet_document("bonus_first"))
    recharge(api.svc, clock, "rc1", 50000)
    pay(api, "pay-1", 8000)
    assert parts(api) == (47000, 0)
    # when ¥40 is refunded
    first = refund_payment(api, "pay-1", "rf-1", 4000)
    # then it returns in the payment's proportion: ¥15 principal, ¥25 bonus
    assert first.status_code == 201, first.json()
    assert (first.json()["principal"], first.json()["bonus"]) == (1500, 2500)
    assert parts(api) == (48500, 2500)
    # when the rest is refunded
    second = refund_payment(api, "pay-1", "rf-2", 4000)
    # then the wallet is as before the payment
    assert (second.json()["principal"], second.json()["bonus"]) == (1500, 2500)
    assert parts(api) == (50000, 5000)
    # and nothing more can be refunded
    third = refund_payment(api, "pay-1", "rf-3", 1)
    assert third.status_code == 409
    assert third.json()["code"] == "wallet_refund_exceeds"
    assert parts(api) == (50000, 5000)
    assert_wallet_ledger_adds_up(api.svc)


def test_a_payment_sent_twice_applies_once_and_its_id_cannot_be_reused(bonus_program, clock):
    recharge(bonus_program.svc, clock, "rc1", 50000)
    first = pay(bonus_program, "pay-1", 8000, order_id="o1")
    again = pay(bonus_program, "pay-1", 8000, order_id="o1")
    # the repeat replays the first payment
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["replayed"] is True
    assert (again.json()["principal"], again.json()["bonus"]) == (8000, 0)
    assert parts(bonus_program) == (42000, 5000)
    assert len(rows(bonus_program.svc, tables.wallet_payments)) == 1
    # and the same id for another amount is a conflict that changes nothing
    before = row_counts(bonus_program.svc)
    other = pay(bonus_program, "pay-1", 9000, order_id="o1")
    assert other.status_code == 409
    assert (other.json()["code"], other.json()["field"]) == ("wallet_payment_id_reused", "id")
    assert row_counts(bonus_program.svc) == before


def test_a_refund_sent_twice_applies_once(bonus_program, clock):
    recharge(bonus_program.svc, clock, "rc1", 50000)
    pay(bonus_program, "pay-1", 8000)
    first = refund_payment(bonus_program, "pay-1", "rf-1", 3000)
    again = refund_payment(bonus_program, "pay-1", "rf-1", 3000)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["replayed"] is True
    assert parts(bonus_program) == (45000, 5000)
    other = refund_payment(bonus_program, "pay-1", "rf-1", 2000)
    assert other.status_code == 409
    assert other.json()["code"] == "wallet_refund_id_reused"
    assert parts(bonus_program) == (45000, 5000)


def test_a_payment_beyond_the_wallet_is_refused_and_writes_nothing(bonus_program, clock):
    recharge(bonus_program.svc, clock, "rc1", 50000)
    before = row_counts(bonus_program.svc)
    # when ¥551 is paid from ¥550
    response = pay(bonus_program, "pay-1", 55100)
    # then it is refused as insufficient, naming the amount, and nothing is written
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert (response.json()["code"], response.json()["field"]) == ("insufficient_balance", "amount")
    assert row_counts(bonus_program.svc) == before
    # and exactly the whole wallet can be paid
    assert pay(bonus_program, "pay-2", 55000).status_code == 201
    assert parts(bonus_program) == (0, 0)


def test_a_refund_of_an_unknown_payment_is_not_found(bonus_program, clock):
    recharge(bonus_program.svc, clock, "rc1", 50000)
    response = refund_payment(bonus_program, "nope", "rf-1", 100)
    assert response.status_code == 404
    assert response.json()["code"] == "wallet_payment_not_found"


# ---------------------------------------------------------------- refunds of recharges


def test_a_recharge_refund_returns_principal_and_takes_its_bonus_back(bonus_program, clock):
    # given ¥500 recharged with ¥50 bonus, nothing spent
    recharge(bonus_program.svc, clock, "rc1", 50000)
    # when ¥200 of it is refunded
    effects = refund_recharge(bonus_program.svc, clock, "rc1", "rr1", 20000)["effects"]
    # then ¥200 is paid out and ¥20 of the bonus taken back with it
    assert the_effect(effects, "wallet.recharge_refunded") == {
        "kind": "wallet.recharge_refunded",
        "program_id": "platform",
        "principal": 20000,
        "bonus_taken_back": 2000,
        "paid_out": 20000,
        "recharged": 50000,
        "refunded_total": 20000,
    }
    found = wallet(bonus_program)
    assert (found["principal"], found["bonus"], found["recharged_total"]) == (30000, 3000, 30000)
    # when the remaining ¥300 is refunded
    refund_recharge(bonus_program.svc, clock, "rc1", "rr2", 30000)
    # then the wallet is empty and the recharge fully undone
    assert parts(bonus_program) == (0, 0)
    recharged = one(bonus_program.svc, tables.wallet_recharges, recharge_id="rc1")
    assert (recharged["refunded"], recharged["bonus_taken_back"]) == (50000, 5000)
    assert wallet(bonus_program)["recharged_total"] == 0
    assert_wallet_ledger_adds_up(bonus_program.svc)


def test_a_recharge_refund_after_the_bonus_was_spent_pays_out_less(api, clock):
    # given ¥500 recharged with ¥50 bonus, and ¥80 paid bonus first (¥50 bonus, ¥30 principal)
    apply(api.svc, wallet_document("bonus_first"))
    recharge(api.svc, clock, "rc1", 50000)
    pay(api, "pay-1", 8000)
    assert parts(api) == (47000, 0)
    # when the ¥470 of principal left is refunded
    effects = refund_recharge(api.svc, clock, "rc1", "rr1", 47000)["effects"]
    # then the ¥47 of bonus that share of the recharge brought, already spent, is kept back
    refunded = the_effect(effects, "wallet.recharge_refunded")
    assert (refunded["principal"], refunded["bonus_taken_back"], refunded["paid_out"]) == (
        47000,
        4700,
        42300,
    )
    assert parts(api) == (0, 0)
    # and the money that left is what was paid out
    txn = one(api.svc, tables.wallet_txns, kind="recharge_refund")
    legs = {
        e["account"]: e["amount"] for e in rows(api.svc, tables.wallet_entries, txn_id=txn["id"])
    }
    assert legs == {"member": -47000, "system:cash": 42300, "system:bonus_issued": 4700}
    assert_wallet_ledger_adds_up(api.svc)


def test_a_recharge_refund_beyond_the_recharge_or_the_wallet_is_refused(bonus_program, clock):
    recharge(bonus_program.svc, clock, "rc1", 50000)
    pay(bonus_program, "pay-1", 45000)  # principal first: ¥50 principal left
    before = row_counts(bonus_program.svc)
    # more than the recharge
    over = refund_recharge(bonus_program.svc, clock, "rc1", "rr1", 50001, status=409)
    assert (over["code"], over["field"]) == ("wallet_refund_exceeds", "data.amount")
    # more than the principal still in the wallet
    spent = refund_recharge(bonus_program.svc, clock, "rc1", "rr2", 10000, status=409)
    assert spent["code"] == "insufficient_balance"
    # a recharge that never happened
    missing = refund_recharge(bonus_program.svc, clock, "nope", "rr3", 100, status=404)
    assert missing["code"] == "recharge_not_found"
    assert row_counts(bonus_program.svc) == before


def test_a_recharge_refund_id_used_twice_is_refused(bonus_program, clock):
    recharge(bonus_program.svc, clock, "rc1", 50000)
    refund_recharge(bonus_program.svc, clock, "rc1", "rr1", 10000)
    body = event(
        "rr-again",
        "wallet.recharge_refunded",
        occurred_at=iso(clock()),
        recharge_id="rc1",
        refund_id="rr1",
        amount=10000,
    )
    problem = send(bonus_program.svc, body, status=409)
    assert (problem["code"], problem["field"]) == ("recharge_id_reused", "data.refund_id")
    assert parts(bonus_program) == (40000, 4000)


# ---------------------------------------------------------------- reading and stores


def test_the_wallet_as_of_a_past_instant_and_its_history_in_pages(bonus_program, clock):
    recharge(bonus_program.svc, clock, "rc1", 50000)
    after_recharge = clock()
    clock.advance(days=1)
    pay(bonus_program, "pay-1", 8000, order_id="o1")
    past = wallet(bonus_program, as_of=iso(after_recharge))
    assert (past["principal"], past["bonus"], past["total"]) == (50000, 5000, 55000)
    future = bonus_program.get("/v1/members/u1/wallet", as_of=iso(clock() + timedelta(hours=1)))
    assert problem_of(future, 422, "as_of_in_future")["field"] == "as_of"
    page = bonus_program.get("/v1/members/u1/wallet/entries", limit=1).json()
    assert [(e["kind"], e["order_id"], e["principal"]) for e in page["entries"]] == [
        ("spend", "o1", -8000)
    ]
    rest = bonus_program.get(
        "/v1/members/u1/wallet/entries", before_id=page["next_before_id"]
    ).json()
    assert [e["kind"] for e in rest["entries"]] == ["recharge"]


def test_a_stores_recharge_lands_in_its_own_program_and_only_its_key_sees_it(api, clock):
    # given store s1 running its own program with 充500送50, beside the platform
    owner_service.add_store(api.svc, "s1", "优衣库", actor="test")
    apply(api.svc, wallet_document(), "s1")
    key = api.new_key("s1")
    # when a member recharges ¥500 at the store
    effects = recharge(api.svc, clock, "rc1", 50000, store_id="s1")["effects"]
    # then the money is in the store's wallet, not the platform's
    assert the_effect(effects, "wallet.recharged")["program_id"] == "s1"
    assert parts(api) == (0, 0)
    store_view = api.get("/v1/members/u1/wallet", key)
    assert store_view.status_code == 200, store_view.json()
    assert (store_view.json()["program_id"], store_view.json()["total"]) == ("s1", 55000)
    # and the store's key may not look at the platform's wallet
    platform = api.get("/v1/members/u1/wallet", key, program_id="platform")
    assert platform.status_code == 403
    # and it may pay from its own
    assert pay(api, "pay-1", 1000).status_code == 409  # the platform's wallet is empty
    paid_in_store = api.post("/v1/members/u1/wallet/payments", {"id": "p", "amount": 1000}, key)
    assert paid_in_store.status_code == 201, paid_in_store.json()
    assert paid_in_store.json()["balance"]["total"] == 54000
    assert_wallet_ledger_adds_up(api.svc)
