"""Compiled program documents and the per-process cache of their versions.

Kept apart from ``programs`` (which writes versions) so that ``Services`` can hold the cache
without an import cycle.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from huiyuan.db import programs_repo
from huiyuan.domain import points as dp
from huiyuan.schemas.program_config import (
    FixedDoc,
    ProgramDocument,
    default_document,
    stored_document,
)

TTL = 10.0


@dataclass(frozen=True)
class ProgramConfig:
    """One version of a program's document, with its rules compiled for the domain."""

    program_id: str
    version: int  # 0: the built-in default, before any version was applied
    effective_from: datetime | None
    document: ProgramDocument
    order_rules: tuple[dp.OrderRule, ...] = field(default=())
    fixed_rules: tuple[dp.FixedRule, ...] = field(default=())
    multipliers: tuple[dp.Multiplier, ...] = field(default=())

    @classmethod
    def compile(
        cls, program_id: str, version: int, effective_from: datetime | None, doc: ProgramDocument
    ) -> ProgramConfig:
        points = doc.points
        return cls(
            program_id=program_id,
            version=version,
            effective_from=effective_from,
            document=doc,
            order_rules=tuple(r.to_domain() for r in points.earning if not isinstance(r, FixedDoc)),
            fixed_rules=tuple(r.to_domain() for r in points.earning if isinstance(r, FixedDoc)),
            multipliers=tuple(m.to_domain() for m in points.multipliers),
        )


class ProgramConfigs:
    """Versions of every program, cached for ``TTL`` seconds."""

    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._loaded_at = -1e18
        self._versions: dict[str, list[ProgramConfig]] = {}
        self._defaults: dict[str, ProgramConfig] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = -1e18

    def _load(self, conn: Connection) -> None:
        if time.monotonic() - self._loaded_at < self.ttl:
            return
        versions: dict[str, list[ProgramConfig]] = {}
        for row in programs_repo.all_versions(conn):
            doc = stored_document(row.document)
            versions.setdefault(row.program_id, []).append(
                ProgramConfig.compile(row.program_id, row.version, row.effective_from, doc)
            )
        for configs in versions.values():
            configs.sort(key=lambda c: (c.effective_from, c.version))
        with self._lock:
            self._versions = versions
            self._loaded_at = time.monotonic()

    def at(self, conn: Connection, program_id: str, moment: datetime) -> ProgramConfig:
        """The version in force at ``moment`` (the built-in default before the first)."""
        self._load(conn)
        configs = self._versions.get(program_id, [])
        # Stored versions all have a start (``program_versions.effective_from`` is required).
        index = bisect.bisect_right(configs, moment, key=_start) - 1
        if index < 0:
            return self._default(program_id)
        return configs[index]

    def starts_between(
        self, conn: Connection, program_id: str, start: datetime, end: datetime
    ) -> list[datetime]:
        """When versions of the program took (or take) effect in ``(start, end)``, in order."""
        self._load(conn)
        return [
            c.effective_from
            for c in self._versions.get(program_id, [])
            if c.effective_from is not None and start < c.effective_from < end
        ]

    def _default(self, program_id: str) -> ProgramConfig:
        """Before a program's first version: the platform earns 1 point per ¥1; a store's own
        program issues no points until it publishes rules of its own."""
        config = self._defaults.get(program_id)
        if config is None:
            doc = default_document()
            if program_id != "platform":
                doc = doc.model_copy(
                    update={"points": doc.points.model_copy(update={"enabled": False})}
                )
            config = ProgramConfig.compile(program_id, 0, None, doc)
            self._defaults[program_id] = config
        return config


def _start(config: ProgramConfig) -> datetime:
    assert config.effective_from is not None, "a stored version has a start"
    return config.effective_from
