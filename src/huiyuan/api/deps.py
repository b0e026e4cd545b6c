"""Request dependencies: the services and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from huiyuan.api.errors import Unauthorized
from huiyuan.services.context import Services
from huiyuan.services.principals import KeyResolver, Principal


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def principal(request: Request) -> Principal:
    """The owner behind ``Authorization: Bearer <key>`` (or ``X-Api-Key``)."""
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    key = key or request.headers.get("x-api-key", "").strip()
    if not key:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    resolver: KeyResolver = request.app.state.key_resolver
    found = resolver.resolve(key)
    if found is None:
        raise Unauthorized("unknown or revoked API key")
    return found


ServicesDep = Annotated[Services, Depends(services)]
PrincipalDep = Annotated[Principal, Depends(principal)]
