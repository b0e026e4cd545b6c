"""The FastAPI application."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

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
from huiyuan.services.context import Services
from huiyuan.services.principals import KeyResolver

log = logging.getLogger("huiyuan.http")


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(
        title="Huiyuan",
        version=__version__,
        description="Membership and loyalty engine: events in, members, tiers and points out.",
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
