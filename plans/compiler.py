"""Template + slot values -> a concrete, validated `Plan`.

Slot references are replaced by values; references to earlier step outputs stay as
references for the executor to resolve. An optional slot that was not filled drops the
argument that used it, so the tool's own default applies, and drops the steps that are
`only_if` that slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plans.models import Plan, Step, Template
from plans.refs import MISSING, SlotRef, StepRef, substitute
from plans.validator import Problem, validate_plan
from tools.registry import ToolRegistry


class CompileError(ValueError):
    """The template cannot become a valid plan with these slots."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))


def compile_plan(
    template: Template,
    slots: Mapping[str, Any],
    *,
    catalogue_version: str,
    ticket_id: str | None,
    registry: ToolRegistry,
) -> Plan:
    """Build and validate the plan; raise CompileError naming every problem."""
    source = template.source
    filled = {name: value for name, value in slots.items() if value not in (None, "")}
    problems = [
        Problem(source, None, f"slot {name!r} is not declared by template {template.name!r}")
        for name in sorted(set(filled) - set(template.slots))
    ]
    missing = [name for name, spec in template.slots.items() if spec.required and name not in filled]
    if missing:
        problems.append(Problem(source, None, f"missing required slots: {', '.join(missing)}"))
    if problems:
        raise CompileError(problems)

    def fill(ref: StepRef | SlotRef) -> Any:
        if isinstance(ref, SlotRef):
            return filled.get(ref.name, MISSING)
        return str(ref)

    plan = Plan(
        template=template.name,
        template_version=template.version,
        catalogue_version=catalogue_version,
        ticket_id=ticket_id,
        slots=dict(sorted(filled.items())),
        steps=tuple(
            Step(id=step.id, tool=step.tool, args=substitute(step.args, fill), description=step.description, on_error=step.on_error)
            for step in template.steps
            if step.only_if is None or step.only_if in filled
        ),
        reply=template.reply,
    )
    problems = validate_plan(plan, registry, source)
    if problems:
        raise CompileError(problems)
    return plan
