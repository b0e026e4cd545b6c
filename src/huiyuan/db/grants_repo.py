"""Benefits held for a time outside a member's tier and plan (``benefit_grants``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select, update

from huiyuan.db.tables import benefit_grants as g


def last_end(conn: Connection, program_id: str, member_id: str, benefit_id: str) -> datetime | None:
    """When the member's latest grant of the benefit ends (a new one follows it)."""
    found: datetime | None = conn.execute(
        select(func.max(g.c.ends_at)).where(
            g.c.program_id == program_id, g.c.member_id == member_id, g.c.benefit_id == benefit_id
        )
    ).scalar_one()
    return found


def insert(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(g.insert(), row)


def held_until(
    conn: Connection, program_id: str, member_id: str, at: datetime
) -> dict[str, datetime]:
    """The benefits the member holds from grants at ``at``, each with when holding it ends
    (the end of its last grant: a member's grants of one benefit follow each other)."""
    rows = conn.execute(
        select(g.c.benefit_id, func.max(g.c.ends_at))
        .where(g.c.program_id == program_id, g.c.member_id == member_id, g.c.ends_at > at)
        .group_by(g.c.benefit_id)
        .having(func.min(g.c.starts_at) <= at)
    ).all()
    return {benefit: until for benefit, until in rows}


def revoke(conn: Connection, program_id: str, source: str, at: datetime) -> None:
    """End a source's grants at ``at``: one not started yet is deleted, a running one ends."""
    where = (g.c.program_id == program_id, g.c.source == source)
    conn.execute(delete(g).where(*where, g.c.starts_at >= at))
    conn.execute(update(g).where(*where, g.c.ends_at > at).values(ends_at=at))


def of_source(conn: Connection, program_id: str, source: str) -> Row[Any] | None:
    return conn.execute(select(g).where(g.c.program_id == program_id, g.c.source == source)).first()
