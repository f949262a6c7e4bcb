"""Human escalation contract: a typed reason, never a phrase parsed out of model text."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from tools.base import ToolInput, ToolModel
from tools.contracts.types import TicketId

EscalationReason = Literal[
    "out_of_scope",
    "low_confidence",
    "policy_denied",
    "customer_request",
    "tool_failure",
    "model_unavailable",
    "budget_exceeded",
    "invalid_plan",
    "missing_information",
    "identity_not_verified",
    "injection_suspected",
    "approval_rejected",
]
Priority = Literal["low", "normal", "high", "urgent"]
QueueName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]


class EscalateInput(ToolInput):
    """Hand the ticket to a person with a typed reason."""

    ticket_id: TicketId | None = Field(None, description="The helpdesk ticket, when there is one.")
    reason: EscalationReason = Field(description="Why a person is needed; a closed set, never free text.")
    priority: Priority = Field("normal", description="How soon a person should look.")
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1200)] = Field(
        description="One paragraph for the agent who picks the ticket up."
    )
    queue: QueueName = Field("general", description="The human queue to put the ticket in.")
    evidence: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        [], max_length=20, description="Links or references (run events, citation ids) that back the summary."
    )


class EscalateOutput(ToolModel):
    escalation_id: str
    queue: QueueName
    status: Literal["open"]
    run_id: str
    notified: list[str] = Field([], description="Where the escalation was announced besides the queue (e.g. webhook).")
