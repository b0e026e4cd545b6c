"""What every service needs: the engine, the settings and a clock (replaceable in tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine

from huiyuan.config import Settings
from huiyuan.db.engine import make_engine
from huiyuan.db.uow import UnitOfWork
from huiyuan.domain.business_time import utc_now
from huiyuan.services.directory import OwnerDirectory
from huiyuan.services.program_configs import ProgramConfig, ProgramConfigs

PLATFORM_OWNER = "platform"


@dataclass
class Services:
    engine: Engine
    settings: Settings
    clock: Callable[[], datetime] = field(default=utc_now)
    directory: OwnerDirectory = field(default_factory=OwnerDirectory)
    configs: ProgramConfigs = field(default_factory=ProgramConfigs)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(
            engine=make_engine(settings.resolved_database_url, pre_ping=settings.database_pre_ping),
            settings=settings,
        )

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

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
