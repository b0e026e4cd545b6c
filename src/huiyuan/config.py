"""Settings read from the environment (prefix ``HUIYUAN_``).

Every setting has a default that works on a fresh machine: with nothing set, Huiyuan keeps its
data in a SQLite file under ``./var`` and counts business days in Asia/Shanghai.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AutoEnrollPolicy(StrEnum):
    """What happens to an event for a member Huiyuan has never seen."""

    ANY_EVENT = "any_event"  # any event creates the member and enrolls them
    REGISTRATION_ONLY = "registration_only"  # others wait until member.registered arrives


class WaitingGroup(StrEnum):
    """With group commit on, which single events a request that waits for its outcome is
    applied together with."""

    PROCESS = "process"  # the concurrent requests of the same process, gathered in memory
    QUEUE = "queue"  # those of every process, through the database's event queue


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUIYUAN_", extra="ignore")

    database_url: str = Field(
        default="", description="SQLAlchemy URL; empty means a SQLite file at ./var/huiyuan.db"
    )
    database_pre_ping: bool = Field(
        default=False,
        description=(
            "test each pooled PostgreSQL connection with a round trip before use (events are "
            "retried on a dead connection anyway; other requests fail once after a restart)"
        ),
    )
    business_timezone: str = Field(
        default="Asia/Shanghai", description="IANA zone deciding what a business day is"
    )
    auto_enroll: AutoEnrollPolicy = AutoEnrollPolicy.ANY_EVENT
    deferred_event_ttl_hours: int = Field(
        default=72, ge=1, description="how long an out-of-order event may wait for its cause"
    )
    event_outcome_retention_days: int = Field(
        default=7,
        ge=1,
        description="how long the refusal of an event sent with Prefer: respond-async is told",
    )
    batch_max_events: int = Field(default=1000, ge=1, le=10_000)
    group_commit: bool = Field(
        default=True,
        description="on PostgreSQL, apply concurrent single events together (group commit)",
    )
    group_commit_waiting: WaitingGroup = Field(
        default=WaitingGroup.PROCESS,
        description=(
            "a single event answered with its outcome is applied together with the concurrent "
            "requests of its own process (process) or of every process, through the event queue "
            "(queue)"
        ),
    )
    group_commit_partitions: int = Field(
        default=2,
        ge=1,
        le=256,
        description="leaders working at once; each owns the members hashing to it",
    )
    group_commit_batch: int = Field(
        default=500, ge=1, le=10_000, description="most events a leader applies at once"
    )
    group_commit_sweep_seconds: float = Field(
        default=5.0,
        ge=0,
        description=(
            "how often the API applies single events left queued by a leader that died (0: never; "
            "huiyuan events drain does it too)"
        ),
    )
    group_commit_backlog: int = Field(
        default=5000,
        ge=0,
        le=1_000_000,
        description=(
            "an event sent with Prefer: respond-async further behind than this (in queue ids) "
            "is answered only once applied: back-pressure"
        ),
    )
    api_key_cache_seconds: float = Field(default=30.0, ge=0)
    log_level: str = "INFO"

    @field_validator("business_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone: fail at start, not at the first event
        return value

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.business_timezone)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        path = Path("var") / "huiyuan.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
