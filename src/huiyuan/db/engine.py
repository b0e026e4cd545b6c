"""Engines for SQLite (the embedded default) and PostgreSQL (production).

SQLite is put in WAL mode with foreign keys on, and every transaction starts with
``BEGIN IMMEDIATE`` so two writers queue for the lock instead of failing half-way when a reader
tries to become a writer. Savepoints work because the driver's own transaction handling is
turned off and SQLAlchemy emits BEGIN itself.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(url: str, *, pre_ping: bool = False, **kwargs: Any) -> Engine:
    """``pre_ping``: test each pooled connection with a round trip before lending it. Off by
    default: on a busy server it costs a third of a single event's CPU, and event ingestion
    retries on a dead connection instead (``uow.is_disconnect``)."""
    kwargs.setdefault("hide_parameters", True)  # statement parameters carry PII: never log them
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 20)
        kwargs.setdefault("pool_pre_ping", pre_ping)
    # Instants come back in UTC from the driver too, as ``UTCDateTime`` gives them through
    # SQLAlchemy (``db.driver`` runs some statements without it). Options given in the URL
    # (``?options=-c search_path=…``) are kept: the driver would let ours replace them.
    connect_args = kwargs.setdefault("connect_args", {})
    given = connect_args.get("options") or parsed.query.get("options") or ""
    if isinstance(given, tuple):  # the option repeated in the URL
        given = " ".join(given)
    connect_args["options"] = f"{given} -c TimeZone=UTC".strip()
    return create_engine(url, **kwargs)


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("timeout", 30)
    connect_args.setdefault("check_same_thread", False)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if make_url(url).database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
