"""What every service needs: the engine, the settings and a clock (replaceable in tests)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from huiyuan.config import Settings
from huiyuan.db.engine import make_engine
from huiyuan.db.uow import UnitOfWork
from huiyuan.domain.business_time import utc_now
from huiyuan.services.combiner import Combiner
from huiyuan.services.directory import OwnerDirectory
from huiyuan.services.program_configs import ProgramConfig, ProgramConfigs

PLATFORM_OWNER = "platform"

# Collect the youngest generation every 50,000 allocations (Python's default is 700) and the
# older ones ten times less often than by default; see ``tune_gc``.
GC_THRESHOLDS = (50_000, 20, 100)
_gc_tuned = False


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-running process, once per process.

    A batch of events allocates hundreds of thousands of short-lived dicts and rows, almost
    none in reference cycles (reference counting frees them). With Python's default
    thresholds the collector still runs every 700 allocations and, every hundredth time or so,
    walks every object the process holds — SQLAlchemy's and pydantic's models included: about
    a third of the client's CPU on ``ingest_batch`` (0.19 against 0.12 ms per event with the
    collector off, ``bench/README.md``). ``gc.freeze`` moves what exists now (modules, models,
    compiled statements) out of the collector's sight, and higher thresholds make young
    collections rare. Cycles are still collected, only later."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass
class Services:
    engine: Engine
    settings: Settings
    clock: Callable[[], datetime] = field(default=utc_now)
    directory: OwnerDirectory = field(default_factory=OwnerDirectory)
    configs: ProgramConfigs = field(default_factory=ProgramConfigs)
    # Concurrent single events of this process that wait for their outcome, applied together
    # (``events.ingest_event``); its own for every ``Services``, copies included.
    combiner: Combiner[Any, Any] = field(
        default_factory=Combiner, init=False, repr=False, compare=False
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Services for a process that runs Huiyuan (the API, the CLI, a worker): also tunes
        the garbage collector for it (``tune_gc``)."""
        tune_gc()
        return cls(
            engine=make_engine(settings.resolved_database_url, pre_ping=settings.database_pre_ping),
            settings=settings,
        )

    def uow(self, *, generic_plans: bool = False) -> UnitOfWork:
        return UnitOfWork(self.engine, generic_plans=generic_plans)

    def now(self) -> datetime:
        return self.clock()

    def programs_of_activity(self, conn: Connection, store_id: str | None) -> list[str]:
        """The programs an activity counts in: the platform's, and for a store's activity
        (``store_id``) the store's own too."""
        owners = [PLATFORM_OWNER] if store_id is None else [PLATFORM_OWNER, store_id]
        return self.directory.programs_of(conn, owners)

    def configs_of_activity(
        self, conn: Connection, store_id: str | None, at: datetime
    ) -> list[tuple[ProgramConfig, str]]:
        """Those programs in id order, each as its version in force at ``at`` with its owner."""
        return [
            (
                self.configs.at(conn, program_id, at),
                self.directory.owner_of(conn, program_id) or PLATFORM_OWNER,
            )
            for program_id in sorted(self.programs_of_activity(conn, store_id))
        ]
