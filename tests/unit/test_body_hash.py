"""The event body hash: the fast writer (orjson) gives the standard library's bytes.

Stored hashes decide whether a resent event is a replay (same hash) or a reuse of its id (a
conflict), across versions of Huiyuan: the canonical JSON must never change."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from hashlib import sha256
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from huiyuan.schemas.events import DATA_MODELS
from huiyuan.schemas.validation import DATE_FIELDS, body_hash, parse_event


def _reference(raw: Any) -> str:
    canonical = json.dumps(raw, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return sha256(canonical.encode()).hexdigest()


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _text
_bodies = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=30,
)


@given(st.dictionaries(_text, _bodies, max_size=6))
def test_the_fast_writer_hashes_every_float_free_body_as_the_standard_library(raw: Any) -> None:
    assert body_hash(raw, no_floats=True) == _reference(raw)


def test_control_characters_quotes_and_non_ascii_are_written_alike() -> None:
    raw = {"z": '\x00\x1f\x7f"\\/\n\t\u2028é会员😀', "a": [True, None, -(2**63), 2**64]}
    assert body_hash(raw, no_floats=True) == _reference(raw)


def test_a_lone_surrogate_fails_as_it_always_did() -> None:
    with pytest.raises(UnicodeEncodeError):
        body_hash({"a": "\ud800"}, no_floats=True)


def _paid(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": "e1",
        "type": "order.paid",
        "occurred_at": "2026-11-24T10:00:00+08:00",
        "member_id": "m1",
        "data": {
            "order_id": "o1",
            "amount": 100,
            "items": [
                {"sku": "s", "name": "衬衫", "quantity": 1, "unit_price": 100, "paid_amount": 100}
            ],
        },
    }
    return raw | changes


NOW = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    [
        _paid(),
        _paid(occurred_at=1e-05),  # a number is taken as an instant: written 1e-05, not 0.00001
        {
            "id": "e2",
            "type": "member.updated",
            "occurred_at": "2026-11-24T10:00:00+08:00",
            "member_id": "m1",
            "data": {"birthday": 0.0},  # a date as a number
        },
        {
            "id": "e3",
            "type": "custom.check_in",
            "occurred_at": "2026-11-24T10:00:00+08:00",
            "member_id": "m1",
            "data": {"score": 1e16, "ratio": 1e-07},
        },
    ],
)
def test_a_valid_event_is_hashed_as_the_standard_library_writes_it(raw: dict[str, Any]) -> None:
    assert parse_event(raw, NOW).body_hash == _reference(raw)


def _date_fields(model: type[BaseModel], path: str = "") -> set[str]:
    found = set()
    for name, info in model.model_fields.items():
        for kind in _types_in(info.annotation):
            if isinstance(kind, type) and issubclass(kind, date):
                found.add(path + name)
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                found |= _date_fields(kind, f"{path}{name}.")
    return found


def _types_in(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    if not args:
        return [annotation]
    return [t for arg in args for t in _types_in(arg)]


def test_dates_are_the_only_way_a_float_gets_into_a_known_event() -> None:
    # a known type's numbers are StrictInt; dates and instants also take a number: the hash
    # looks for floats in exactly those fields
    dated = {f for model in DATA_MODELS.values() for f in _date_fields(model)}
    assert dated == set(DATE_FIELDS)
    floats = {
        f"{model.__name__}.{name}"
        for model in DATA_MODELS.values()
        for name, info in model.model_fields.items()
        if float in _types_in(info.annotation)
    }
    assert floats == set()
