"""Running Alembic migrations from code (``huiyuan migrate``, ``huiyuan serve`` and the tests)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.pool import NullPool

from huiyuan.db.engine import make_engine
from huiyuan.db.tables import CHECKED_PER_STATEMENT

MIGRATIONS = Path(__file__).parent / "migrations"


def earlier_migration(filename: str) -> ModuleType:
    """An earlier migration's module, by its file name, for a later one that amends what it
    created (a function's text, say) and must be able to put it back on downgrade."""
    path = MIGRATIONS / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"huiyuan_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compared(dialect: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for a database of this dialect: autogenerate compares every
    schema object but, on PostgreSQL, the foreign keys checked there by trigger
    (``tables.CHECKED_PER_STATEMENT``), which it does not hold as foreign keys."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (
            dialect == "postgresql"
            and type_ == "foreign_key_constraint"
            and name in CHECKED_PER_STATEMENT
        )

    return include


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
