"""Program documents: validated, versioned, applied from a time and never in the past, and an
event judged by the version in force when it occurred."""

from datetime import timedelta

import pytest

from huiyuan.db import tables
from huiyuan.domain.errors import DomainError
from huiyuan.services import owners as owner_service
from huiyuan.services import programs

from .bodies import completed, item, paid, refunded
from .ledger import BASE_RULE, apply, assert_reconciled, document, figures, history, iso, send
from .stored import one, row_counts, rows, the_effect

TEN_PER_YUAN = {**BASE_RULE, "id": "ten", "points": 10}


def put(api, doc, program="platform", key=None, **body):
    return api.client.put(
        f"/v1/programs/{program}/document",
        json={"document": doc, **body},
        headers=api.headers(key),
    )


def pay(svc, order_id, amount, at):
    body = paid(
        f"pay-{order_id}",
        order_id,
        amount=amount,
        items=[item(f"sku-{order_id}", amount)],
        occurred_at=iso(at),
    )
    return send(svc, body)["effects"]


# ---------------------------------------------------------------- validation


RULE = "document.points.earning[0]"


def earning(**rule):
    return {"points": {"earning": [rule]}}


INVALID = [
    (earning(**{**BASE_RULE, "per_fen": 0}), f"{RULE}.per_fen"),
    (earning(**{**BASE_RULE, "rounding": "bankers"}), f"{RULE}.rounding"),
    (earning(kind="per_amount", id="b", points=1), f"{RULE}.per_fen"),
    (earning(**{**BASE_RULE, "conditions": {"stores": "s1"}}), f"{RULE}.conditions.stores"),
    (earning(id="no-kind", points=1), RULE),
    ({"points": {"earnings": []}}, "document.points.earnings"),
    ({"points": {"expiry": {"days": 0}}}, "document.points.expiry.days"),
    ({"points": {"negative_balance": "floor_at_zero"}}, "document.points.negative_balance"),
    (
        {"points": {"redemption": {"max_order_share": "1.5"}}},
        "document.points.redemption.max_order_share",
    ),
    ({"wallet": {"spend_order": "random"}}, "document.wallet.spend_order"),
    (
        {"wallet": {"recharge_bonuses": [{"min_fen": 50000}]}},
        "document.wallet.recharge_bonuses[0].bonus_fen",
    ),
]


@pytest.mark.parametrize(("doc", "field"), INVALID)
def test_an_invalid_document_is_refused_naming_the_field(api, doc, field):
    before = row_counts(api.svc)
    # when an operator applies a document with a mistake
    response = put(api, doc)
    # then it is refused, naming the field as the document spells it, and nothing is stored
    assert response.status_code == 422, response.json()
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["code"], body["field"]) == ("program_document_invalid", field)
    assert body["detail"].startswith(f"{field}: ")
    assert row_counts(api.svc) == before
    assert programs.list_versions(api.svc, "platform") == []


def test_a_document_that_is_not_an_object_is_refused(api):
    response = put(api, ["points"])
    assert response.status_code == 422
    assert response.json()["field"] == "document"


def test_rule_ids_must_be_unique_within_a_document(api):
    response = put(api, {"points": {"earning": [BASE_RULE, BASE_RULE]}})
    assert response.status_code == 422
    assert response.json()["field"] == "document.points.earning[1].id"
    assert "base" in response.json()["detail"]


# ---------------------------------------------------------------- ids and what names them


def named(zh, en=None):
    return {"zh": zh, "en": en or zh}


def tier(tier_id, threshold, **more):
    return {"id": tier_id, "name": named(tier_id), "threshold": threshold, **more}


def ladder(*tiers):
    return {"tiers": list(tiers or (tier("member", 0), tier("gold", 1000)))}


def benefit(benefit_id, kind="custom", **more):
    return {"id": benefit_id, "kind": kind, "name": named(benefit_id), **more}


def plan(plan_id, **more):
    return {"id": plan_id, "name": named(plan_id), "price_fen": 9900, "period": "monthly", **more}


def growth_rule(rule_id, kind="purchase", **more):
    return {"id": rule_id, "kind": kind, "points": 1, **more}


TIERED_FIXED = {"kind": "fixed", "id": "gold-sign-in", "trigger": "sign_in", "points": 5}

BROKEN_REFERENCES = [
    pytest.param(
        {"growth": {"rules": [growth_rule("buy"), growth_rule("buy", "login")]}},
        "document.growth.rules[1].id",
        "growth rule id 'buy' is used twice",
        id="growth rule ids twice",
    ),
    pytest.param(
        {"tiers": ladder(tier("member", 0), tier("gold", 500), tier("gold", 900))},
        "document.tiers.tiers[2].id",
        "tier id 'gold' is used twice",
        id="tier ids twice",
    ),
    pytest.param(
        {"benefits": [benefit("gift"), benefit("gift")]},
        "document.benefits[1].id",
        "benefit id 'gift' is used twice",
        id="benefit ids twice",
    ),
    pytest.param(
        {"plans": [plan("plus"), plan("plus")]},
        "document.plans[1].id",
        "plan id 'plus' is used twice",
        id="plan ids twice",
    ),
    pytest.param(
        {"points": {"earning": [BASE_RULE], "multipliers": [{"id": "base", "factor": "2"}]}},
        "document.points.multipliers[0].id",
        "rule id 'base' is used twice",
        id="a multiplier with an earning rule's id",
    ),
    pytest.param(
        {
            "tiers": ladder(),
            "growth": {"rules": [growth_rule("buy", coefficients={"glod": "1.2"})]},
        },
        "document.growth.rules[0].coefficients.glod",
        "names tier 'glod', which is not on the ladder (gold, member)",
        id="a coefficient of a tier not on the ladder",
    ),
    pytest.param(
        {"growth": {"rules": [growth_rule("buy", coefficients={"gold": "1.2"})]}},
        "document.growth.rules[0].coefficients.gold",
        "the document has no tier ladder",
        id="a coefficient without a ladder",
    ),
    pytest.param(
        {
            "tiers": ladder(),
            "points": {"earning": [{**TIERED_FIXED, "conditions": {"tiers": ["gold", "vip"]}}]},
        },
        "document.points.earning[0].conditions.tiers[1]",
        "names tier 'vip'",
        id="an earning rule for a tier not on the ladder",
    ),
    pytest.param(
        {
            "points": {
                "multipliers": [{"id": "x2", "factor": "2", "conditions": {"tiers": ["gold"]}}]
            }
        },
        "document.points.multipliers[0].conditions.tiers[0]",
        "the document has no tier ladder",
        id="a multiplier for a tier without a ladder",
    ),
    pytest.param(
        {"benefits": [benefit("gift")], "tiers": ladder(tier("member", 0, benefits=["gfit"]))},
        "document.tiers.tiers[0].benefits[0]",
        "benefit 'gfit' is not in the catalog",
        id="a tier's benefit not in the catalog",
    ),
    pytest.param(
        {"benefits": [benefit("gift")], "plans": [plan("plus", benefits=["gift", "gift"])]},
        "document.plans[0].benefits[1]",
        "benefit 'gift' is listed twice",
        id="a plan listing a benefit twice",
    ),
    pytest.param(
        {"benefits": [benefit("off", "percent_discount")]},
        "document.benefits[0].percent_off",
        "a percent_discount benefit needs percent_off",
        id="a discount without percent_off",
    ),
    pytest.param(
        {"benefits": [benefit("x2", "points_multiplier")]},
        "document.benefits[0].multiplier",
        "a points_multiplier benefit needs multiplier",
        id="a multiplier benefit without multiplier",
    ),
    pytest.param(
        {"benefits": [benefit("price", "member_price", skus=["a"])]},
        "document.benefits[0].member_price_fen",
        "a member_price benefit needs member_price_fen",
        id="a member price without prices",
    ),
    pytest.param(
        {"benefits": [benefit("ship", "free_shipping", percent_off="10")]},
        "document.benefits[0].percent_off",
        "only a percent_discount benefit has percent_off",
        id="a rate on a benefit of another kind",
    ),
    pytest.param(
        {"plans": [{**plan("plus"), "name": {"zh": "PLUS会员"}}]},
        "document.plans[0].name.en",
        "Field required",
        id="a plan named in one language",
    ),
]


@pytest.mark.parametrize(("doc", "field", "reason"), BROKEN_REFERENCES)
def test_duplicate_ids_unknown_references_and_incomplete_benefits_are_refused(
    api, doc, field, reason
):
    before = row_counts(api.svc)
    # when an operator applies a document with the mistake
    response = put(api, doc)
    # then it is refused, naming the offending field and saying why, and nothing is stored
    assert response.status_code == 422, response.json()
    body = response.json()
    assert (body["code"], body["field"]) == ("program_document_invalid", field)
    assert body["detail"].startswith(f"{field}: ")
    assert reason in body["detail"]
    assert row_counts(api.svc) == before


def test_a_document_whose_ids_and_references_agree_is_accepted(api):
    # given a ladder whose tiers grant catalog benefits, growth coefficients and a points rule
    # for its tiers, and a plan granting benefits of every kind that needs a field
    doc = {
        "points": {"earning": [BASE_RULE, {**TIERED_FIXED, "conditions": {"tiers": ["gold"]}}]},
        "growth": {"rules": [growth_rule("buy", coefficients={"gold": "1.5"})]},
        "tiers": ladder(tier("member", 0), tier("gold", 1000, benefits=["off", "ship"])),
        "benefits": [
            benefit("off", "percent_discount", percent_off="5"),
            benefit("x2", "points_multiplier", multiplier="2"),
            benefit("price", "member_price", member_price_fen={"sku-1": 990}),
            benefit("ship", "free_shipping", monthly_quota=4),
            benefit("desk", "priority_service"),
        ],
        "plans": [plan("plus", benefits=["off", "x2", "price", "ship", "desk"])],
    }
    # when it is applied, then it is version 1
    response = put(api, doc)
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 1


def test_only_the_platforms_administrators_apply_documents(api):
    owner_service.add_store(api.svc, "s1", "优衣库", actor="test")
    store_admin = api.new_key("s1", "admin")
    writer = api.new_key("platform", "read,write")
    assert put(api, document(), "s1", store_admin).status_code == 403
    assert put(api, document(), key=writer).status_code == 403
    assert programs.list_versions(api.svc, "s1") == []
    missing = put(api, document(), "nowhere")
    assert (missing.status_code, missing.json()["code"]) == (404, "program_not_found")


# ---------------------------------------------------------------- versions


def test_versions_are_numbered_kept_and_audited(api, clock):
    # when two documents are applied to the platform's program, an hour apart
    first = put(api, document())
    clock.advance(hours=1)
    second = put(api, document(earning=[TEN_PER_YUAN]))
    # then they are versions 1 and 2
    assert (first.status_code, second.status_code) == (200, 200), second.json()
    assert [first.json()["version"], second.json()["version"]] == [1, 2]
    # and both are kept with their time, their author and the full document
    versions = api.get("/v1/programs/platform/document").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["effective_from"] == clock().isoformat()
    assert versions[1]["actor"].startswith("key:")
    assert versions[1]["document"]["points"]["earning"][0]["id"] == "ten"
    assert versions[1]["document"]["points"]["expiry"]["mode"] == "rolling"  # defaults filled in
    audits = rows(api.svc, tables.audit_log, action="program.document_applied")
    assert [(a["subject"], a["detail"]["version"]) for a in audits] == [
        ("program:platform", 1),
        ("program:platform", 2),
    ]


def test_a_version_cannot_take_effect_in_the_past(api, clock):
    put(api, document())
    before = row_counts(api.svc)
    # when a version is applied as if from yesterday
    response = put(api, document(), effective_from=iso(clock() - timedelta(days=1)))
    # then it is refused: history is never rewritten
    assert response.status_code == 422
    assert response.json()["field"] == "effective_from"
    assert row_counts(api.svc) == before
    with pytest.raises(DomainError):
        programs.apply_document(
            api.svc,
            "platform",
            document(),
            actor="t",
            effective_from=clock() - timedelta(seconds=1),
        )


def test_an_event_is_judged_by_the_version_in_force_when_it_occurred(api, clock):
    svc = api.svc
    # given version 1 (1 point per ¥1) applied on Mar 1st 10:00
    apply(svc, document())
    start = clock()
    # and version 2 (10 points per ¥1) applied a day later, effective at once
    clock.advance(days=1)
    apply(svc, document(earning=[TEN_PER_YUAN]))
    # when an order paid on Mar 1st 12:00 arrives late, then an order paid now
    old = the_effect(pay(svc, "o-old", 10000, start + timedelta(hours=2)), "points.pending")
    new = the_effect(pay(svc, "o-new", 10000, clock()), "points.pending")
    # then the late order keeps the rules of its time, the new one gets the new rules
    assert (old["rule_id"], old["points"]) == ("base", 100)
    assert (new["rule_id"], new["points"]) == ("ten", 1000)
    earned = {e["order_id"]: e["config_version"] for e in history(svc, kind="earn")}
    assert earned == {"o-old": 1, "o-new": 2}
    # and an order paid before any version was applied earns by the built-in default, version 0
    default = pay(svc, "o-first", 10000, start - timedelta(hours=1))
    assert the_effect(default, "points.pending")["points"] == 100
    assert {e["order_id"]: e["config_version"] for e in history(svc, kind="earn")}["o-first"] == 0
    assert_reconciled(svc)


def test_a_version_effective_later_waits_for_its_time(api, clock):
    svc = api.svc
    apply(svc, document())
    # when version 2 is published now, effective tomorrow
    tomorrow = clock() + timedelta(days=1)
    response = put(api, document(earning=[TEN_PER_YUAN]), effective_from=iso(tomorrow))
    assert response.status_code == 200, response.json()
    # then an order paid today earns by version 1, one paid tomorrow by version 2
    today = the_effect(pay(svc, "o1", 10000, clock()), "points.pending")
    clock.now = tomorrow
    later = the_effect(pay(svc, "o2", 10000, clock()), "points.pending")
    assert (today["points"], later["points"]) == (100, 1000)
    # and a refund of the first order today takes back its own points, not the new rate's
    clawed = send(svc, refunded("ref-1", "o1", "r1", 5000, occurred_at=iso(clock())))["effects"]
    assert the_effect(clawed, "points.cancelled")["points"] == 50
    assert figures(svc) == (0, 1050, 0, 0)


def test_points_released_under_a_new_version_expire_by_its_policy(api, clock):
    svc = api.svc
    # given an order paid under version 1 (points live 365 days)
    apply(svc, document())
    pay(svc, "o1", 10000, clock())
    # and version 2 making points live 30 days, applied before the order completes
    clock.advance(days=1)
    apply(svc, document(expiry={"mode": "rolling", "days": 30}))
    # when the order completes
    send(svc, completed("done-1", "o1", occurred_at=iso(clock())))
    # then its points expire by the version in force at their release
    lot = one(svc, tables.point_lots, order_id="o1")
    assert lot["expires_at"] == clock().replace(hour=16, minute=0) + timedelta(days=30)
    assert history(svc, kind="release")[0]["config_version"] == 2


def test_the_program_schema_is_published_as_json_schema(api):
    response = api.get("/v1/schemas/program")
    assert response.status_code == 200
    schema = response.json()
    assert schema["title"] == "ProgramDocument"
    assert schema["type"] == "object"
    assert {"points", "wallet"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    assert {"PerAmountDoc", "ThresholdDoc", "FixedDoc", "ExpiryDoc", "WalletDoc"} <= set(defs)
    per_amount = defs["PerAmountDoc"]["properties"]
    assert per_amount["per_fen"]["exclusiveMinimum"] == 0
    assert defs["ExpiryDoc"]["properties"]["mode"]["enum"] == ["rolling", "calendar", "never"]


def test_a_stored_version_an_earlier_release_accepted_still_loads(api, svc, clock):
    # given a version stored by an earlier release whose checks were looser: the same earning
    # rule id twice (refused today)
    doc = document(earning=[TEN_PER_YUAN, TEN_PER_YUAN])
    assert put(api, doc).status_code == 422
    with svc.engine.begin() as conn:
        conn.execute(
            tables.program_versions.insert().values(
                program_id="platform",
                version=1,
                document=doc,
                effective_from=clock(),
                created_at=clock(),
                actor="earlier-release",
            )
        )
    svc.configs.invalidate()
    # when the program is read back, then it loads and events are judged by it, as before
    clock.advance(minutes=1)
    with svc.engine.connect() as conn:
        assert svc.configs.at(conn, "platform", clock()).version == 1
    effects = pay(svc, "o1", 10000, clock())
    earned = [e["points"] for e in effects if e["kind"] == "points.pending"]
    assert earned == [1000]  # the second rule of the same id finds the first one's credit
