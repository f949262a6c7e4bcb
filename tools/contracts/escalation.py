"""Human escalation contract: a typed reason, never a phrase parsed out of model text."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from tools.base import ToolModel
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


class EscalateInput(ToolModel):
    ticket_id: TicketId | None = None
    reason: EscalationReason
    priority: Priority = "normal"
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1200)]
    queue: QueueName = "general"
    evidence: list[Annotated[str, StringConstraints(max_length=500)]] = []


class EscalateOutput(ToolModel):
    escalation_id: str
    queue: QueueName
    status: Literal["open"]
    run_id: str
