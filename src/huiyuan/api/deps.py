"""Request dependencies: the services and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from huiyuan.api.errors import Unauthorized
from huiyuan.services.context import Services
from huiyuan.services.principals import KeyResolver, Principal

# Both dependencies are ``async``: FastAPI runs a ``def`` dependency on its thread pool, a hand-off
# each that cost more CPU than what they do (``bench http``).


async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def principal(request: Request) -> Principal:
    """The owner behind ``Authorization: Bearer <key>`` (or ``X-Api-Key``): from the
    resolver's memory when it was seen a moment ago, else looked up off the event loop."""
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    key = key or request.headers.get("x-api-key", "").strip()
    if not key:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    resolver: KeyResolver = request.app.state.key_resolver
    found = resolver.cached(key) or await run_in_threadpool(resolver.resolve, key)
    if found is None:
        raise Unauthorized("unknown or revoked API key")
    return found


ServicesDep = Annotated[Services, Depends(services)]
PrincipalDep = Annotated[Principal, Depends(principal)]
