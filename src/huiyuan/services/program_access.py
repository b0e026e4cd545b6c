"""Which program an API call about a member is about, and whether the caller's key may use it.

One rule for every endpoint that reads or changes a member's standing in a program — points,
wallet, growth and tiers, paid membership and benefits:

- where a call names no program, a platform key means the platform's program and a store's key
  means that store's own program;
- a program that does not exist — or a store that runs none, when its key names none — is
  ``404 program_not_enrolled``;
- a store's key naming another owner's program is ``403 program_not_enrolled`` with
  ``field: "program_id"``: the same status and code on every endpoint.

Whether the caller may see the *member* is ``members.require_visible_member``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Table, select

from huiyuan.domain.errors import PointsError, forbidden, not_found
from huiyuan.services.context import Services
from huiyuan.services.members import require_visible_member
from huiyuan.services.owners import PLATFORM_PROGRAM
from huiyuan.services.principals import Principal, Scope

# The code predates this module and was the points' and wallet's; it is kept (rather than a new
# one) because most endpoints already answered it.
REFUSED = PointsError.PROGRAM_NOT_ENROLLED


def store_program(svc: Services, conn: Connection, store_id: str) -> str | None:
    """A store's own program (the first by id, should it run several), if it runs one."""
    programs = svc.directory.programs_of(conn, [store_id])
    return sorted(programs)[0] if programs else None


def program_for_key(svc: Services, conn: Connection, who: Principal, program_id: str | None) -> str:
    """The program a call is about: the one named, else the caller's own; refused if the key
    may not use it."""
    if not program_id:
        if who.is_platform:
            return PLATFORM_PROGRAM
        own = store_program(svc, conn, who.owner_id)
        if own is None:
            raise not_found(
                REFUSED, f"store {who.owner_id!r} runs no program; name one with program_id"
            )
        return own
    owner = svc.directory.owner_of(conn, program_id)
    if owner is None:
        raise not_found(REFUSED, f"no program {program_id!r}")
    if not who.is_platform and owner != who.owner_id:
        raise forbidden(
            REFUSED, "a store's key may only use its own store's programs", field="program_id"
        )
    return program_id


@dataclass(frozen=True, slots=True)
class HistoryPage:
    program_id: str
    rows: Sequence[Row[Any]]


def history_page(
    svc: Services,
    who: Principal,
    member_id: str,
    program_id: str | None,
    table: Table,
    *,
    where: Sequence[ColumnElement[bool]] = (),
    before_id: int | None = None,
    limit: int = 50,
) -> HistoryPage:
    """A page of a member's history in a program (newest first, ``before_id`` as the cursor)
    from a table with ``program_id``, ``member_id`` and an increasing ``id``: the program and
    the member checked for the caller's key first, as every history endpoint does."""
    who.require(Scope.READ)
    with svc.engine.connect() as conn:
        program = program_for_key(svc, conn, who, program_id)
        require_visible_member(conn, who, member_id)
        query = select(table).where(
            table.c.program_id == program, table.c.member_id == member_id, *where
        )
        if before_id is not None:
            query = query.where(table.c.id < before_id)
        rows = conn.execute(query.order_by(table.c.id.desc()).limit(limit)).all()
    return HistoryPage(program, rows)


def next_before_id(items: Sequence[dict[str, Any]], limit: int) -> int | None:
    """The cursor of the next page: the last id of a full page."""
    return int(items[-1]["id"]) if len(items) == limit else None
