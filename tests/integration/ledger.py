"""What the points and wallet tests share: program documents, events at the test clock, the
member's balances as the services report them, and the proof that the ledger still adds up.

The clock matters: a document applies from the moment it is applied (never in the past) and an
event is judged by the version in force when it occurred, so a story applies its document first
and then sends events that occur at or after ``clock.now``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from huiyuan.db import tables
from huiyuan.services import events as event_service
from huiyuan.services import points, points_jobs, programs
from huiyuan.services.context import Services
from huiyuan.services.principals import SYSTEM, Principal

from .stored import rows

BASE_RULE = {"kind": "per_amount", "id": "base", "per_fen": 100, "points": 1}


def document(**points_section: Any) -> dict[str, Any]:
    """A program document giving 1 point per ¥1 paid, with the points section's other settings."""
    points_section.setdefault("earning", [BASE_RULE])
    return {"points": points_section}


def apply(svc: Services, doc: dict[str, Any], program: str = "platform") -> int:
    return programs.apply_document(svc, program, doc, actor="test")


def iso(moment: datetime) -> str:
    return moment.isoformat()


def send(
    svc: Services, body: dict[str, Any], *, principal: Principal = SYSTEM, status: int = 200
) -> dict[str, Any]:
    outcome = event_service.ingest_event(svc, principal, body)
    assert outcome.status == status, outcome.body
    return outcome.body


def balance(svc: Services, member: str = "u1", program: str | None = None) -> dict[str, Any]:
    return points.summary(svc, SYSTEM, member, program)


def figures(svc: Services, member: str = "u1", program: str | None = None) -> tuple[int, ...]:
    """(available, pending, reserved, debt) of the member."""
    found = balance(svc, member, program)
    return found["available"], found["pending"], found["reserved"], found["debt"]


def lots_of(svc: Services, member: str = "u1", program: str = "platform") -> list[Any]:
    return rows(svc, tables.point_lots, member_id=member, program_id=program)


def history(svc: Services, member: str = "u1", **filters: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = points.entries(svc, SYSTEM, member, None, **filters)["entries"]
    return found


def system_total(svc: Services, account: str, program: str = "platform") -> int:
    """The sum of a system account's entries (system accounts have no balance row)."""
    with svc.engine.connect() as conn:
        total = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(tables.point_entries.c.amount), 0)).where(
                tables.point_entries.c.account == account,
                tables.point_entries.c.program_id == program,
            )
        ).scalar_one()
    return int(total)


def assert_reconciled(svc: Services) -> None:
    """``huiyuan ledger reconcile`` finds every balance equal to its entries and lots."""
    report = points_jobs.reconcile(svc)
    assert report.drifts == [], report.drifts
    assert report.accounts > 0
    assert_reports_agree(svc)


def assert_reports_agree(svc: Services) -> None:
    """The liability report (read from lots and draws) and the flow over the whole ledger (read
    from the system legs) say the same: per program, the points redeemed and expired and what
    they were worth, and what members hold; and the flow's months add up from nothing."""
    e = tables.point_entries.c
    with svc.engine.connect() as conn:
        firsts = conn.execute(
            sa.select(e.program_id, sa.func.min(e.occurred_at)).group_by(e.program_id)
        ).all()
        debts = dict(
            conn.execute(
                sa.select(
                    tables.point_accounts.c.program_id, sa.func.sum(tables.point_accounts.c.debt)
                ).group_by(tables.point_accounts.c.program_id)
            ).all()
        )
    liability = points_jobs.liability(svc)
    now = svc.now().astimezone(svc.settings.zone)
    for program, first in firsts:
        start = first.astimezone(svc.settings.zone)
        months = (now.year - start.year) * 12 + now.month - start.month + 1
        flow = points_jobs.flow(svc, program, months)["months"]
        owed = [row for row in liability if row["program_id"] == program]
        for figure in ("redeemed", "expired", "redeemed_fen", "expired_fen"):
            in_flow = sum(month[figure] for month in flow)
            in_liability = sum(row[figure] for row in owed)
            assert in_flow == in_liability, (program, figure, in_flow, in_liability)
        held = sum(row["outstanding"] + row["pending"] for row in owed) - int(debts.get(program, 0))
        assert flow[-1]["balance"] == held, (program, flow[-1]["balance"], held)
        # and the months' changes (read from the system legs) add up to what members hold:
        # nothing was held before the ledger's first month
        assert flow[0]["balance"] - flow[0]["change"] == 0, (program, flow[0])
