"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
from psycopg.types.json import Json, Jsonb
from sqlalchemy import JSON, DateTime, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant, stored as UTC.

    PostgreSQL keeps ``timestamptz``; SQLite has no zone, so the value is stored as naive UTC and
    given its zone back on the way out. A naive datetime is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store instants with a zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> Any:
    """JSON on SQLite, JSONB on PostgreSQL."""
    return JSON().with_variant(JSONB(), "postgresql")


def document_type() -> Any:
    """JSON on both: on PostgreSQL the text type ``json``, not ``jsonb``, for documents that
    are written once and given back whole, never searched inside (an event's body, the
    response it got). PostgreSQL only checks such text; ``jsonb`` would convert it to its
    binary form on every write, which on the event inbox cost about a quarter of the row
    (``bench/README.md``)."""
    return JSON()


def as_json(rows: Any, kind: str = "json") -> Json | Jsonb:
    """Rows as one JSON document for ``json_populate_recordset`` and the like, a parameter of
    the driver of type ``kind`` (``json_kind``): instants as ISO 8601 with their offset,
    dates as ISO 8601. orjson writes it in a tenth of the standard library's time, and as
    UTF-8 bytes the driver sends as they are. An instant must carry its zone —
    ``refuse_naive`` checks a table's rows; a naive one would be read in the session's zone."""
    return (Jsonb if kind == "jsonb" else Json)(rows, dumps=orjson.dumps)


@cache
def json_kind(table: Table) -> str:
    """How a table's rows are best sent as one document: ``json`` — PostgreSQL reads flat rows
    from text about a fifth faster than it builds a ``jsonb`` of them (``bench/README.md``),
    and copies a ``json`` column's value out of it as it is — unless they hold ``jsonb``
    columns, which ``json_populate_recordset`` would read as text and parse again:
    ``jsonb``."""
    binary = any(isinstance(c.type.dialect_impl(_PG), JSONB) for c in table.columns)
    return "jsonb" if binary else "json"


_PG = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


def refuse_naive(table: Table, rows: list[dict[str, Any]]) -> None:
    """As ``UTCDateTime`` refuses a naive instant when bound, for rows sent as JSON."""
    for name in _instant_columns(table) if rows else ():
        if name in rows[0] and any(r[name] is not None and r[name].tzinfo is None for r in rows):
            raise ValueError(f"{table.name}.{name}: naive datetime refused")


@cache
def _instant_columns(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if isinstance(c.type, UTCDateTime))
