"""orders, order items, points entries: references checked once per statement (PostgreSQL);
members, orders and the points ledger never deleted, the ledger never changed

A foreign key checks each new row with a query of its own: for a batch of 500 payments,
about 2,400 queries (an order's member, each item's order, each entry's transaction), 9% of
the batch's CPU. On PostgreSQL the three foreign keys of the rows a payment writes become
triggers that check all the rows one statement added with one query over them (the
statement's transition table), raising the error the foreign key would (SQLSTATE 23503,
the constraint's name).

A foreign key also stops the row it points at from being deleted, or its key changed, while
rows point at it. Instead, the rows pointed at are never deleted and their keys never change,
and PostgreSQL refuses both: members and orders are records (an order is cancelled, not
deleted), and the points ledger — transactions and entries — is append-only, so neither is
ever updated either. ``TRUNCATE`` (a test's clean-up) is not refused.

SQLite keeps the foreign keys (``PRAGMA foreign_keys=ON``): this migration changes nothing
there. ``tables.CHECKED_PER_STATEMENT`` names the three for the schema comparison.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-25 10:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (constraint, table, column, referenced table, referenced column)
_REFERENCES = (
    ("fk_orders_member_id_members", "orders", "member_id", "members", "member_id"),
    ("fk_order_items_order_id_orders", "order_items", "order_id", "orders", "order_id"),
    ("fk_point_entries_txn_id_point_txns", "point_entries", "txn_id", "point_txns", "id"),
)

_REFUSE = """
CREATE FUNCTION huiyuan_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation', TABLE = TG_TABLE_NAME;
END $$
"""


def _check(constraint: str, table: str, column: str, parent: str, key: str) -> str:
    # Identifiers from the constant above. The check is one anti-join of the statement's new
    # rows against the referenced table's primary key.
    return f"""
CREATE FUNCTION {constraint}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    SELECT CAST(a.{column} AS text) INTO missing FROM added a
    WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{key} = a.{column})
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION
            'insert or update on table "{table}" violates foreign key constraint "{constraint}"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = '{constraint}',
                  TABLE = '{table}', COLUMN = '{column}',
                  DETAIL = format('Key ({column})=(%s) is not present in table "{parent}".',
                                  missing);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER {constraint} AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION {constraint}();
CREATE TRIGGER {constraint}_kept BEFORE UPDATE OF {column} ON {table}
    FOR EACH ROW WHEN (OLD.{column} IS DISTINCT FROM NEW.{column})
    EXECUTE FUNCTION huiyuan_refuse('{table}.{column} never changes (it references {parent})');
"""  # noqa: S608


# (table, its key, or None where no update at all is allowed; why)
_GUARDS: tuple[tuple[str, str | None, str], ...] = (
    ("members", "member_id", "members are never deleted and their ids never change"),
    ("orders", "order_id", "orders are never deleted (but cancelled) and their ids never change"),
    ("point_txns", None, "the points ledger is append-only: transactions never change"),
    ("point_entries", None, "the points ledger is append-only: entries never change"),
)


def _guard(table: str, key: str | None, why: str) -> str:
    if key is None:
        return f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION huiyuan_refuse('{why}');
"""
    return f"""
CREATE TRIGGER {table}_kept BEFORE DELETE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION huiyuan_refuse('{why}');
CREATE TRIGGER {table}_key_kept BEFORE UPDATE OF {key} ON {table}
    FOR EACH ROW WHEN (OLD.{key} IS DISTINCT FROM NEW.{key})
    EXECUTE FUNCTION huiyuan_refuse('{why}');
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_REFUSE)
    for constraint, table, column, parent, key in _REFERENCES:
        op.drop_constraint(constraint, table, type_="foreignkey")
        op.execute(_check(constraint, table, column, parent, key))
    for table, kept, why in _GUARDS:
        op.execute(_guard(table, kept, why))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, kept, _ in _GUARDS:
        if kept is None:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        else:
            op.execute(f"DROP TRIGGER {table}_kept ON {table}")
            op.execute(f"DROP TRIGGER {table}_key_kept ON {table}")
    for constraint, table, column, parent, key in _REFERENCES:
        op.execute(f"DROP TRIGGER {constraint} ON {table}")
        op.execute(f"DROP TRIGGER {constraint}_kept ON {table}")
        op.execute(f"DROP FUNCTION {constraint}()")
        op.create_foreign_key(constraint, table, parent, [column], [key])
    op.execute("DROP FUNCTION huiyuan_refuse()")
