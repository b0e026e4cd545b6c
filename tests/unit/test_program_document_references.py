"""A program document is whole in itself, checked without a database: ids are unique, what it
names exists, and each benefit has the fields of its kind. Each refusal is located at the
offending field, so the API can name it."""

import pytest
from pydantic import ValidationError

from huiyuan.schemas.program_config import ProgramDocument


def named(text):
    return {"zh": text, "en": text}


LADDER = {
    "tiers": [
        {"id": "member", "name": named("member"), "threshold": 0},
        {"id": "gold", "name": named("gold"), "threshold": 1000},
    ]
}


def refusals(doc):
    with pytest.raises(ValidationError) as refused:
        ProgramDocument.model_validate(doc)
    return [(e["loc"], e["msg"]) for e in refused.value.errors()]


def test_every_duplicate_and_every_unknown_reference_is_reported_at_its_own_field():
    # given a document with two mistakes of each sort
    doc = {
        "growth": {
            "rules": [
                {"id": "buy", "kind": "purchase", "points": 1, "coefficients": {"vip": "2"}},
            ]
        },
        "tiers": LADDER,
        "benefits": [
            {"id": "off", "kind": "percent_discount", "name": named("off"), "percent_off": "5"},
            {"id": "off", "kind": "custom", "name": named("custom")},
        ],
        "plans": [
            {
                "id": "plus",
                "name": named("plus"),
                "price_fen": 100,
                "period": "annual",
                "benefits": ["off", "ship"],
            }
        ],
    }
    # when it is validated, then each mistake is refused where it is
    assert refusals(doc) == [
        (("benefits", 1, "id"), "benefit id 'off' is used twice (also benefits[0].id)"),
        (("plans", 0, "benefits", 1), "benefit 'ship' is not in the catalog"),
        (
            ("growth", "rules", 0, "coefficients", "vip"),
            "names tier 'vip', which is not on the ladder (gold, member)",
        ),
    ]


@pytest.mark.parametrize(
    ("benefit", "field", "message"),
    [
        (
            {"kind": "percent_discount"},
            "percent_off",
            "a percent_discount benefit needs percent_off",
        ),
        (
            {"kind": "points_multiplier"},
            "multiplier",
            "a points_multiplier benefit needs multiplier",
        ),
        (
            {"kind": "member_price", "member_price_fen": {}},
            "member_price_fen",
            "a member_price benefit needs member_price_fen",
        ),
        (
            {"kind": "custom", "monthly_quota": 3},
            "monthly_quota",
            "only a free_shipping benefit has monthly_quota",
        ),
        (
            {"kind": "percent_discount", "percent_off": "5", "multiplier": "2"},
            "multiplier",
            "only a points_multiplier benefit has multiplier",
        ),
    ],
)
def test_a_benefit_has_the_fields_of_its_kind_and_no_others(benefit, field, message):
    doc = {"benefits": [{"id": "b", "name": named("b"), **benefit}]}
    assert refusals(doc) == [(("benefits", 0, field), message)]


def test_a_benefit_with_the_fields_of_its_kind_and_unlimited_free_shipping_is_accepted():
    doc = ProgramDocument.model_validate(
        {
            "benefits": [
                {"id": "ship", "kind": "free_shipping", "name": named("ship")},
                {"id": "x2", "kind": "points_multiplier", "name": named("x2"), "multiplier": "2"},
            ]
        }
    )
    assert [b.monthly_quota for b in doc.benefits] == [None, None]
