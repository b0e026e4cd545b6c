"""Owners (the platform, its stores), their programs and their API keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from huiyuan.db.tables import api_keys, owners, programs
from huiyuan.db.upsert import insert_ignore


def get_owner(conn: Connection, owner_id: str) -> Row[Any] | None:
    return conn.execute(select(owners).where(owners.c.id == owner_id)).first()


def list_owners(conn: Connection) -> Sequence[Row[Any]]:
    return conn.execute(select(owners).order_by(owners.c.kind, owners.c.id)).all()


def add_owner(conn: Connection, owner_id: str, kind: str, name: str, at: datetime) -> bool:
    row = {"id": owner_id, "kind": kind, "name": name, "created_at": at}
    return insert_ignore(conn, owners, row, ["id"]) == 1


def add_program(conn: Connection, program_id: str, owner_id: str, name: str, at: datetime) -> bool:
    row = {"id": program_id, "owner_id": owner_id, "name": name, "created_at": at}
    return insert_ignore(conn, programs, row, ["id"]) == 1


def list_programs(conn: Connection, owner_id: str | None = None) -> Sequence[Row[Any]]:
    query = select(programs).order_by(programs.c.owner_id, programs.c.id)
    if owner_id is not None:
        query = query.where(programs.c.owner_id == owner_id)
    return conn.execute(query).all()


def programs_for_owners(conn: Connection, owner_ids: Sequence[str]) -> list[str]:
    query = select(programs.c.id).where(programs.c.owner_id.in_(owner_ids)).order_by(programs.c.id)
    return list(conn.execute(query).scalars())


def add_api_key(
    conn: Connection,
    *,
    owner_id: str,
    name: str,
    prefix: str,
    secret_hash: str,
    scopes: str,
    at: datetime,
) -> int:
    result = conn.execute(
        api_keys.insert().values(
            owner_id=owner_id,
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            scopes=scopes,
            created_at=at,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def find_api_key(conn: Connection, prefix: str) -> Row[Any] | None:
    query = (
        select(api_keys, owners.c.kind.label("owner_kind"))
        .join(owners, owners.c.id == api_keys.c.owner_id)
        .where(api_keys.c.prefix == prefix)
    )
    return conn.execute(query).first()


def list_api_keys(conn: Connection, owner_id: str | None = None) -> Sequence[Row[Any]]:
    query = select(api_keys).order_by(api_keys.c.id)
    if owner_id is not None:
        query = query.where(api_keys.c.owner_id == owner_id)
    return conn.execute(query).all()


def revoke_api_key(conn: Connection, prefix: str, at: datetime) -> bool:
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return result.rowcount == 1
