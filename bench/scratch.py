"""Scratch PostgreSQL databases: created for one benchmark, migrated, dropped at the end.

Only databases named ``huiyuan_bench_*`` are ever created or dropped here, so a benchmark can
never touch the ``test`` database or the test suite's ``huiyuan_test_*`` databases.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

ADMIN_URL = os.environ.get(
    "HUIYUAN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PREFIX = "huiyuan_bench_"
_NAME = re.compile(r"^huiyuan_bench_[a-z0-9_]{1,40}$")


def db_name(kind: str, tag: str = "") -> str:
    name = f"{PREFIX}{kind}{'_' + tag if tag else ''}"
    if not _NAME.match(name):
        raise ValueError(f"refusing scratch database name {name!r}")
    return name


def url_of(name: str, admin_url: str = ADMIN_URL) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _checked(name: str) -> str:
    if not _NAME.match(name) or name.startswith("huiyuan_test_"):
        raise ValueError(f"refusing to touch database {name!r}: not a benchmark scratch database")
    return name


def _admin(admin_url: str) -> sa.Engine:
    return sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def drop(name: str, admin_url: str = ADMIN_URL) -> None:
    engine = _admin(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)'))
    finally:
        engine.dispose()


def create(name: str, admin_url: str = ADMIN_URL, template: str | None = None) -> str:
    """A fresh database (a file copy of ``template`` if given); returns its URL."""
    drop(name, admin_url)
    engine = _admin(admin_url)
    clause = f' TEMPLATE "{_checked(template)}" STRATEGY FILE_COPY' if template else ""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{_checked(name)}"{clause}'))
    finally:
        engine.dispose()
    return url_of(name, admin_url)


def create_migrated(name: str, admin_url: str = ADMIN_URL) -> str:
    from huiyuan.db import migrate

    url = create(name, admin_url)
    migrate.upgrade(url)
    return url


@contextmanager
def scratch(
    name: str, admin_url: str = ADMIN_URL, *, template: str | None = None, keep: bool = False
) -> Iterator[str]:
    """A migrated scratch database (or a copy of ``template``) for the ``with`` block."""
    url = create(name, admin_url, template) if template else create_migrated(name, admin_url)
    try:
        yield url
    finally:
        if not keep:
            drop(name, admin_url)


def libpq_args(admin_url: str = ADMIN_URL) -> tuple[list[str], dict[str, str]]:
    """Connection options for the PostgreSQL command-line tools (pgbench)."""
    url: URL = make_url(admin_url)
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    if url.username:
        args += ["-U", url.username]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return args, env
