"""Owners and their programs as every event needs them, cached for a few seconds.

They change rarely (an operator adds a store) and every event asks which programs to enroll the
member in, so one process keeps them for ``TTL`` seconds; this process's own changes invalidate
the cache at once, other processes see them within the TTL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from sqlalchemy import Connection

from huiyuan.db import owners_repo

TTL = 10.0


class OwnerDirectory:
    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._loaded_at = -1e18
        self._kinds: dict[str, str] = {}
        self._programs: dict[str, tuple[str, ...]] = {}
        self._owners: dict[str, str] = {}  # program id -> owner id

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = -1e18

    def _load(self, conn: Connection) -> None:
        if time.monotonic() - self._loaded_at < self.ttl:
            return
        kinds = {row.id: row.kind for row in owners_repo.list_owners(conn)}
        programs: dict[str, list[str]] = {}
        for row in owners_repo.list_programs(conn):
            programs.setdefault(row.owner_id, []).append(row.id)
        with self._lock:
            self._kinds = kinds
            self._programs = {owner: tuple(ids) for owner, ids in programs.items()}
            self._owners = {p: owner for owner, ids in programs.items() for p in ids}
            self._loaded_at = time.monotonic()

    def is_store(self, conn: Connection, owner_id: str) -> bool:
        self._load(conn)
        if self._kinds.get(owner_id) == "store":
            return True
        self.invalidate()  # an unknown id may be a store added by another process just now
        self._load(conn)
        return self._kinds.get(owner_id) == "store"

    def owner_of(self, conn: Connection, program_id: str) -> str | None:
        """A program's owner: a lookup, however many stores there are (every event asks it
        for each program it counts in)."""
        self._load(conn)
        owner = self._owners.get(program_id)
        if owner is not None:
            return owner
        self.invalidate()  # a program added by another process just now
        self._load(conn)
        return self._owners.get(program_id)

    def programs_of(self, conn: Connection, owner_ids: Sequence[str]) -> list[str]:
        self._load(conn)
        return [p for owner in owner_ids for p in self._programs.get(owner, ())]
