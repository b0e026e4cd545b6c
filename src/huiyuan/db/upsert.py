"""``INSERT … ON CONFLICT DO NOTHING`` for whichever database the connection talks to.

On PostgreSQL a conflicting insert waits for a concurrent inserter of the same key to finish and
then does nothing if it committed: this is what makes a duplicate in flight apply only once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(
    conn: Connection,
    table: Table,
    values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    conflict_columns: Sequence[str],
) -> int:
    """Insert, skipping rows whose key exists; returns how many rows were inserted.

    The count comes from ``RETURNING``: psycopg reports ``rowcount`` -1 for an executemany, so
    counting rows is the only answer that holds on both databases.
    """
    if isinstance(values, Sequence) and not values:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=list(conflict_columns))
        .returning(*table.primary_key.columns)
    )
    result = conn.execute(stmt, values if isinstance(values, Sequence) else [values])
    return len(result.all())
