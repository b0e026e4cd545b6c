"""Alembic environment: migrations run against the URL the caller configured."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from huiyuan.db.engine import make_engine
from huiyuan.db.migrate import compared
from huiyuan.db.tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "set sqlalchemy.url"

engine = make_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=compared(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
