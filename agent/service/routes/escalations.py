"""The escalation queue for support agents: list, claim, release, resolve (with a reply)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agent.service.auth import actor, context, require
from agent.service.context import ServiceContext
from agent.service.desk import DeskError, EscalationStatus
from agent.service.models import ApiKey
from agent.service.problems import PROBLEMS, ProblemError
from agent.service.request_rules import json_body
from agent.service.schemas import EscalationOut, ResolveBody, ResolvedOut

router = APIRouter(prefix="/v1/escalations", tags=["escalations"])
Agent = Annotated[ApiKey, Depends(require("agent"))]
Ctx = Annotated[ServiceContext, Depends(context)]
ESCALATION_PROBLEMS = PROBLEMS | {502: PROBLEMS[409] | {"description": "The helpdesk did not take the reply; the escalation stays claimed."}}


def _desk(call):  # noqa: ANN001, ANN202 (a thin adapter from desk errors to problems)
    try:
        return call()
    except DeskError as exc:
        raise ProblemError(exc.status, exc.message) from None


@router.get("", response_model=list[EscalationOut], responses=PROBLEMS)
def list_escalations(
    _: Agent,
    ctx: Ctx,
    status: Annotated[EscalationStatus | None, Query()] = None,
    queue: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[EscalationOut]:
    """Oldest first, the order the queue is worked in; page with `offset` and `limit`."""
    return [EscalationOut.of(row) for row in ctx.desk.list(status, queue, limit, offset)]


@router.get("/{escalation_id}", response_model=EscalationOut, responses=PROBLEMS)
def get_escalation(escalation_id: str, _: Agent, ctx: Ctx) -> EscalationOut:
    return EscalationOut.of(_desk(lambda: ctx.desk.get(escalation_id)))


@router.post("/{escalation_id}/claim", response_model=EscalationOut, responses=PROBLEMS)
def claim(escalation_id: str, key: Agent, ctx: Ctx) -> EscalationOut:
    return EscalationOut.of(_desk(lambda: ctx.desk.claim(escalation_id, actor(key))))


@router.post("/{escalation_id}/release", response_model=EscalationOut, responses=PROBLEMS)
def release(escalation_id: str, key: Agent, ctx: Ctx) -> EscalationOut:
    """Give back an escalation you claimed; an admin may take back one someone else holds."""
    return EscalationOut.of(_desk(lambda: ctx.desk.release(escalation_id, actor(key), admin=key.role == "admin")))


@router.post("/{escalation_id}/resolve", response_model=ResolvedOut, responses=ESCALATION_PROBLEMS, dependencies=[Depends(json_body)])
def resolve(escalation_id: str, body: ResolveBody, key: Agent, ctx: Ctx) -> ResolvedOut:
    """Resolve an escalation you claimed; `reply` reaches the customer through the ticket tool."""
    row, sent = _desk(lambda: ctx.desk.resolve(escalation_id, actor(key), body.resolution, body.reply))
    return ResolvedOut(escalation=EscalationOut.of(row), ticket_update=sent)
