"""POST /v1/tickets (idempotent, persisted before the answer) and reading runs back."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from agent.audit import RunExport, RunQuery, RunSummary, export_runs, list_runs, report_run, run_timeline
from agent.audit import VerifyReport as VerifyOut
from agent.record import Run, UnknownRunError
from agent.service.auth import context, require
from agent.service.context import ServiceContext
from agent.service.models import ApiKey, IdempotencyRecord, submitted_by
from agent.service.problems import PROBLEMS, ProblemError
from agent.service.request_rules import json_body
from agent.service.schemas import EventOut, EventsView, RunView
from agent.tickets import Ticket, TicketError, parse_ticket
from plans.models import canonical_json

router = APIRouter(prefix="/v1", tags=["tickets and runs"])
IN_PROGRESS = ("received", "running")
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]


def _find_run(ctx: ServiceContext, run_id: str, key: ApiKey | None = None) -> Run:
    """The run; a platform `key` sees only the runs of tickets it posted (any other is unknown
    to it: run ids can be worked out from key ids and Idempotency-Keys)."""
    unknown = ProblemError(404, f"unknown run id {run_id!r}")
    try:
        run = ctx.runtime.store.get_run(run_id)
    except UnknownRunError:
        raise unknown from None
    if key is not None and key.role == "platform" and key.id not in submitted_by(ctx.runtime.engine, run_id):
        raise unknown
    return run


def _accept(ctx: ServiceContext, ticket: Ticket, key: ApiKey, idempotency_key: str) -> tuple[Run, bool]:
    """The run for this key: created, persisted and queued once; (run, created)."""
    body_hash = hashlib.sha256(canonical_json(ticket.model_dump(mode="json")).encode()).hexdigest()
    scoped = f"{key.id}:{idempotency_key}"
    store = ctx.runtime.store
    with Session(ctx.runtime.engine) as session:
        known = session.get(IdempotencyRecord, scoped)
    if known is None:
        run_id = f"run_{hashlib.sha256(scoped.encode()).hexdigest()[:20]}"
        try:
            with Session(ctx.runtime.engine) as session:
                session.add(IdempotencyRecord(key=scoped, body_hash=body_hash, run_id=run_id))
                session.commit()
        except IntegrityError:  # the same key raced in from another request
            with Session(ctx.runtime.engine) as session:
                known = session.get(IdempotencyRecord, scoped)
    if known is not None:
        if known.body_hash != body_hash:
            raise ProblemError(409, f"Idempotency-Key {idempotency_key!r} was already used with a different ticket")
        run_id = known.run_id
        try:
            run = store.get_run(run_id)
        except UnknownRunError:
            pass  # the first request stopped between recording the key and the run: finish its work
        else:
            if run.status == "received":
                ctx.queue.ensure(run.id)  # ... or between storing the run and queueing it
            return run, False
    try:
        run, created = store.create_run(ticket.model_dump(mode="json"), ctx.runtime.versions, run_id), True
    except IntegrityError:  # a request with the same key created this run a moment ago
        run, created = store.get_run(run_id), False
    ctx.queue.ensure(run.id)
    return run, created


@router.post(
    "/tickets",
    status_code=202,
    response_model=RunView,
    responses={200: {"model": RunView, "description": "The run finished within `wait` seconds."}, **PROBLEMS},
    dependencies=[Depends(json_body)],
)
async def post_ticket(
    ticket: Ticket,
    response: Response,
    idempotency_key: IdempotencyKey,
    key: Annotated[ApiKey, Depends(require("platform"))],
    ctx: Annotated[ServiceContext, Depends(context)],
    wait: Annotated[float, Query(ge=0, le=3600, allow_inf_nan=False, description="Seconds to wait for the run to finish.")] = 0,
) -> RunView:
    """Accept a ticket: the run is stored and queued before the answer (202 + run id)."""
    try:
        parse_ticket(ticket.model_dump(mode="json"), ctx.runtime.settings.limits.max_ticket_chars)
    except TicketError as exc:
        raise ProblemError(422, str(exc)) from None
    run, _ = await asyncio.to_thread(_accept, ctx, ticket, key, idempotency_key)
    deadline = time.monotonic() + min(wait, ctx.runtime.settings.service.max_wait_s)
    while run.status in IN_PROGRESS and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        run = await asyncio.to_thread(ctx.runtime.store.get_run, run.id)
    response.status_code = 202 if run.status in IN_PROGRESS else 200
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return RunView.of(run)


@router.get("/runs", response_model=list[RunSummary], responses=PROBLEMS)
def list_all(
    _: Annotated[ApiKey, Depends(require("agent", "auditor"))],
    ctx: Annotated[ServiceContext, Depends(context)],
    status: Annotated[str | None, Query(max_length=40)] = None,
    template: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[RunSummary]:
    """Recent runs, newest first."""
    return list_runs(ctx.audit, RunQuery(status=status, template=template, limit=limit))


@router.get("/runs/{run_id}", response_model=RunView, responses=PROBLEMS)
def get_run(
    run_id: str,
    key: Annotated[ApiKey, Depends(require("platform", "agent", "auditor"))],
    ctx: Annotated[ServiceContext, Depends(context)],
) -> RunView:
    return RunView.of(_find_run(ctx, run_id, key))


@router.get("/runs/{run_id}/events", response_model=EventsView, responses=PROBLEMS)
def get_events(
    run_id: str,
    key: Annotated[ApiKey, Depends(require("platform", "agent", "auditor"))],
    ctx: Annotated[ServiceContext, Depends(context)],
) -> EventsView:
    """The run's trace, in order, as stored (PII masked)."""
    _find_run(ctx, run_id, key)
    timeline = run_timeline(ctx.audit, run_id)
    return EventsView(run_id=run_id, events=[EventOut.model_validate(e.model_dump()) for e in timeline.events])


@router.get("/runs/{run_id}/verify", response_model=VerifyOut, responses=PROBLEMS)
def verify(
    run_id: str,
    _: Annotated[ApiKey, Depends(require("auditor"))],
    ctx: Annotated[ServiceContext, Depends(context)],
) -> VerifyOut:
    """Check the run's hash chain and seal (as `caseplan audit verify`). `status` says the
    outcome: `verified`, `tampered` (with findings), `in_progress` (not sealed yet; its events so
    far verify), `stalled` (not sealed and silent for over a day: a crash nobody resumed, or a
    seal removed) or `unverifiable` (a signed run and this service lacks the signing key)."""
    _find_run(ctx, run_id)
    return report_run(ctx.audit, run_id)


@router.get("/runs/{run_id}/export", response_model=RunExport, responses=PROBLEMS)
def export(
    run_id: str,
    _: Annotated[ApiKey, Depends(require("auditor"))],
    ctx: Annotated[ServiceContext, Depends(context)],
) -> RunExport:
    """The run and its events exactly as stored (one line of `caseplan audit export`)."""
    _find_run(ctx, run_id)
    return next(iter(export_runs(ctx.audit, [run_id])))
