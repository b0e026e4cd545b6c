"""The FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Request, Response
from sqlalchemy import text

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

    @app.middleware("http")
    async def access_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # The path only: query strings carry phone numbers, and PII is never logged.
        started = time.perf_counter()
        response = await call_next(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info(
            "%s %s %d %.1fms", request.method, request.url.path, response.status_code, elapsed_ms
        )
        return response

    return app


STALE_AFTER = timedelta(seconds=2)  # younger queued events are left to the requests coming


@asynccontextmanager
async def _sweeping(svc: Services, _app: FastAPI) -> AsyncIterator[None]:
    """While the API runs on PostgreSQL with group commit: every
    ``group_commit_sweep_seconds``, apply single events left queued for more than a moment
    (their leader died, and no request of their partition came since) — ``drain`` without
    waiting for the nightly jobs. Harmless with several workers: partitions are locked."""
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
