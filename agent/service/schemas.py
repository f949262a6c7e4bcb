"""Request and response bodies of the HTTP API (the OpenAPI document is built from these)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from agent.record import Approval, Run
from agent.tickets import without_nul
from tools.escalation import Escalation


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:  # noqa: ANN401 (every field of every body)
        return without_nul(value) if isinstance(value, str) else value


class RunView(BaseModel):
    run_id: str
    status: str
    ticket_id: str | None = None
    template: str | None = None
    plan_hash: str | None = None
    reply: str | None = None
    escalation_reason: str | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    links: dict[str, str] = {}

    @classmethod
    def of(cls, run: Run) -> RunView:
        return cls(
            run_id=run.id,
            status=run.status,
            ticket_id=run.ticket_id,
            template=run.template,
            plan_hash=run.plan_hash,
            reply=run.reply,
            escalation_reason=run.escalation_reason,
            error=run.error,
            created_at=run.created_at,
            updated_at=run.updated_at,
            links={"self": f"/v1/runs/{run.id}", "events": f"/v1/runs/{run.id}/events"},
        )


class EventOut(BaseModel):
    seq: int
    kind: str
    node: str
    created_at: datetime
    summary: str
    payload: Any = None
    hash: str


class EventsView(BaseModel):
    run_id: str
    events: list[EventOut]


class ApprovalOut(BaseModel):
    id: str
    run_id: str
    plan_hash: str
    steps: list[dict[str, Any]]
    status: str
    requested_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    note: str | None = None

    @classmethod
    def of(cls, row: Approval, mask: Callable[[Any], Any]) -> ApprovalOut:
        """The row as the run page and the export show it: the approver's note and every other
        string masked (a note is typed by a person and may hold what the record never keeps)."""
        return cls.model_validate(mask(row.model_dump()))


MAX_NOTE_CHARS = 2000


class ApprovalDecision(_Body):
    decision: Literal["approve", "reject"]
    note: str = Field("", max_length=MAX_NOTE_CHARS)


class EscalationOut(BaseModel):
    id: str
    run_id: str
    ticket_id: str | None = None
    reason: str
    priority: str
    queue: str
    summary: str
    evidence: list[str] = []
    status: str
    claimed_by: str | None = None
    resolution: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Escalation) -> EscalationOut:
        return cls.model_validate(row.model_dump())


# Surrounding whitespace is dropped first, so a blank resolution or reply is refused, not stored.
ResolutionText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class ResolveBody(_Body):
    """The same rules for the API and the console's form."""

    resolution: ResolutionText = Field(description="What was done, for the record.")
    reply: ResolutionText | None = Field(None, description="A public reply to the customer, sent through ticket_update.")


class ResolvedOut(BaseModel):
    escalation: EscalationOut
    ticket_update: dict[str, Any] | None = None


class Health(BaseModel):
    status: Literal["ok", "not_ready"]
    checks: dict[str, str] = {}
