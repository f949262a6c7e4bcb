"""Planning: fill a template's slots from the ticket, then compile a validated plan.

Anything that stops a plan (missing or ambiguous slots, a compile error) comes back as a
typed escalation reason, never as an exception the graph has to guess about.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from agent.slots import SlotFill, SlotFiller
from agent.tickets import Ticket
from plans.catalogue import Catalogue, UnknownTemplateError
from plans.compiler import CompileError, compile_plan
from plans.models import Plan
from tools.contracts.escalation import EscalationReason
from tools.registry import ToolRegistry


class PlanOutcome(BaseModel):
    plan: Plan | None = None
    fill: SlotFill = SlotFill()
    reason: EscalationReason | None = None
    detail: str = ""


class Planner:
    def __init__(self, catalogue: Catalogue, registry: ToolRegistry, filler: SlotFiller) -> None:
        self.catalogue = catalogue
        self.registry = registry
        self.filler = filler

    def plan(self, template_name: str, ticket: Ticket, context: Mapping[str, Any] | None = None) -> PlanOutcome:
        try:
            template = self.catalogue.get(template_name)
        except UnknownTemplateError as exc:
            return PlanOutcome(reason="invalid_plan", detail=str(exc))
        if (said := template.contradicted_by(ticket.full_text)) is not None:
            return PlanOutcome(reason="low_confidence", detail=f"{template.name}: the ticket says otherwise ({said[:80]!r}); a person decides")
        fill = self.filler.fill(template, ticket, context)
        if fill.missing:
            details = [
                f"{name} is ambiguous ({len(fill.ambiguous[name])} candidates)"
                if name in fill.ambiguous
                else f"{name}: {fill.rejected[name]}"
                if name in fill.rejected
                else f"{name} not found"
                for name in fill.missing
            ]
            return PlanOutcome(fill=fill, reason="missing_information", detail="; ".join(details))
        try:
            plan = compile_plan(
                template,
                fill.values,
                catalogue_version=self.catalogue.version,
                ticket_id=ticket.ticket_id,
                registry=self.registry,
            )
        except CompileError as exc:
            return PlanOutcome(fill=fill, reason="invalid_plan", detail=str(exc))
        return PlanOutcome(plan=plan, fill=fill)
