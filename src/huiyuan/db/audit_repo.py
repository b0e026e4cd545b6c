"""The audit log and the outbox: rows written in the same transaction as the change they record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from huiyuan.db.tables import audit_log, outbox


def record_audit(
    conn: Connection, *, actor: str, action: str, subject: str, detail: dict[str, Any], at: datetime
) -> None:
    conn.execute(
        audit_log.insert().values(actor=actor, action=action, subject=subject, detail=detail, at=at)
    )


def enqueue(conn: Connection, messages: list[dict[str, Any]]) -> None:
    """Queue messages (each with topic, key, payload, created_at) for delivery after commit."""
    if messages:
        conn.execute(outbox.insert(), messages)
