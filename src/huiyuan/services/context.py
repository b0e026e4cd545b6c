"""What every service needs: the engine, the settings and a clock (replaceable in tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from huiyuan.config import Settings
from huiyuan.db.engine import make_engine
from huiyuan.db.uow import UnitOfWork
from huiyuan.domain.business_time import utc_now
from huiyuan.services.directory import OwnerDirectory
from huiyuan.services.program_configs import ProgramConfigs

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
        return cls(engine=make_engine(settings.resolved_database_url), settings=settings)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    def now(self) -> datetime:
        return self.clock()
