"""The points endpoints as an integrator, an agent and a store use them: balance, history,
redemptions, holds and adjustments — refusals that write nothing, replays that apply once,
and each store's key seeing only its own program."""

from datetime import UTC, datetime, timedelta

import pytest

from huiyuan.db import tables
from huiyuan.services import owners as owner_service
from huiyuan.services import points_jobs, programs

from .bodies import completed, item, paid, refunded
from .ledger import apply, assert_reconciled, document, figures, iso, send
from .stored import one, problem_of, row_counts, rows


def earn(svc, clock, order_id, amount, store_id=None, member_id="u1"):
    body = paid(
        f"pay-{order_id}",
        order_id,
        member_id,
        amount=amount,
        items=[item(f"sku-{order_id}", amount)],
        occurred_at=iso(clock()),
        store_id=store_id,
    )
    send(svc, body)
    done = completed(f"done-{order_id}", order_id, member_id, occurred_at=iso(clock()))
    if store_id:
        done["store_id"] = store_id
    send(svc, done)


@pytest.fixture(autouse=True)
def ledger_reconciles_afterwards(api):
    """Whatever a test did over HTTP, the ledger still reconciles at its end."""
    yield
    assert_reconciled(api.svc)


@pytest.fixture
def member(api, clock):
    """Member u1 with 299 points available under version 1 of the platform's document."""
    apply(api.svc, document())
    earn(api.svc, clock, "o1", 29900)
    return api


def redeem(api, amount, redemption_id="red-1", key=None, **body):
    return api.post(
        "/v1/members/u1/points/redemptions",
        {"id": redemption_id, "amount": amount, "reason": "兑换 ¥10 券", **body},
        key,
    )


# ---------------------------------------------------------------- refusals write nothing


def test_redeeming_more_than_the_balance_is_refused_and_writes_nothing(member):
    before = row_counts(member.svc)
    # when 300 points are redeemed from 299
    response = redeem(member, 300)
    # then it is a conflict naming the amount, and nothing at all was written
    body = problem_of(response, 409, "insufficient_points")
    assert body["field"] == "amount"
    assert "299 available" in body["detail"]
    assert row_counts(member.svc) == before
    assert figures(member.svc) == (299, 0, 0, 0)


def test_holding_more_than_is_spendable_is_refused_and_writes_nothing(member):
    # given 200 of the 299 points held already
    hold = {"id": "res-1", "amount": 200}
    assert member.post("/v1/members/u1/points/reservations", hold).status_code == 201
    before = row_counts(member.svc)
    # when 100 more are held, or redeemed
    again = member.post("/v1/members/u1/points/reservations", {"id": "res-2", "amount": 100})
    spent = redeem(member, 100)
    # then both are refused as insufficient: only 99 are spendable
    assert "99 available" in problem_of(again, 409, "insufficient_points")["detail"]
    problem_of(spent, 409, "insufficient_points")
    assert row_counts(member.svc) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "r", "amount": 0, "reason": "x"}, "amount"),
        ({"id": "r", "amount": "100", "reason": "x"}, "amount"),
        ({"id": "r", "amount": 10.5, "reason": "x"}, "amount"),
        ({"id": "r", "amount": 10, "reason": ""}, "reason"),
        ({"id": "r", "amount": 10}, "reason"),
        ({"id": "r r", "amount": 10, "reason": "x"}, "id"),
        ({"id": "r", "amount": 10, "reason": "x", "ammount": 1}, "ammount"),
    ],
)
def test_a_malformed_redemption_names_the_field(member, body, field):
    before = row_counts(member.svc)
    response = member.post("/v1/members/u1/points/redemptions", body)
    assert problem_of(response, 422, "validation_failed")["field"] == field
    assert row_counts(member.svc) == before


def test_points_of_an_unknown_member_are_not_found(member):
    problem_of(member.get("/v1/members/nobody/points"), 404, "member_not_found")
    response = member.post(
        "/v1/members/nobody/points/redemptions", {"id": "r", "amount": 1, "reason": "x"}
    )
    problem_of(response, 404, "member_not_found")


# ---------------------------------------------------------------- idempotency


def test_a_redemption_sent_twice_applies_once(member):
    # given a redemption of 100 points
    first = redeem(member, 100)
    assert first.status_code == 201, first.json()
    assert first.json()["replayed"] is False
    # when the same id is sent again with the same amount
    again = redeem(member, 100)
    # then it replays the first: same transaction, points taken once
    assert again.status_code == 201
    assert again.json()["replayed"] is True
    assert again.json()["transaction_id"] == first.json()["transaction_id"]
    assert figures(member.svc) == (199, 0, 0, 0)
    assert len(rows(member.svc, tables.point_txns, kind="redeem")) == 1


def test_a_redemption_id_reused_for_another_amount_is_a_conflict(member):
    redeem(member, 100)
    before = row_counts(member.svc)
    # when the id comes back with 50 points
    response = redeem(member, 50)
    # then it is refused, naming the id, and nothing changes
    assert problem_of(response, 409, "points_request_id_reused")["field"] == "id"
    assert row_counts(member.svc) == before
    assert figures(member.svc) == (199, 0, 0, 0)


def test_a_reservation_sent_twice_holds_once_and_its_id_cannot_be_reused(member):
    hold = {"id": "res-1", "amount": 100, "order_id": "o9"}
    first = member.post("/v1/members/u1/points/reservations", hold)
    again = member.post("/v1/members/u1/points/reservations", hold)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["replayed"] is True
    assert figures(member.svc) == (299, 0, 100, 0)
    other = member.post("/v1/members/u1/points/reservations", {**hold, "amount": 99})
    assert problem_of(other, 409, "points_request_id_reused")["field"] == "id"
    assert figures(member.svc) == (299, 0, 100, 0)


def test_a_hold_is_refused_beyond_the_programs_share_of_the_order_or_off_its_unit(api, clock):
    # given points are used in hundreds and for at most half an order
    apply(api.svc, document(redemption={"min_unit": 100, "max_order_share": "0.5"}))
    earn(api.svc, clock, "o1", 100000)
    path = "/v1/members/u1/points/reservations"
    # when 150 points are held, or 600 for a ¥10 order
    off_unit = api.post(path, {"id": "res-1", "amount": 150})
    too_much = api.post(path, {"id": "res-2", "amount": 600, "order_amount": 1000})
    # then both are refused and nothing is held
    assert problem_of(off_unit, 409, "below_minimum_unit")["field"] == "amount"
    assert problem_of(too_much, 409, "deduction_exceeds_share")["field"] == "amount"
    assert figures(api.svc) == (1000, 0, 0, 0)
    # and 500 points on a ¥10 order (half of 1000 fen) are fine
    assert api.post(path, {"id": "res-3", "amount": 500, "order_amount": 1000}).status_code == 201


def test_an_order_naming_a_reservation_that_does_not_exist_is_refused(member, clock):
    body = paid("pay-2", "o2", occurred_at=iso(clock()))
    body["data"]["points_reservation_id"] = "no-such-hold"
    response = member.post("/v1/events", body)
    assert problem_of(response, 409, "reservation_not_found")["field"] == (
        "data.points_reservation_id"
    )
    assert rows(member.svc, tables.orders, order_id="o2") == []


# ---------------------------------------------------------------- adjustments


def test_an_adjustment_needs_the_admin_scope(member):
    # given a platform key that may read and write but not administer
    writer = member.new_key("platform", "read,write")
    before = row_counts(member.svc)
    # when it adjusts a member's points
    body = {"id": "adj-1", "amount": 50, "reason": "goodwill"}
    response = member.post("/v1/members/u1/points/adjustments", body, writer)
    # then it is forbidden and nothing is written
    problem_of(response, 403, "scope_missing")
    assert row_counts(member.svc) == before


def test_adjustments_by_an_admin_are_recorded_with_who_did_it_and_why(member):
    admin_key = member.new_key("platform", "admin")
    prefix = admin_key.split("_")[1]
    path = "/v1/members/u1/points/adjustments"
    # when an agent gives 50 points for a late delivery, then takes back 20 given by mistake
    plus = member.post(path, {"id": "adj-1", "amount": 50, "reason": "快递延误补偿"}, admin_key)
    minus = member.post(path, {"id": "adj-2", "amount": -20, "reason": "重复补偿"}, admin_key)
    # then both apply
    assert (plus.status_code, minus.status_code) == (201, 201), (plus.json(), minus.json())
    assert minus.json()["balance"]["available"] == 329
    assert figures(member.svc) == (329, 0, 0, 0)
    # and each is in the history with the agent's key and reason
    history = member.get("/v1/members/u1/points/entries", limit=2).json()["entries"]
    assert [(e["kind"], e["available"], e["actor"]) for e in history] == [
        ("adjust", -20, f"key:{prefix}"),
        ("earn", 50, f"key:{prefix}"),
    ]
    assert history[0]["reason"] == {"zh": "人工调整：重复补偿", "en": "manual adjustment: 重复补偿"}
    assert history[1]["rule_id"] == "manual"
    # and in the audit log
    audits = rows(member.svc, tables.audit_log, action="points.adjusted")
    assert [(a["actor"], a["subject"], a["detail"]["amount"]) for a in audits] == [
        (f"key:{prefix}", "member:u1", 50),
        (f"key:{prefix}", "member:u1", -20),
    ]
    assert audits[0]["detail"]["reason"] == "快递延误补偿"
    # and a repeated adjustment applies once
    again = member.post(path, {"id": "adj-1", "amount": 50, "reason": "快递延误补偿"}, admin_key)
    assert again.status_code == 201 and again.json()["replayed"] is True
    assert figures(member.svc) == (329, 0, 0, 0)
    assert len(rows(member.svc, tables.audit_log, action="points.adjusted")) == 2
    # and taking back more than the member has is refused
    too_much = member.post(path, {"id": "adj-3", "amount": -400, "reason": "x"}, admin_key)
    problem_of(too_much, 409, "insufficient_points")
    assert_reconciled(member.svc)


# ---------------------------------------------------------------- reading


def test_the_balance_shows_available_pending_debt_and_what_expires_soon(api, clock):
    svc = api.svc
    # given points live 20 days; a member earned 299 on Mar 1st and has a ¥100 order pending
    apply(svc, document(expiry={"mode": "rolling", "days": 20}, name={"zh": "京豆", "en": "beans"}))
    earn(svc, clock, "o1", 29900)
    send(
        svc, paid("pay-o2", "o2", amount=10000, items=[item("x", 10000)], occurred_at=iso(clock()))
    )
    # when the member centre asks for their points, with 40 of them held at a checkout
    api.post("/v1/members/u1/points/reservations", {"id": "res-1", "amount": 40})
    body = api.get("/v1/members/u1/points").json()
    # then it shows every figure, and the 299 expiring at the end of Mar 21st Shanghai
    assert body["name"] == {"zh": "京豆", "en": "beans"}
    assert body["value_fen_per_point"] == 1
    assert (body["available"], body["pending"], body["reserved"], body["debt"]) == (299, 100, 40, 0)
    assert body["spendable"] == 259
    expiry = "2026-03-21T16:00:00+00:00"
    assert body["expiring_30d"] == {"total": 299, "lots": [{"expires_at": expiry, "points": 299}]}


def test_points_expiring_beyond_30_days_are_not_counted_as_expiring_soon(member):
    body = member.get("/v1/members/u1/points").json()
    assert body["available"] == 299
    assert body["expiring_30d"] == {"total": 0, "lots": []}


def test_the_history_pages_backwards_and_filters_by_kind_and_time(api, clock):
    svc = api.svc
    # given three orders, each paid and completed a day apart, under version 1, then version 2
    apply(svc, document())
    start = clock()
    for day, order_id in enumerate(["o1", "o2", "o3"]):
        if day == 2:
            apply(svc, document(earning=[{**document()["points"]["earning"][0], "id": "v2"}]))
        earn(svc, clock, order_id, 10000 * (day + 1))
        clock.advance(days=1)
    path = "/v1/members/u1/points/entries"
    # when the first page of two is asked for
    page = api.get(path, limit=2).json()
    # then it holds the newest two, with a cursor to the rest
    assert [(e["kind"], e["order_id"]) for e in page["entries"]] == [
        ("release", "o3"),
        ("earn", "o3"),
    ]
    assert page["next_before_id"] == page["entries"][-1]["id"]
    rest = api.get(path, limit=10, before_id=page["next_before_id"]).json()
    assert [e["order_id"] for e in rest["entries"]] == ["o2", "o2", "o1", "o1"]
    assert rest["next_before_id"] is None
    # and each entry says which rule and which version decided it
    earned = api.get(path, kind="earn").json()["entries"]
    assert [(e["order_id"], e["rule_id"], e["config_version"], e["pending"]) for e in earned] == [
        ("o3", "v2", 2, 300),
        ("o2", "base", 1, 200),
        ("o1", "base", 1, 100),
    ]
    assert earned[0]["reason"]["zh"].startswith("订单 o3")
    assert earned[0]["reason"]["en"].startswith("order o3")
    # and a time window keeps only what happened in it
    second_day = start + timedelta(days=1)
    window = api.get(path, since=iso(second_day), until=iso(second_day + timedelta(days=1)))
    assert [e["order_id"] for e in window.json()["entries"]] == ["o2", "o2"]
    # and an unknown kind is refused, naming the parameter
    assert problem_of(api.get(path, kind="gift"), 422, "validation_failed")["field"] == "kind"


def test_the_balance_as_of_a_past_instant_is_rebuilt_from_the_entries(api, clock):
    svc = api.svc
    apply(svc, document())
    # given 299 points earned on Mar 1st 10:00 and 100 redeemed a day later
    before_anything = clock() - timedelta(seconds=1)
    earn(svc, clock, "o1", 29900)
    first_day = clock()
    clock.advance(days=1)
    assert (
        api.post(
            "/v1/members/u1/points/redemptions", {"id": "r1", "amount": 100, "reason": "mall"}
        ).status_code
        == 201
    )
    # when the balance is asked as of three instants
    then = [
        api.get("/v1/members/u1/points", as_of=iso(moment)).json()
        for moment in (before_anything, first_day, clock())
    ]
    # then each shows the balance at that time
    assert [(b["available"], b["pending"], b["debt"]) for b in then] == [
        (0, 0, 0),
        (299, 0, 0),
        (199, 0, 0),
    ]
    assert then[1]["as_of"] == first_day.isoformat()
    # and an instant without an offset is refused
    naive = api.get("/v1/members/u1/points", as_of="2026-03-01T10:00:00")
    assert problem_of(naive, 422, "validation_failed")["field"] == "as_of"


# ---------------------------------------------------------------- stores


@pytest.fixture
def stores(api, clock):
    """Store s1 with its own program giving 2 points per ¥1; u1 earned in s1, u2 only on the
    platform."""
    owner_service.add_store(api.svc, "s1", "优衣库", actor="test")
    owner_service.add_store(api.svc, "s2", "李宁", actor="test")
    apply(api.svc, document())
    apply(api.svc, document(earning=[{**document()["points"]["earning"][0], "points": 2}]), "s1")
    earn(api.svc, clock, "o1", 10000, store_id="s1")
    earn(api.svc, clock, "o2", 10000, member_id="u2")
    api.s1 = api.new_key("s1")
    api.s2 = api.new_key("s2")
    return api


def test_a_store_order_earns_in_the_platforms_program_and_the_stores_own(stores):
    assert figures(stores.svc) == (100, 0, 0, 0)
    assert figures(stores.svc, program="s1") == (200, 0, 0, 0)
    assert_reconciled(stores.svc)


def test_a_store_key_reads_and_spends_only_its_own_programs_points(stores):
    # when store s1 reads u1's points in its program
    own = stores.get("/v1/members/u1/points", stores.s1, program_id="s1")
    # then it sees them
    assert own.status_code == 200, own.json()
    assert (own.json()["program_id"], own.json()["available"]) == ("s1", 200)
    entries = stores.get("/v1/members/u1/points/entries", stores.s1, program_id="s1").json()
    assert {e["kind"] for e in entries["entries"]} == {"earn", "release"}
    # and it may spend them
    body = {"id": "red-1", "amount": 50, "reason": "门店兑换", "program_id": "s1"}
    spent = stores.post("/v1/members/u1/points/redemptions", body, stores.s1)
    assert spent.status_code == 201, spent.json()
    assert figures(stores.svc, program="s1") == (150, 0, 0, 0)
    # and a call naming no program means the store's own, as on every member endpoint
    default = stores.get("/v1/members/u1/points", stores.s1)
    assert (default.status_code, default.json()["program_id"]) == (200, "s1")
    assert default.json()["available"] == 150
    # but not the platform's points
    before = row_counts(stores.svc)
    platform = stores.get("/v1/members/u1/points", stores.s1, program_id="platform")
    assert problem_of(platform, 403, "program_not_enrolled")["field"] == "program_id"
    spend = stores.post(
        "/v1/members/u1/points/redemptions",
        {"id": "red-2", "amount": 1, "reason": "x", "program_id": "platform"},
        stores.s1,
    )
    problem_of(spend, 403, "program_not_enrolled")
    hold = stores.post(
        "/v1/members/u1/points/reservations",
        {"id": "h", "amount": 1, "program_id": "platform"},
        stores.s1,
    )
    problem_of(hold, 403, "program_not_enrolled")
    assert row_counts(stores.svc) == before


def test_a_store_key_sees_neither_another_stores_program_nor_members_not_its_own(stores):
    # store s2 reading s1's program is forbidden
    other = stores.get("/v1/members/u1/points", stores.s2, program_id="s1")
    problem_of(other, 403, "program_not_enrolled")
    # store s1 asking about u2, who never shopped there, finds no such member
    stranger = stores.get("/v1/members/u2/points", stores.s1, program_id="s1")
    problem_of(stranger, 404, "member_not_found")
    history = stores.get("/v1/members/u2/points/entries", stores.s1, program_id="s1")
    problem_of(history, 404, "member_not_found")
    # and a store may not adjust points even with an admin key on another store's program
    admin = stores.new_key("s2", "admin")
    body = {"id": "adj", "amount": 5, "reason": "x", "program_id": "s1"}
    problem_of(
        stores.post("/v1/members/u1/points/adjustments", body, admin), 403, "program_not_enrolled"
    )


def test_the_liability_report_is_for_platform_administrators(stores):
    report = stores.get("/v1/reports/points-liability")
    assert report.status_code == 200, report.json()
    by_program = {(r["program_id"], r["issuer"]): r for r in report.json()["liability"]}
    assert by_program[("platform", "platform")]["outstanding"] == 200
    assert by_program[("s1", "s1")]["outstanding"] == 200
    assert by_program[("s1", "s1")]["outstanding_fen"] == 200
    problem_of(stores.get("/v1/reports/points-liability", stores.s1), 403, "scope_missing")


def test_a_refund_in_a_store_takes_back_from_both_programs(stores, clock):
    body = refunded("ref-1", "o1", "r1", 5000, occurred_at=iso(clock()), store_id="s1")
    effects = send(stores.svc, body)["effects"]
    clawed = {e["program_id"]: e["points"] for e in effects if e["kind"] == "points.clawed_back"}
    assert clawed == {"platform": 50, "s1": 100}
    assert figures(stores.svc) == (50, 0, 0, 0)
    assert figures(stores.svc, program="s1") == (100, 0, 0, 0)
    assert one(stores.svc, tables.orders, order_id="o1")["refunded_amount"] == 5000
    assert_reconciled(stores.svc)


# ---------------------------------------------------------------- flow, month by month


def test_the_points_flow_counts_each_movement_in_its_shanghai_month(api, clock):
    svc = api.svc
    # given points living 10 days, worth 1 fen each
    apply(svc, document(expiry={"mode": "rolling", "days": 10}))
    # and 100 points earned at 23:30 on March 31st in Shanghai (15:30 UTC)
    clock.now = datetime(2026, 3, 31, 15, 30, tzinfo=UTC)
    earn(svc, clock, "o1", 10000)
    # when, an hour later (April 1st in Shanghai, still March 31st in UTC), 30 are redeemed
    clock.advance(hours=1)
    assert redeem(api, 30).status_code == 201
    # and 10 are taken away by an agent, and an order of ¥50 is paid and refunded in full
    adjust = {"id": "adj-1", "amount": -10, "reason": "错发积分"}
    assert api.post("/v1/members/u1/points/adjustments", adjust).status_code == 201
    o2 = paid("pay-o2", "o2", "u1", amount=5000, items=[item("sku-o2", 5000)])
    send(svc, {**o2, "occurred_at": iso(clock())})
    send(svc, refunded("ref-o2", "o2", "r2", 5000, occurred_at=iso(clock())))
    # and the 60 left expire on April 10th
    clock.advance(days=12)
    points_jobs.expire_lots(svc)
    # then the flow of the last two months puts each movement in its business month
    report = api.get("/v1/reports/points-flow", months=2).json()
    march, april = report["months"]
    assert (march["month"], april["month"]) == ("2026-03", "2026-04")
    assert march["starts_at"] == "2026-03-01T00:00:00+08:00"
    assert march["ends_at"] == april["starts_at"] == "2026-04-01T00:00:00+08:00"
    flows = ("issued", "taken_back", "redeemed", "expired", "adjusted_out", "change", "balance")
    assert [march[k] for k in flows] == [100, 0, 0, 0, 0, 100, 100]
    assert [april[k] for k in flows] == [50, 50, 30, 60, 10, -100, 0]
    assert april["redeemed_fen"] == 30
    # and the months add up to what members hold now
    assert april["balance"] == figures(svc)[0] == 0
    # and a month asked for before anything happened is all zeros
    earlier = api.get("/v1/reports/points-flow", months=3).json()["months"][0]
    assert (earlier["month"], earlier["issued"], earlier["balance"]) == ("2026-02", 0, 0)


def worth_2_fen_from_february_15th(svc):
    """A new version of the platform's document: from Shanghai's midnight starting February
    15th, 2026, a point is worth 2 fen."""
    programs.apply_document(
        svc,
        "platform",
        document(value_fen=2),
        actor="test",
        effective_from=datetime(2026, 2, 14, 16, tzinfo=UTC),
    )


def test_flow_and_liability_price_each_movement_at_the_value_in_force_when_it_happened(api, clock):
    svc = api.svc
    # given points worth 1 fen each from February 1st
    clock.now = datetime(2026, 2, 1, 4, tzinfo=UTC)
    apply(svc, document())
    # and 100 points earned on the 10th, 30 of them redeemed on the 12th
    clock.now = datetime(2026, 2, 10, 4, tzinfo=UTC)
    earn(svc, clock, "o1", 10000)
    # and from the 15th (Shanghai midnight) a point worth 2 fen
    worth_2_fen_from_february_15th(svc)
    clock.now = datetime(2026, 2, 12, 4, tzinfo=UTC)
    assert redeem(api, 30).status_code == 201
    # when 100 more are earned on the 20th and 20 redeemed
    clock.now = datetime(2026, 2, 20, 4, tzinfo=UTC)
    earn(svc, clock, "o2", 10000)
    assert redeem(api, 20, "red-2").status_code == 201
    # then, in March, February's movements are priced at the value of their day
    clock.now = datetime(2026, 3, 5, 4, tzinfo=UTC)
    february, march = api.get("/v1/reports/points-flow", months=2).json()["months"]
    assert (february["issued"], february["issued_fen"]) == (200, 100 * 1 + 100 * 2)
    assert (february["redeemed"], february["redeemed_fen"]) == (50, 30 * 1 + 20 * 2)
    assert (february["change"], february["change_fen"]) == (150, 300 - 70)
    # and what members held at the month's end at the value in force then
    assert (february["balance"], february["balance_fen"]) == (150, 300)
    assert february["value_fen_per_point"] == 2
    assert (march["change_fen"], march["balance_fen"]) == (0, 300)
    # and the liability report agrees: what was redeemed at its day's value, what is held at
    # today's
    (owed,) = api.get("/v1/reports/points-liability").json()["liability"]
    assert (owed["redeemed"], owed["redeemed_fen"]) == (50, 70)
    assert (owed["outstanding"], owed["outstanding_fen"]) == (150, 300)


def test_points_a_refund_gives_back_count_at_the_value_in_force_when_they_came_back(api, clock):
    svc = api.svc
    # given points worth 1 fen each, and a member who earned 200 on February 10th
    clock.now = datetime(2026, 2, 1, 4, tzinfo=UTC)
    apply(svc, document())
    clock.now = datetime(2026, 2, 10, 4, tzinfo=UTC)
    earn(svc, clock, "o1", 20000)
    # and used 100 of them on a ¥100 order on the 12th
    clock.now = datetime(2026, 2, 12, 4, tzinfo=UTC)
    held = {"id": "res-1", "amount": 100, "order_id": "o2"}
    assert api.post("/v1/members/u1/points/reservations", held).status_code == 201
    body = paid(
        "pay-o2", "o2", amount=10000, items=[item("sku-o2", 10000)], occurred_at=iso(clock())
    )
    body["data"]["points_reservation_id"] = "res-1"
    send(svc, body)
    # and from the 15th a point is worth 2 fen
    worth_2_fen_from_february_15th(svc)
    # when the order is refunded in full on the 20th
    clock.now = datetime(2026, 2, 20, 4, tzinfo=UTC)
    send(svc, refunded("ref-o2", "o2", "r1", 10000, occurred_at=iso(clock())))
    # then February's flow has the 100 points redeemed at 1 fen and given back at 2 fen
    clock.now = datetime(2026, 3, 5, 4, tzinfo=UTC)
    (february,) = api.get("/v1/reports/points-flow", months=2).json()["months"][:1]
    assert (february["redeemed"], february["redeemed_fen"]) == (0, 100 * 1 - 100 * 2)
    assert (february["balance"], february["balance_fen"]) == (200, 400)
    # and the liability report says the same of them, and holds the 200 at today's value
    (owed,) = api.get("/v1/reports/points-liability").json()["liability"]
    assert (owed["redeemed"], owed["redeemed_fen"]) == (0, -100)
    assert (owed["outstanding"], owed["outstanding_fen"]) == (200, 400)


def test_the_points_flow_is_for_administrators_of_the_program(stores):
    # a store's admin key sees its own program's flow by default
    admin = stores.new_key("s1", "admin")
    own = stores.get("/v1/reports/points-flow", admin, months=1).json()
    assert own["program_id"] == "s1"
    assert own["months"][0]["issued"] == 200
    # but not the platform's, nor with a key that only reads and writes
    other = stores.get("/v1/reports/points-flow", admin, program_id="platform")
    problem_of(other, 403, "program_not_enrolled")
    problem_of(stores.get("/v1/reports/points-flow", stores.s1), 403, "scope_missing")
    # and a number of months out of range is refused, naming it
    wrong = stores.get("/v1/reports/points-flow", months=0)
    assert problem_of(wrong, 422, "validation_failed")["field"] == "months"
