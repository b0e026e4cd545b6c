"""Fixtures that run every integration test on SQLite and on PostgreSQL.

PostgreSQL is not optional: if it cannot be reached the tests fail, they do not skip. Set
``HUIYUAN_TEST_DATABASES=sqlite`` to run only on SQLite on a machine without PostgreSQL (CI
refuses that setting). Each xdist worker gets its own PostgreSQL database, migrated once; tests
start from empty tables.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from huiyuan.api.app import create_app
from huiyuan.config import Settings
from huiyuan.db import migrate
from huiyuan.db.engine import make_engine
from huiyuan.db.tables import metadata
from huiyuan.services import owners as owner_service
from huiyuan.services import principals
from huiyuan.services.context import Services

PG_ADMIN_URL = os.environ.get(
    "HUIYUAN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DATABASES = [
    d.strip() for d in os.environ.get("HUIYUAN_TEST_DATABASES", "sqlite,postgresql").split(",")
]
if os.environ.get("CI") and "postgresql" not in DATABASES:
    raise pytest.UsageError("CI runs every test on PostgreSQL too; do not narrow the databases")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a SQLite-only run (never in CI) the PostgreSQL-only tests are deselected, and said so."""
    if "postgresql" in DATABASES:
        return
    kept = [item for item in items if item.get_closest_marker("postgres_only") is None]
    dropped = [item for item in items if item.get_closest_marker("postgres_only") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        print(  # noqa: T201 - a deselection must be visible
            f"\nHUIYUAN_TEST_DATABASES={','.join(DATABASES)}: "
            f"{len(dropped)} PostgreSQL-only tests deselected"
        )


class Clock:
    """A clock tests can move. Starts at 2026-03-01 10:00 Shanghai time."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _worker() -> str:
    """A database name of this run and worker: two runs on one machine never share one."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"p{os.getpid()}")[:8]
    return f"{run}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test worker."""
    name = f"huiyuan_test_{_worker()}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is unreachable at {PG_ADMIN_URL}: {error.orig}. The tests need it "
            "(set HUIYUAN_TEST_DATABASES=sqlite to run SQLite only, outside CI).",
            pytrace=False,
        )
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
    migrate.upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "huiyuan.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def _empty_postgres(url: str) -> None:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def make_pg(pg_url: str, clock: Clock) -> Iterator[Callable[..., Services]]:
    """Services on this worker's PostgreSQL database, emptied first: for tests that race real
    threads (SQLite takes one writer at a time, so it cannot race)."""
    _empty_postgres(pg_url)
    yield from _services_on(pg_url, clock)


def _services_on(url: str, clock: Clock) -> Iterator[Callable[..., Services]]:
    """A factory of services on ``url`` (settings as keywords), on the test clock and with the
    platform in place; their engines are disposed of at the end."""
    made: list[Services] = []

    def make(**settings: object) -> Services:
        svc = Services.from_settings(Settings(database_url=url, **settings))  # type: ignore[arg-type]
        svc.clock = clock
        owner_service.ensure_platform(svc)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.engine.dispose()


@pytest.fixture
def pg(make_pg: Callable[..., Services]) -> Services:
    return make_pg()


@pytest.fixture(params=[d for d in ("sqlite", "postgresql") if d in DATABASES])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        _empty_postgres(url)
        return url
    template: Path = request.getfixturevalue("sqlite_template")
    path = tmp_path / "huiyuan.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_services(db_url: str, clock: Clock) -> Iterator[Callable[..., Services]]:
    yield from _services_on(db_url, clock)


@pytest.fixture
def svc(make_services: Callable[..., Services]) -> Services:
    return make_services()


@dataclass
class Api:
    """An HTTP client with the platform's admin key, plus helpers to make more keys."""

    client: TestClient
    svc: Services
    key: str

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def new_key(self, owner: str, scopes: str = "read,write") -> str:
        return principals.create_api_key(
            self.svc, owner, principals.parse_scopes(scopes), "test", actor="test"
        ).key

    def post(self, path: str, body: object, key: str | None = None) -> object:
        return self.client.post(path, json=body, headers=self.headers(key))

    def get(self, path: str, key: str | None = None, **params: object) -> object:
        return self.client.get(path, params=params, headers=self.headers(key))


@pytest.fixture
def api(svc: Services) -> Iterator[Api]:
    key = principals.create_api_key(
        svc, "platform", (principals.Scope.ADMIN,), "test", actor="test"
    ).key
    with TestClient(create_app(svc)) as client:
        yield Api(client, svc, key)
