"""Program documents: every applied version, kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, func, select

from huiyuan.db.tables import program_versions


def all_versions(conn: Connection) -> Sequence[Row[Any]]:
    query = select(program_versions).order_by(
        program_versions.c.program_id, program_versions.c.version
    )
    return conn.execute(query).all()


def versions_of(conn: Connection, program_id: str) -> Sequence[Row[Any]]:
    query = (
        select(program_versions)
        .where(program_versions.c.program_id == program_id)
        .order_by(program_versions.c.version)
    )
    return conn.execute(query).all()


def next_version(conn: Connection, program_id: str) -> int:
    query = select(func.coalesce(func.max(program_versions.c.version), 0)).where(
        program_versions.c.program_id == program_id
    )
    return int(conn.execute(query).scalar_one()) + 1


def insert_version(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(program_versions.insert().values(**row))
