"""Turning a JSON body into a valid event, or into a list of problems that name each field."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson
from pydantic import BaseModel, ValidationError

from huiyuan.schemas.events import CustomData, Envelope, data_model_for

FUTURE_TOLERANCE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    message: str


class EventInvalid(Exception):
    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


class ValidEvent(NamedTuple):
    """An event that passed validation. The envelope's fields are copied out when it is made
    (``of``): a batch reads them dozens of times per event, and a tuple's field is read
    several times faster than a model's attribute (and made faster than a frozen
    dataclass's)."""

    envelope: Envelope
    data: BaseModel
    body_hash: str
    id: str
    type: str
    member_id: str
    occurred_at: datetime
    store_id: str | None

    @classmethod
    def of(cls, envelope: Envelope, data: BaseModel, body_hash: str) -> ValidEvent:
        return cls(
            envelope,
            data,
            body_hash,
            envelope.id,
            envelope.type,
            envelope.member_id,
            envelope.occurred_at,
            envelope.store_id,
        )


def field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def problems_from(error: ValidationError, prefix: tuple[str, ...] = ()) -> list[FieldProblem]:
    return [
        FieldProblem(field_path((*prefix, *e["loc"])), e["msg"])
        for e in error.errors(include_url=False)
    ]


def problems_from_errors(errors: list[Any]) -> list[FieldProblem]:
    """Problems from FastAPI's request errors, whose locations start with body/query/path."""
    return [
        FieldProblem(field_path(tuple(e["loc"][1:]) or tuple(e["loc"])), e["msg"]) for e in errors
    ]


def body_hash(raw: dict[str, Any], *, no_floats: bool = False) -> str:
    """SHA-256 of the body's canonical JSON: keys sorted, no spaces, UTF-8 unescaped — what
    ``json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":"))`` writes, so
    hashes stored by earlier versions still match their replays.

    ``no_floats``: the caller knows the body holds no float (a known event type's models
    take integers only), so orjson may write it — the same bytes in a sixth of the time
    (``tests/unit/test_body_hash.py``). It writes some floats differently (``1e-05`` as
    ``0.00001``); integers beyond 64 bits it refuses, and the standard library takes over."""
    if no_floats:
        try:
            return hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()
        except orjson.JSONEncodeError:
            pass
    canonical = json.dumps(raw, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_event(raw: Any, now: datetime) -> ValidEvent:
    """Validate an event body; raises ``EventInvalid`` naming every bad field."""
    if not isinstance(raw, dict):
        raise EventInvalid([FieldProblem("body", "an event is a JSON object")])
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as error:
        raise EventInvalid(problems_from(error)) from None
    model = data_model_for(envelope.type)
    if model is None:
        raise EventInvalid([FieldProblem("type", f"unknown event type {envelope.type!r}")])
    if envelope.occurred_at > now + FUTURE_TOLERANCE:
        raise EventInvalid([FieldProblem("occurred_at", "is in the future")])
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as error:
        raise EventInvalid(problems_from(error, ("data",))) from None
    return ValidEvent.of(envelope, data, body_hash(raw, no_floats=_no_floats(model, raw)))


# The fields of the known event types' data that take a date or an instant, which the models
# accept as a number too (a float among them): the only way a float gets into a valid body of
# a known type (``tests/unit/test_body_hash.py`` checks the models for others).
DATE_FIELDS = ("birthday",)


def _no_floats(model: type[BaseModel], raw: dict[str, Any]) -> bool:
    """Whether a valid body of this type can hold no float. A known type's models take
    integers only (``StrictInt``); a float gets in only where an instant or a date is given as
    a number (``occurred_at``, ``DATE_FIELDS``), which the models accept. Custom events' data
    is free."""
    if model is CustomData or isinstance(raw.get("occurred_at"), float):
        return False
    data = raw.get("data")
    return not isinstance(data, dict) or not any(
        isinstance(data.get(name), float) for name in DATE_FIELDS
    )
