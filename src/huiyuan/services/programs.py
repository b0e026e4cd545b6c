"""Program documents: apply a new version, and find the version in force at an instant.

A version applies from its ``effective_from`` (default: now) and never retroactively: an event
is judged by the version in force when it *occurred*, so a late-arriving order keeps the rules of
its time. Versions are cached per process for a few seconds; this process's own changes
invalidate the cache at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from huiyuan.db import owners_repo, programs_repo
from huiyuan.db.audit_repo import record_audit
from huiyuan.domain.errors import AdminError, DomainError, ErrorKind, invalid, not_found
from huiyuan.schemas.program_config import ProgramDocument
from huiyuan.schemas.validation import FieldProblem, field_path
from huiyuan.services.context import Services
from huiyuan.services.principals import Principal
from huiyuan.services.program_configs import ProgramConfig


class InvalidDocument(DomainError):
    def __init__(self, error: ValidationError, raw: Any = None) -> None:
        problems = [
            FieldProblem(field_path(("document", *_json_loc(e["loc"], raw))), e["msg"])
            for e in error.errors(include_url=False)
        ]
        first = problems[0]
        super().__init__(
            AdminError.DOCUMENT_INVALID,
            f"{first.field}: {first.message}",
            kind=ErrorKind.INVALID,
            field=first.field,
        )
        self.problems = problems


def _json_loc(loc: tuple[int | str, ...], raw: Any) -> tuple[int | str, ...]:
    """The error's location as the document spells it: pydantic puts the tag of a tagged union
    in the location (``earning[0].per_amount.per_fen``), which the document has no key for."""
    path: list[int | str] = []
    node = raw
    for index, part in enumerate(loc):
        is_tag = isinstance(node, dict) and part not in node and index < len(loc) - 1
        if is_tag:
            continue
        path.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(path)


def parse_document(raw: Any) -> ProgramDocument:
    try:
        return ProgramDocument.model_validate(raw)
    except ValidationError as error:
        raise InvalidDocument(error, raw) from None


def apply_document(
    svc: Services,
    program_id: str,
    raw: Any,
    *,
    actor: str,
    effective_from: datetime | None = None,
) -> int:
    """Validate and store a new version of a program's document; returns its number."""
    doc = parse_document(raw)
    funded = [r.id for r in doc.points.earning if r.funded_by]
    if funded and program_id != "platform":
        raise invalid(
            AdminError.DOCUMENT_INVALID,
            f"rules {', '.join(funded)}: funded_by draws on a store's budget of platform points "
            "and belongs in the platform's program",
            field="document.points.earning",
        )
    now = svc.now()
    effective = effective_from or now
    if effective < now:
        raise invalid(
            AdminError.DOCUMENT_INVALID,
            "a version cannot take effect in the past; history is never rewritten",
            field="effective_from",
        )
    with svc.uow() as tx:
        if program_id not in {p.id for p in owners_repo.list_programs(tx.conn)}:
            raise not_found(AdminError.PROGRAM_NOT_FOUND, f"no program {program_id!r}")
        version = programs_repo.next_version(tx.conn, program_id)
        programs_repo.insert_version(
            tx.conn,
            {
                "program_id": program_id,
                "version": version,
                "document": doc.model_dump(mode="json"),
                "effective_from": effective,
                "created_at": now,
                "actor": actor,
            },
        )
        record_audit(
            tx.conn,
            actor=actor,
            action="program.document_applied",
            subject=f"program:{program_id}",
            detail={"version": version, "effective_from": effective.isoformat()},
            at=now,
        )
        tx.commit()
    svc.configs.invalidate()
    return version


def list_versions(
    svc: Services, program_id: str, who: Principal | None = None
) -> list[dict[str, Any]]:
    """Every version of a program's document; a store's key sees only its own programs."""
    with svc.engine.connect() as conn:
        owner = svc.directory.owner_of(conn, program_id)
        if owner is None or (who is not None and not who.is_platform and owner != who.owner_id):
            raise not_found(AdminError.PROGRAM_NOT_FOUND, f"no program {program_id!r}")
        return [
            {
                "version": r.version,
                "effective_from": r.effective_from.isoformat(),
                "created_at": r.created_at.isoformat(),
                "actor": r.actor,
                "document": r.document,
            }
            for r in programs_repo.versions_of(conn, program_id)
        ]


def config_at(svc: Services, program_id: str, moment: datetime) -> ProgramConfig:
    with svc.engine.connect() as conn:
        return svc.configs.at(conn, program_id, moment)
