"""``POST /v1/events``, ``POST /v1/events:batch`` and ``GET /v1/events/{id}``."""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from huiyuan.api.deps import PrincipalDep, ServicesDep
from huiyuan.api.errors import problem_response
from huiyuan.schemas.problems import problem
from huiyuan.services import events as event_service
from huiyuan.services.principals import Scope

router = APIRouter(prefix="/v1", tags=["events"])


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _BadJson(str(error))


class _BadJson:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def response(self) -> JSONResponse:
        return problem_response(problem(400, "malformed_json", f"body is not JSON: {self.reason}"))


def _outcome_response(outcome: event_service.EventOutcome) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    if outcome.ok:
        return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)
    return problem_response(outcome.body, headers)


@router.post(
    "/events",
    summary="Send one event",
    responses={
        200: {"description": "applied"},
        202: {"description": "deferred, or (with Prefer: respond-async) queued"},
    },
)
async def post_event(
    request: Request,
    svc: ServicesDep,
    who: PrincipalDep,
    prefer: Annotated[
        str | None,
        Header(description="`respond-async`: answer once the event is durable (202 queued)"),
    ] = None,
) -> JSONResponse:
    body = await _json_body(request)
    if isinstance(body, _BadJson):
        return body.response()
    wait = not _prefers_async(prefer)
    outcome = await run_in_threadpool(
        functools.partial(event_service.ingest_event, svc, who, body, wait=wait)
    )
    response = _outcome_response(outcome)
    if outcome.ok and outcome.body.get("status") == "queued":
        response.headers["Preference-Applied"] = "respond-async"
    return response


def _prefers_async(prefer: str | None) -> bool:
    """RFC 7240: ``Prefer`` holds comma-separated preferences, each possibly with ``=value``
    and ``;parameters``."""
    if not prefer:
        return False
    names = (part.split(";")[0].split("=")[0].strip().lower() for part in prefer.split(","))
    return "respond-async" in names


@router.post("/events:batch", summary="Send up to 1,000 events; each gets its own result")
async def post_events_batch(request: Request, svc: ServicesDep, who: PrincipalDep) -> JSONResponse:
    who.require(Scope.WRITE)
    body = await _json_body(request)
    if isinstance(body, _BadJson):
        return body.response()
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        return problem_response(
            problem(422, "validation_failed", 'events: send {"events": [...]}', field="events")
        )
    limit = svc.settings.batch_max_events
    if len(events) > limit:
        return problem_response(
            problem(413, "batch_too_large", f"at most {limit} events a batch", field="events")
        )
    outcomes = await run_in_threadpool(event_service.ingest_batch, svc, who, events)
    results = []
    counts = {"applied": 0, "deferred": 0, "replayed": 0, "rejected": 0}
    for index, (raw, outcome) in enumerate(zip(events, outcomes, strict=True)):
        kind = _kind(outcome)
        counts[kind] += 1
        event_id = raw.get("id") if isinstance(raw, dict) else None
        results.append(
            {
                "index": index,
                "id": event_id,
                "status": outcome.status,
                "outcome": kind,
                "result": outcome.body,
            }
        )
    return JSONResponse({"results": results, **counts})


def _kind(outcome: event_service.EventOutcome) -> str:
    if not outcome.ok:
        return "rejected"
    if outcome.replayed:
        return "replayed"
    return "deferred" if outcome.status == event_service.DEFERRED else "applied"


@router.get("/events/{event_id}", summary="Where an event stands (applied, deferred, rejected)")
def get_event(event_id: str, svc: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    return event_service.event_status(svc, who, event_id)
