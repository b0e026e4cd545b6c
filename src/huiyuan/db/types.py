"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import psycopg
from psycopg.adapt import Dumper
from psycopg.types.json import Json, Jsonb
from sqlalchemy import JSON, DateTime, Table
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
    the driver of type ``kind`` (``json`` or ``jsonb``): instants as ISO 8601 with their offset,
    dates as ISO 8601. orjson writes it in a tenth of the standard library's time, and as
    UTF-8 bytes the driver sends as they are. An instant must carry its zone —
    ``refuse_naive`` checks a table's rows; a naive one would be read in the session's zone."""
    return (Jsonb if kind == "jsonb" else Json)(rows, dumps=orjson.dumps)


# Escapes JSON and PostgreSQL's array text share: a backslash or a double quote, escaped.
_SHARED_ESCAPES = re.compile(rb'\\[\\"]')


class ArrayText(bytearray):
    """The text of a PostgreSQL array as UTF-8 bytes, which the driver sends as they are (a
    ``str`` would be decoded here only to be encoded again there: 0.16 ms for a batch's
    500 order documents)."""


class _ArrayTextDumper(Dumper):
    oid = 0  # unknown, as psycopg sends a ``str``: the statement casts it

    def dump(self, obj: Any) -> Any:
        return obj


psycopg.adapters.register_dumper(ArrayText, _ArrayTextDumper)


def array_literal(values: list[Any], *, documents: bool = False) -> ArrayText:
    """The text of a PostgreSQL array of one column's values (``None`` as ``NULL``), for a
    parameter the statement casts to the column's array type.

    orjson writes the values as a JSON array and its brackets become braces: the two texts
    agree on every scalar value that can be written here — numbers, ``true``/``false``,
    ``null``, instants as ISO 8601 with their offset (``refuse_naive``), strings quoted with
    ``"`` and ``\\`` escaped — except where JSON escapes a control character (``\\n``), which
    PostgreSQL would read as the letter; a column holding one is quoted value by value
    instead. ``documents``: the values are JSON documents, each sent as its JSON text."""
    if documents:
        return _documents(values)
    text = orjson.dumps(values)
    if not _reads_alike(text):
        return ArrayText(b"{" + b",".join(_quoted(v) for v in values) + b"}")
    found = ArrayText(text)
    found[0], found[-1] = 0x7B, 0x7D  # [ ] -> { }
    return found


def matrix_literal(columns: Sequence[Sequence[Any]], *, documents: bool = False) -> ArrayText:
    """The text of a two-dimensional PostgreSQL array, a row for each column (of equal
    lengths), as ``array_literal`` writes one: with one orjson call for them all when no
    value holds a bracket (the only brackets are then the array's own, and become braces) or
    an escape PostgreSQL reads otherwise; column by column if one does."""
    if not documents:
        text = orjson.dumps(columns)
        brackets = len(columns) + 1
        if text.count(b"[") == brackets and text.count(b"]") == brackets and _reads_alike(text):
            return ArrayText(text.translate(_BRACES))
    rows = [array_literal(list(column), documents=documents) for column in columns]
    return ArrayText(b"{" + b",".join(rows) + b"}")


_BRACES = bytes.maketrans(b"[]", b"{}")


def _reads_alike(text: bytes) -> bool:
    """Whether PostgreSQL reads JSON's strings in ``text`` as JSON does: no escape but of a
    backslash or a double quote (JSON escapes a control character as ``\\n``, which
    PostgreSQL would read as the letter)."""
    return b"\\" not in text or b"\\" not in _SHARED_ESCAPES.sub(b"", text)


def _quoted(value: Any) -> bytes:
    if value is None:
        return b"NULL"
    text = value.encode() if isinstance(value, str) else orjson.dumps(value).strip(b'"')
    return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _documents(values: list[Any]) -> ArrayText:
    """Each document as its JSON text, the texts as a JSON array of strings: JSON text holds
    no control character (orjson escapes them), so the only escapes the outer array needs are
    of backslashes and double quotes, which PostgreSQL reads alike."""
    text = ArrayText(
        orjson.dumps([None if v is None else orjson.dumps(v).decode() for v in values])
    )
    text[0], text[-1] = 0x7B, 0x7D  # [ ] -> { }
    return text


def refuse_naive(table: Table, rows: list[dict[str, Any]]) -> None:
    """As ``UTCDateTime`` refuses a naive instant when bound, for rows sent as JSON."""
    for name in _instant_columns(table) if rows else ():
        if name in rows[0] and any(r[name] is not None and r[name].tzinfo is None for r in rows):
            raise ValueError(f"{table.name}.{name}: naive datetime refused")


@cache
def _instant_columns(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if isinstance(c.type, UTCDateTime))
