"""The platform, its stores and their programs.

``ensure_platform`` is run at start-up and is idempotent: the platform owner and its program
always exist, so a fresh database accepts events at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from huiyuan.db import owners_repo
from huiyuan.db.audit_repo import record_audit
from huiyuan.domain.errors import AdminError, conflict, not_found
from huiyuan.services.context import PLATFORM_OWNER, Services

PLATFORM_PROGRAM = "platform"


@dataclass(frozen=True, slots=True)
class OwnerView:
    id: str
    kind: str
    name: str
    programs: tuple[str, ...]


def ensure_platform(svc: Services, name: str = "Platform") -> None:
    with svc.uow() as tx:
        now = svc.now()
        owners_repo.add_owner(tx.conn, PLATFORM_OWNER, "platform", name, now)
        owners_repo.add_program(tx.conn, PLATFORM_PROGRAM, PLATFORM_OWNER, f"{name} 会员", now)
        tx.commit()
    svc.directory.invalidate()


def add_store(
    svc: Services, store_id: str, name: str, *, program: bool = True, actor: str
) -> OwnerView:
    """Register a store (or brand); with ``program`` it also gets its own membership program."""
    with svc.uow() as tx:
        now = svc.now()
        if not owners_repo.add_owner(tx.conn, store_id, "store", name, now):
            raise conflict(AdminError.OWNER_EXISTS, f"owner {store_id!r} exists", field="id")
        programs: tuple[str, ...] = ()
        if program:
            owners_repo.add_program(tx.conn, store_id, store_id, f"{name} 会员", now)
            programs = (store_id,)
        record_audit(
            tx.conn,
            actor=actor,
            action="owner.created",
            subject=f"owner:{store_id}",
            detail={"name": name, "programs": list(programs)},
            at=now,
        )
        tx.commit()
    svc.directory.invalidate()
    return OwnerView(store_id, "store", name, programs)


def add_program(svc: Services, program_id: str, owner_id: str, name: str, *, actor: str) -> None:
    with svc.uow() as tx:
        now = svc.now()
        if owners_repo.get_owner(tx.conn, owner_id) is None:
            raise not_found(AdminError.OWNER_NOT_FOUND, f"no owner {owner_id!r}")
        if not owners_repo.add_program(tx.conn, program_id, owner_id, name, now):
            raise conflict(AdminError.PROGRAM_EXISTS, f"program {program_id!r} exists", field="id")
        record_audit(
            tx.conn,
            actor=actor,
            action="program.created",
            subject=f"program:{program_id}",
            detail={"owner_id": owner_id, "name": name},
            at=now,
        )
        tx.commit()
    svc.directory.invalidate()


def list_owners(svc: Services) -> list[OwnerView]:
    with svc.engine.connect() as conn:
        programs: dict[str, list[str]] = {}
        for row in owners_repo.list_programs(conn):
            programs.setdefault(row.owner_id, []).append(row.id)
        return [
            OwnerView(o.id, o.kind, o.name, tuple(programs.get(o.id, ())))
            for o in owners_repo.list_owners(conn)
        ]
