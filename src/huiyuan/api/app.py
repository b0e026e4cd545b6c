"""The FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huiyuan import __version__
from huiyuan.api import (
    errors,
    routes_admin,
    routes_events,
    routes_members,
    routes_membership,
    routes_points,
    routes_tiers,
    routes_wallet,
)
from huiyuan.services import group_commit
from huiyuan.services.context import Services
from huiyuan.services.principals import KeyResolver

log = logging.getLogger("huiyuan.http")


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(
        title="Huiyuan",
        version=__version__,
        description="Membership and loyalty engine: events in, members, tiers and points out.",
        lifespan=functools.partial(_sweeping, svc),
    )
    app.state.services = svc
    app.state.key_resolver = KeyResolver(svc)
    errors.install(app)
    app.include_router(routes_events.router)
    app.include_router(routes_members.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_points.router)
    app.include_router(routes_wallet.router)
    app.include_router(routes_membership.router)
    app.include_router(routes_tiers.router)

    @app.get("/healthz", tags=["operations"], summary="Liveness and database reachability")
    def healthz() -> dict[str, str]:
        with svc.engine.connect() as conn:
            conn.execute(text("select 1"))
        return {"status": "ok", "database": svc.engine.dialect.name}

    app.add_middleware(AccessLog)
    return app


class AccessLog:
    """One log line per HTTP request: method, path, status and time. The path only: query
    strings carry phone numbers, and PII is never logged.

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` runs every request through
    a task and a pair of memory streams of its own, which cost more CPU than the line is worth
    (``bench http``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the application fails before it answers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if log.isEnabledFor(logging.INFO):
                elapsed_ms = (time.perf_counter() - started) * 1000
                log.info("%s %s %d %.1fms", scope["method"], scope["path"], status, elapsed_ms)


STALE_AFTER = timedelta(seconds=2)  # younger queued events are left to the requests coming


@asynccontextmanager
async def _sweeping(svc: Services, app: FastAPI) -> AsyncIterator[None]:
    """While the API runs on PostgreSQL with group commit: every
    ``group_commit_sweep_seconds``, apply single events left queued for more than a moment
    (their leader died, and no request of their partition came since) — ``drain`` without
    waiting for the nightly jobs. Harmless with several workers: partitions are locked.
    At the end, the key resolver's refreshing thread is stopped."""
    every = svc.settings.group_commit_sweep_seconds
    task = None
    if group_commit.enabled(svc) and every > 0:
        task = asyncio.create_task(_sweep(svc, every))
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(app.state.key_resolver.close)


async def _sweep(svc: Services, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            applied = await asyncio.to_thread(group_commit.drain, svc, STALE_AFTER)
        except Exception:
            log.exception("sweeping the event queue failed; trying again in %s s", every)
            continue
        if applied:
            log.warning("applied %d single events left queued (a leader died?)", applied)
