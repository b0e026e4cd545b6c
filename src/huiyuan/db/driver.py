"""Statements run on the driver's own connection (PostgreSQL, psycopg), inside whatever
transaction the SQLAlchemy connection has open.

A statement sent through SQLAlchemy costs about 0.15 ms of client CPU beyond what psycopg
costs: compiling (cached) and looking up its cache key, building the execution context and
the result's metadata. A batch of 500 events hardly notices; a group-commit batch of three
(``services.group_commit``), whose every statement is of that kind, spends more CPU there
than on its rows. So the statements of that path run here, each a constant (built once,
compiled once) prepared on the server. Only statements whose parameters and results need no
type conversion belong here: plain strings, numbers, arrays of them, JSON sent as text.

A list parameter is sent as the text of a PostgreSQL array (``{"a","b"}``), which the
statement casts: psycopg's own list dumper, generic, costs ten times more for the 500 ids of a
batch.

Errors come out as SQLAlchemy's would: a ``DBAPIError`` (so ``uow.run_with_retry`` sees
deadlocks and unique violations), and a connection found dead invalidated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from huiyuan.db.types import ArrayText, array_literal

_compiled: dict[int, tuple[ClauseElement, str, dict[str, Any]]] = {}


def is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def rows(
    conn: Connection, statement: ClauseElement | str, params: Mapping[str, Any] | tuple[Any, ...]
) -> list[Any]:
    """Every row (named tuples) of ``statement``: a constant SQLAlchemy statement, or SQL in
    psycopg's own placeholders. PostgreSQL only."""
    found: list[Any] = _run(conn, statement, params, lambda cursor: cursor.fetchall())
    return found


def one(
    conn: Connection, statement: ClauseElement | str, params: Mapping[str, Any] | tuple[Any, ...]
) -> Any:
    """The one row of ``statement`` (see ``rows``)."""

    def fetched(cursor: psycopg.Cursor[Any]) -> Any:
        found = cursor.fetchone()
        assert found is not None, "the statement returns one row"
        return found

    return _run(conn, statement, params, fetched)


def execute(
    conn: Connection, statement: ClauseElement | str, params: Mapping[str, Any] | tuple[Any, ...]
) -> int:
    """Run ``statement`` (see ``rows``), which returns no rows; the rows it changed."""
    count: int = _run(conn, statement, params, lambda cursor: cursor.rowcount)
    return count


def fetch(conn: Connection, statement: Any, params: dict[str, Any]) -> Sequence[Any]:
    """Every row of a constant statement, on either database: on PostgreSQL here (``rows``),
    on SQLite through SQLAlchemy."""
    if is_pg(conn):
        return rows(conn, statement, params)
    found: Sequence[Any] = conn.execute(statement, params).all()
    return found


def change(conn: Connection, statement: Any, params: dict[str, Any]) -> None:
    """Run a constant statement that returns no rows, on either database (see ``fetch``)."""
    if is_pg(conn):
        execute(conn, statement, params)
    else:
        conn.execute(statement, params)


def _run(conn: Connection, statement: Any, params: Any, fetch: Any) -> Any:
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    if not raw.autocommit and not conn.in_transaction():
        conn.begin()  # as SQLAlchemy's own statements would: its rollback then undoes this one
    sql, bound = _sql(conn, statement, params)
    bound = _arrays(bound)
    try:
        with raw.cursor(row_factory=namedtuple_row) as cursor:
            cursor.execute(sql, bound, prepare=True)
            return fetch(cursor)
    except psycopg.Error as error:
        dead = raw.closed or raw.broken
        if dead:
            conn.invalidate()
        raise DBAPIError.instance(
            sql,
            None,
            error,
            psycopg.Error,
            hide_parameters=True,
            connection_invalidated=dead,
            dialect=conn.dialect,
        ) from error


def _sql(conn: Connection, statement: Any, params: Any) -> tuple[str, Any]:
    if isinstance(statement, str):
        return statement, params
    found = _compiled.get(id(statement))
    if found is None or found[0] is not statement:
        compiled = statement.compile(dialect=conn.dialect)
        found = (statement, compiled.string, dict(compiled.params))
        _compiled[id(statement)] = found
    _, sql, defaults = found
    return sql, {**defaults, **params}


def _arrays(params: Any) -> Any:
    if isinstance(params, tuple):
        return tuple(array_text(v) if isinstance(v, list) else v for v in params)
    return {k: array_text(v) if isinstance(v, list) else v for k, v in params.items()}


def array_text(values: list[Any]) -> ArrayText:
    """The text form of a one-dimensional array of strings or integers (``types.array_literal``:
    every string quoted, so that any string comes back as itself)."""
    if all(isinstance(v, str) for v in values) or all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        return array_literal(values)
    raise TypeError("only arrays of strings or of integers are sent as text")
