"""The human escalation queue and its desk trail (caseplan's own tables) and the `escalate_to_human` tool."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import JSON, Column
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from tools.base import Tool, ToolContext, derived_id
from tools.contracts.escalation import EscalateInput, EscalateOutput


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Escalation(SQLModel, table=True):
    """One ticket waiting for a person: why, how urgent, and where the evidence is."""

    id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    ticket_id: str | None = Field(default=None, index=True)
    reason: str = Field(index=True)
    priority: str
    queue: str = Field(index=True)
    summary: str
    evidence: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    status: str = Field(default="open", index=True)  # open | claimed | resolving | resolved
    claimed_by: str | None = None
    resolution: str | None = None
    created_at: datetime = Field(default_factory=_utcnow)
    updated_at: datetime = Field(default_factory=_utcnow)


class DeskEvent(SQLModel, table=True):
    """One move a person made on an escalation (claimed, released, resolved, or a reply the
    helpdesk refused), written in the same transaction as the move: who told the customer what,
    and when, for the agent who picks the case up next and for the auditor."""

    __tablename__ = "desk_event"
    id: int | None = Field(default=None, primary_key=True)
    escalation_id: str = Field(index=True)
    run_id: str = Field(index=True)
    action: str
    actor: str
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON))
    at: datetime = Field(default_factory=_utcnow)


class EscalationNotifier(Protocol):
    """Tells the support platform that a ticket now needs a person: one attempt, idempotent per
    escalation id, a typed ToolError on failure (the executor retries the step)."""

    name: str

    def notify(self, escalation: Escalation) -> None: ...


class EscalationQueue:
    """Create and list escalations in caseplan's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, args: EscalateInput, ctx: ToolContext) -> tuple[Escalation, bool]:
        """Insert once per idempotency key; returns the row and whether it is new."""
        escalation_id = derived_id("esc", ctx.idempotency_key)
        with Session(self.engine, expire_on_commit=False) as session:
            existing = session.get(Escalation, escalation_id)
            if existing is not None:
                return existing, False
            row = Escalation(
                id=escalation_id,
                run_id=ctx.run_id,
                ticket_id=args.ticket_id,
                reason=args.reason,
                priority=args.priority,
                queue=args.queue,
                summary=args.summary,
                evidence=list(args.evidence),
            )
            session.add(row)
            session.commit()
            return row, True

    def list(self, status: str | None = None) -> Sequence[Escalation]:
        with Session(self.engine) as session:
            query = select(Escalation).order_by(Escalation.created_at)
            if status:
                query = query.where(Escalation.status == status)
            return session.exec(query).all()


class EscalateToHuman(Tool[EscalateInput, EscalateOutput]):
    name = "escalate_to_human"
    description = "Put the ticket in a human queue with a typed reason, priority and summary."
    input_model = EscalateInput
    output_model = EscalateOutput
    side_effects = True

    def __init__(self, queue: EscalationQueue, notifiers: Sequence[EscalationNotifier] = ()) -> None:
        self.queue = queue
        self.notifiers = list(notifiers)
        self.adapter = "+".join(["queue", *(notifier.name for notifier in self.notifiers)])
        self.in_process = not self.notifiers  # a notifier calls out (webhook, helpdesk)

    def queued(self, idempotency_key: str) -> bool:
        """Whether the call with this key put its row in the queue: a person has the ticket even
        when a notice to the platform then failed."""
        with Session(self.queue.engine) as session:
            return session.get(Escalation, derived_id("esc", idempotency_key)) is not None

    def invoke(self, args: EscalateInput, ctx: ToolContext) -> EscalateOutput:
        row, _ = self.queue.create(args, ctx)
        # Notified on every attempt, not only when the row is new: a retry after a failed
        # delivery must deliver, and receivers drop repeats by the escalation id.
        for notifier in self.notifiers:
            notifier.notify(row)
        return EscalateOutput(
            escalation_id=row.id, queue=row.queue, status="open", run_id=row.run_id, notified=[n.name for n in self.notifiers]
        )
