"""Members, their enrollments and their daily logins."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, case, select, update
from sqlalchemy.dialects import postgresql, sqlite

from huiyuan.db.tables import enrollments, logins, members, programs, signins
from huiyuan.db.upsert import insert_ignore

_LOCK_MEMBER = select(members).where(members.c.member_id == bindparam("p_id")).with_for_update()
_ENROLLED = select(enrollments.c.program_id).where(enrollments.c.member_id == bindparam("p_id"))


_LOCK_WITH_PROGRAMS = (
    select(members, enrollments.c.program_id.label("enrolled_program_id"))
    .outerjoin(enrollments, enrollments.c.member_id == members.c.member_id)
    .where(members.c.member_id == bindparam("p_id"))
    .with_for_update(of=members)
)


def lock_member_with_programs(conn: Connection, member_id: str) -> tuple[Row[Any] | None, set[str]]:
    """The member's row, locked, and the programs they are enrolled in: one round trip."""
    rows = conn.execute(_LOCK_WITH_PROGRAMS, {"p_id": member_id}).all()
    if not rows:
        return None, set()
    return rows[0], {r.enrolled_program_id for r in rows if r.enrolled_program_id is not None}


def lock_member(conn: Connection, member_id: str) -> Row[Any] | None:
    """The member's row, locked until commit: one member's events apply one at a time."""
    return conn.execute(_LOCK_MEMBER, {"p_id": member_id}).first()


def get_member(conn: Connection, member_id: str) -> Row[Any] | None:
    return conn.execute(select(members).where(members.c.member_id == member_id)).first()


def create_member(conn: Connection, row: dict[str, Any]) -> bool:
    return insert_ignore(conn, members, row, ["member_id"]) == 1


def update_member(conn: Connection, member_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(members).where(members.c.member_id == member_id).values(**values))


def find_by_phone(conn: Connection, phone: str, limit: int = 20) -> Sequence[Row[Any]]:
    query = select(members).where(members.c.phone == phone).order_by(members.c.member_id)
    return conn.execute(query.limit(limit)).all()


def enrolled_program_ids(conn: Connection, member_id: str) -> set[str]:
    return set(conn.execute(_ENROLLED, {"p_id": member_id}).scalars())


def enroll(conn: Connection, rows: list[dict[str, Any]]) -> int:
    return insert_ignore(conn, enrollments, rows, ["member_id", "program_id"])


def enrollments_of(conn: Connection, member_id: str) -> Sequence[Any]:
    query = (
        select(
            enrollments.c.program_id,
            enrollments.c.enrolled_at,
            programs.c.owner_id,
            programs.c.name.label("program_name"),
        )
        .join(programs, programs.c.id == enrollments.c.program_id)
        .where(enrollments.c.member_id == member_id)
        .order_by(enrollments.c.enrolled_at, enrollments.c.program_id)
    )
    return conn.execute(query).all()


def is_enrolled_with_owner(conn: Connection, member_id: str, owner_id: str) -> bool:
    query = (
        select(enrollments.c.id)
        .join(programs, programs.c.id == enrollments.c.program_id)
        .where(enrollments.c.member_id == member_id, programs.c.owner_id == owner_id)
        .limit(1)
    )
    return conn.execute(query).first() is not None


def _login_upsert(dialect: Any) -> Any:
    stmt = dialect.insert(logins)
    return stmt.on_conflict_do_update(
        index_elements=["member_id", "business_day"],
        set_={
            "count": logins.c.count + 1,
            "first_at": case(
                (stmt.excluded.first_at < logins.c.first_at, stmt.excluded.first_at),
                else_=logins.c.first_at,
            ),
        },
    )


_LOGIN = {"postgresql": _login_upsert(postgresql), "sqlite": _login_upsert(sqlite)}
_LAST_LOGIN = (
    update(members)
    .where(
        members.c.member_id == bindparam("p_id"),
        (members.c.last_login_at.is_(None)) | (members.c.last_login_at < bindparam("p_at")),
    )
    .values(last_login_at=bindparam("p_at"))
)


def record_login(conn: Connection, member_id: str, day: date, at: datetime) -> None:
    """Count a login on its business day; the first login of the day keeps the earliest time."""
    stmt = _LOGIN["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    row = {"member_id": member_id, "business_day": day, "first_at": at, "count": 1}
    conn.execute(stmt, row)
    conn.execute(_LAST_LOGIN, {"p_id": member_id, "p_at": at})


def login_days(conn: Connection, member_id: str) -> int:
    query = select(logins.c.business_day).where(logins.c.member_id == member_id)
    return len(conn.execute(query).all())


def record_signin(conn: Connection, member_id: str, day: date, at: datetime) -> int | None:
    """Record today's sign-in; its streak, or None if the member signed in today already."""
    previous = conn.execute(
        select(signins.c.streak).where(
            signins.c.member_id == member_id, signins.c.business_day == day - timedelta(days=1)
        )
    ).scalar_one_or_none()
    streak = (previous or 0) + 1
    row = {"member_id": member_id, "business_day": day, "signed_at": at, "streak": streak}
    if insert_ignore(conn, signins, row, ["member_id", "business_day"]) == 0:
        return None
    return streak
