"""What a person says a run should have done: the flywheel's raw material.

When an agent resolves an escalation or rejects an approval, they can record the correct
outcome (the template that should have handled the ticket, or `escalate`; slot values;
tools that must not run). `caseplan eval harvest` turns these into eval cases.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from agent.record import Run, UnknownRunError
from tools.escalation import Escalation


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EvalOutcome(SQLModel, table=True):
    """The correct outcome of one run, as a person recorded it (one per run; a later label replaces it)."""

    __tablename__ = "eval_outcome"
    run_id: str = Field(primary_key=True, foreign_key="run.id")
    template: str
    escalation_reason: str | None = None
    slots: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    forbidden_tools: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    note: str | None = None
    recorded_by: str
    recorded_at: datetime = Field(default_factory=_utcnow, index=True)


class OutcomeError(ValueError):
    """A label that cannot be recorded; the message says why."""


def record_outcome(
    engine: Engine,
    run_id: str,
    template: str,
    recorded_by: str,
    *,
    escalation_reason: str | None = None,
    slots: dict | None = None,
    forbidden_tools: list[str] | None = None,
    note: str | None = None,
    resolve: bool = True,
) -> EvalOutcome:
    """Store the label; with `resolve`, the run's open escalation is marked resolved by the same person."""
    with Session(engine, expire_on_commit=False) as session:
        if session.get(Run, run_id) is None:
            raise UnknownRunError(run_id)
        outcome = session.get(EvalOutcome, run_id) or EvalOutcome(run_id=run_id, template=template, recorded_by=recorded_by)
        outcome.template, outcome.recorded_by, outcome.recorded_at = template, recorded_by, _utcnow()
        outcome.escalation_reason, outcome.note = escalation_reason, note
        outcome.slots, outcome.forbidden_tools = dict(slots or {}), list(forbidden_tools or [])
        session.add(outcome)
        if resolve:
            for escalation in session.exec(select(Escalation).where(Escalation.run_id == run_id, Escalation.status != "resolved")):
                escalation.status, escalation.claimed_by = "resolved", escalation.claimed_by or recorded_by
                escalation.resolution = note or f"correct outcome recorded: {template}"
                escalation.updated_at = _utcnow()
                session.add(escalation)
        session.commit()
        return outcome
