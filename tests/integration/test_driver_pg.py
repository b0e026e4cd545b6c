"""Statements on the driver's connection (``db.driver``): parameters and errors as through
SQLAlchemy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError

from huiyuan.db import driver
from huiyuan.db.engine import make_engine
from huiyuan.db.types import ArrayText, array_literal, matrix_literal
from huiyuan.services.context import Services

# PostgreSQL text holds any character but NUL.
_TEXT = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=12)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(_TEXT, max_size=8), numbers=st.lists(st.integers(-(2**63), 2**63 - 1)))
def test_a_list_parameter_arrives_as_the_same_array(
    pg: Services, values: list[str], numbers: list[int]
) -> None:
    # given strings with quotes, backslashes, braces, commas, spaces, "NULL" and the empty string
    with pg.engine.connect() as conn:
        # when they are sent as a list parameter
        found = driver.one(
            conn,
            "SELECT CAST(%(s)s AS varchar[]) AS s, CAST(%(n)s AS bigint[]) AS n",
            {"s": values, "n": numbers},
        )
    # then the server sees exactly those elements, in order
    assert found.s == values
    assert found.n == numbers


def test_a_mixed_list_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(TypeError, match="strings or of integers"):
        driver.array_text(["a", 1])
    with pytest.raises(TypeError):
        driver.array_text([True])


def test_an_error_comes_out_as_sqlalchemys_and_the_transaction_is_usable_after_a_rollback(
    pg: Services,
) -> None:
    with pg.engine.connect() as conn:
        with pytest.raises(DBAPIError) as raised:
            driver.one(conn, "SELECT CAST(%s AS integer)", ("not a number",))
        assert raised.value.orig is not None
        assert getattr(raised.value.orig, "sqlstate", None) == "22P02"
        assert not raised.value.connection_invalidated
        conn.rollback()
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


def test_sessions_are_in_utc_and_options_in_the_url_are_kept(pg_url: str) -> None:
    # given a database URL that sets a session option of its own
    url = sa.engine.make_url(pg_url).update_query_dict({"options": "-c application_name=hy-test"})
    engine = make_engine(url.render_as_string(hide_password=False), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            # then the session has both its own option and UTC
            assert conn.execute(sa.text("SHOW application_name")).scalar_one() == "hy-test"
            assert conn.execute(sa.text("SHOW TimeZone")).scalar_one() == "UTC"
            # and an instant read on the driver's connection is in UTC too
            found = driver.one(conn, "SELECT TIMESTAMPTZ '2026-11-24 08:00:00+08' AS t", ())
            assert found.t.utcoffset().total_seconds() == 0
            assert found.t.hour == 0
    finally:
        engine.dispose()


# JSON values as documents hold: any text but NUL (PostgreSQL's json refuses \u0000).
_DOCUMENT = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_INSTANT = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
)


_BIGINT = st.integers(-(2**63), 2**63 - 1)


def _read_back(pg: Services, **sent: tuple[str, ArrayText]) -> Any:
    """What the server reads each array text as, cast to an array of its element type."""
    casts = ", ".join(
        f"CAST(%({name})s AS {element}[]) AS {name}" for name, (element, _) in sent.items()
    )
    with pg.engine.connect() as conn:
        return driver.one(conn, f"SELECT {casts}", {name: text for name, (_, text) in sent.items()})


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(st.none() | _TEXT, min_size=1, max_size=8),
    numbers=st.lists(st.none() | _BIGINT, min_size=1),
    flags=st.lists(st.none() | st.booleans(), min_size=1),
    instants=st.lists(st.none() | _INSTANT, min_size=1, max_size=4),
    documents=st.lists(_DOCUMENT, min_size=1, max_size=4),
)
def test_a_column_sent_as_array_text_arrives_as_the_same_values(
    pg: Services,
    texts: list[str | None],
    numbers: list[int | None],
    flags: list[bool | None],
    instants: list[datetime | None],
    documents: list[Any],
) -> None:
    # given a batch's columns (``bulk_repo.write``): strings with control characters, quotes,
    # backslashes, braces, "NULL" and the empty string; missing values; JSON documents
    # when each is sent as the text of an array
    found = _read_back(
        pg,
        s=("varchar", array_literal(texts)),
        n=("bigint", array_literal(numbers)),
        b=("boolean", array_literal(flags)),
        t=("timestamptz", array_literal(instants)),
        d=("json", array_literal(documents, documents=True)),
    )
    # then the server sees exactly those values, in order (a document that is None is sent as
    # NULL, as a row's None always was)
    assert found.s == texts
    assert found.n == numbers
    assert found.b == flags
    assert found.t == instants
    assert found.d == documents


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 5)),
    data=st.data(),
)
def test_columns_sent_as_one_two_dimensional_array_arrive_as_the_same_columns(
    pg: Services, shape: tuple[int, int], data: st.DataObject
) -> None:
    # given columns of equal length (a table's columns of one type, ``bulk_repo.write``):
    # texts with brackets, braces, quotes, backslashes, control characters; numbers
    width, length = shape
    texts = [
        data.draw(st.lists(st.none() | _TEXT, min_size=length, max_size=length))
        for _ in range(width)
    ]
    numbers = [
        data.draw(st.lists(st.none() | _BIGINT, min_size=length, max_size=length))
        for _ in range(width)
    ]
    documents = [
        data.draw(st.lists(_DOCUMENT, min_size=length, max_size=length)) for _ in range(width)
    ]
    # when each group is sent as one two-dimensional array
    found = _read_back(
        pg,
        s=("text", matrix_literal(texts)),
        n=("bigint", matrix_literal(numbers)),
        d=("json", matrix_literal(documents, documents=True)),
    )
    # then each row of it is one column, exactly
    assert found.s == texts
    assert found.n == numbers
    assert found.d == documents
