"""Mapping refusals to RFC 9457 problem+json responses: the one place HTTP meets errors."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from huiyuan.domain.errors import DomainError
from huiyuan.schemas.problems import (
    PROBLEM_MEDIA_TYPE,
    STATUS_OF_KIND,
    problem,
    problem_from_error,
    validation_problem,
)
from huiyuan.schemas.validation import problems_from_errors

log = logging.getLogger("huiyuan.api")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class Unauthorized(Exception):
    def __init__(self, detail: str) -> None:
        self.detail = detail


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return ProblemResponse(body, status_code=body["status"], headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, error: DomainError) -> JSONResponse:
        return ProblemResponse(problem_from_error(error), status_code=STATUS_OF_KIND[error.kind])

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, error: Unauthorized) -> JSONResponse:
        body = problem(401, "unauthorized", error.detail)
        return problem_response(body, {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = list(error.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(problem(400, "malformed_json", "body is not valid JSON"))
        return problem_response(validation_problem(problems_from_errors(list(error.errors()))))

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, error: DBAPIError) -> JSONResponse:
        if error.connection_invalidated or isinstance(error, OperationalError):
            # The database restarted, or cannot be reached: the caller should come back. The
            # pool has already dropped the dead connection (and those older than it).
            log.warning("database unavailable: %s", type(error.orig).__name__)
            body = problem(
                503, "database_unavailable", "the database connection was lost; retry shortly"
            )
            return problem_response(body, {"Retry-After": "1"})
        return await _unexpected(request, error)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        # The cause goes to the log (without request data); the caller gets no internals.
        log.exception("unhandled error: %s", type(error).__name__)
        return problem_response(problem(500, "internal_error", "an unexpected error occurred"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return problem_response(problem(error.status_code, code, str(error.detail)))
