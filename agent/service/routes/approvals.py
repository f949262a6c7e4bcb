"""Approvals: the runs paused because policy said needs_approval, and the answer that resumes them."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from sqlmodel import Session

from agent.record import Approval
from agent.service.auth import actor, context, require
from agent.service.context import ServiceContext
from agent.service.models import ApiKey, submitted_by
from agent.service.problems import PROBLEMS, ProblemError
from agent.service.request_rules import json_body
from agent.service.schemas import ApprovalDecision, ApprovalOut

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


def decide(ctx: ServiceContext, approval_id: str, approved: bool, key: ApiKey, note: str) -> Approval:
    """Record the answer, then queue the run: a worker resumes it from its checkpoint. The key
    that posted the ticket may not answer for it (an admin key can do both): a second pair of
    eyes is what an approval is for."""
    with Session(ctx.runtime.engine) as session:
        row = session.get(Approval, approval_id)
    if row is None:
        raise ProblemError(404, f"unknown approval id {approval_id!r}")
    if key.id in submitted_by(ctx.runtime.engine, row.run_id):
        raise ProblemError(403, f"approval {approval_id} is for a ticket this key posted; another person must answer it")
    by = actor(key)
    if row.status != "pending":
        raise ProblemError(409, f"approval {approval_id} was already {row.status} by {row.decided_by}")
    with ctx.runtime.engine.begin() as conn:  # the answer and the queued run land together or not at all
        decided = ctx.runtime.store.decide_approval(row.run_id, approved, by, note, conn)
        if decided is None or decided.id != approval_id:
            raise ProblemError(409, f"approval {approval_id} is no longer pending")
        ctx.queue.enqueue(row.run_id, answer={"approved": approved, "by": by, "note": decided.note}, conn=conn)  # stored masked
    return decided


@router.get("", response_model=list[ApprovalOut], responses=PROBLEMS)
def list_approvals(
    _: Annotated[ApiKey, Depends(require("agent", "auditor"))],
    ctx: Annotated[ServiceContext, Depends(context)],
    status: Annotated[Literal["pending", "approved", "rejected"] | None, Query()] = None,
) -> list[ApprovalOut]:
    return [ApprovalOut.of(row, ctx.audit.protection.mask) for row in ctx.runtime.store.approvals(status=status)]


@router.post("/{approval_id}", status_code=202, response_model=ApprovalOut, responses=PROBLEMS, dependencies=[Depends(json_body)])
def answer(
    approval_id: str,
    body: ApprovalDecision,
    key: Annotated[ApiKey, Depends(require("agent"))],
    ctx: Annotated[ServiceContext, Depends(context)],
) -> ApprovalOut:
    """Approve or reject; the run continues in the background (poll GET /v1/runs/{run_id})."""
    return ApprovalOut.of(decide(ctx, approval_id, body.decision == "approve", key, body.note), ctx.audit.protection.mask)
