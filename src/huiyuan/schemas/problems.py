"""RFC 9457 problem details: the one place where a refusal becomes a status and a body.

Every problem carries a stable ``code`` to branch on and, where one field is to blame, ``field``
in the JSON path form of the request (``data.items[0].sku``); validation failures list every bad
field under ``errors``.
"""

from __future__ import annotations

from typing import Any

from huiyuan.domain.errors import DomainError, ErrorKind
from huiyuan.schemas.validation import FieldProblem

PROBLEM_BASE = "https://huiyuan.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS_OF_KIND = {
    ErrorKind.INVALID: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FORBIDDEN: 403,
}

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Too many events",
    422: "Unprocessable content",
    500: "Internal server error",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    field: str | None = None,
    errors: list[FieldProblem] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    body.update(extra)
    return body


def problem_from_error(error: DomainError) -> dict[str, Any]:
    return problem(STATUS_OF_KIND[error.kind], str(error.code), error.message, field=error.field)


def validation_problem(problems: list[FieldProblem]) -> dict[str, Any]:
    first = problems[0]
    detail = f"{first.field}: {first.message}"
    if len(problems) > 1:
        detail += f" (and {len(problems) - 1} more)"
    return problem(422, "validation_failed", detail, field=first.field, errors=problems)
