"""a waiting request's queue row is committed without waiting for the disk

``huiyuan_enqueue`` (0007) committed every queue row durably: a WAL flush per request. A
request that waits for its outcome (``POST /v1/events`` without ``Prefer: respond-async``) is
answered only after a leader's batch applied its event and committed — durably, and later in
the WAL than the row, so that flush makes the row durable too. Until then a crash can lose the
row, but then the request gets no answer and its sender sends it again (events are
idempotent). So such a row's commit no longer waits for the flush (``synchronous_commit`` off
for that one transaction). A row queued without waiting (``respond-async``) is answered
``queued`` from it alone: its commit stays durable.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 23:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from huiyuan.db.migrate import earlier_migration

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DURABLE = "BEGIN\n    PERFORM pg_advisory_xact_lock_shared(p_class + 1, p_part);\n"
_LAZY_IF_WAITING = (
    "BEGIN\n"
    "    IF p_waits THEN  -- answered after a durable commit later in the WAL: see 0012\n"
    "        PERFORM set_config('synchronous_commit', 'off', true);\n"
    "    END IF;\n"
    "    PERFORM pg_advisory_xact_lock_shared(p_class + 1, p_part);\n"
)


def _enqueue_of_0007() -> str:
    """0007's ``huiyuan_enqueue``, as ``CREATE OR REPLACE``."""
    module = earlier_migration("20261124_0007_queue_accepts_without_waiting.py")
    enqueue = str(module.ENQUEUE)
    assert enqueue.count(_DURABLE) == 1, "0007's huiyuan_enqueue is not the one this amends"
    return enqueue.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_enqueue_of_0007().replace(_DURABLE, _LAZY_IF_WAITING))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_enqueue_of_0007())
