"""Static checks on templates and plans, before anything runs.

Rejects unknown tools, arguments the tool's input model refuses, references to missing or
later steps, cycles, output fields that do not exist, and undeclared or misused slots.
Each problem names the source file, the step and what is wrong.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from plans.models import SLOT_SOURCES, Plan, ReplySpec, SlotSpec, Step, Template, TemplateStep
from plans.refs import MalformedRef, SlotRef, StepRef, parse_ref, walk_refs
from tools.registry import ToolRegistry

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True)
class Problem:
    source: str
    step: str | None
    message: str

    def __str__(self) -> str:
        where = f"step {self.step!r}: " if self.step else ""
        return f"{self.source}: {where}{self.message}"


def _field_annotation(model: type[BaseModel], path: Sequence[str]) -> Any:
    """The annotation at `path` inside a model, or None if the path does not exist."""
    annotation: Any = model
    for part in path:
        annotation = _strip(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) in (list, tuple) and part.isdigit():
            annotation = (get_args(annotation) or (Any,))[0]
        elif get_origin(annotation) is dict:
            annotation = (get_args(annotation) or (Any, Any))[1]
        else:
            return None
    return annotation


def _strip(annotation: Any) -> Any:
    """Unwrap Annotated[...] and Optional[...] to the type that holds fields."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if len(args) == 1 and get_origin(annotation) is not list:
        return _strip(args[0])
    return annotation


@functools.lru_cache(maxsize=1024)
def _json_types(annotation: Any) -> frozenset[str]:
    try:
        schema = TypeAdapter(annotation).json_schema()
    except Exception:  # noqa: BLE001 (an exotic annotation simply skips the type check)
        return frozenset()
    types: set[str] = set()
    for option in [schema, *schema.get("anyOf", [])]:
        if "type" in option:
            types.add(option["type"])
    types.discard("null")
    return frozenset(types)


@functools.lru_cache(maxsize=1024)
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter:
    field = model.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, *field.metadata]) if field.metadata else TypeAdapter(field.annotation)


def _find_cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(trail[trail.index(target):] + [target])
            elif target in edges and state.get(target) is None:
                visit(target, [*trail, target])
        state[node] = 2

    for node in edges:
        if state.get(node) is None:
            visit(node, [node])
    return cycles


def check_steps(
    steps: Sequence[TemplateStep | Step],
    registry: ToolRegistry,
    source: str,
    slots: Mapping[str, SlotSpec] | None,
) -> list[Problem]:
    """Check tools, arguments and references; `slots` is None for concrete plans."""
    problems: list[Problem] = []
    position = {}
    for index, step in enumerate(steps):
        if step.id in position:
            problems.append(Problem(source, step.id, "duplicate step id"))
        position.setdefault(step.id, index)
    edges: dict[str, set[str]] = {step.id: set() for step in steps}
    for step in steps:
        for ref in _safe_refs(step.args, source, step.id, problems):
            if isinstance(ref, StepRef) and ref.step_id in position:
                edges[step.id].add(ref.step_id)
    cyclic = {node for cycle in _find_cycles(edges) for node in cycle}
    for cycle in _find_cycles(edges):
        problems.append(Problem(source, cycle[0], "cycle between steps " + " -> ".join(cycle)))

    for index, step in enumerate(steps):
        if step.tool not in registry:
            problems.append(Problem(source, step.id, f"unknown tool {step.tool!r} (known: {', '.join(registry.names())})"))
            continue
        model = registry.get(step.tool).input_model
        accepted = model.model_fields
        for name in step.args:
            if name not in accepted:
                problems.append(
                    Problem(source, step.id, f"argument {name!r} is not accepted by tool {step.tool!r} (accepted: {', '.join(accepted)})")
                )
        for name, field in accepted.items():
            if field.is_required() and name not in step.args:
                problems.append(Problem(source, step.id, f"missing required argument {name!r} for tool {step.tool!r}"))
        for name, value in step.args.items():
            if name not in accepted:
                continue
            problems.extend(
                _check_argument(step, index, name, value, model, steps, position, cyclic, registry, source, slots)
            )
    return problems


def _only_if(step: TemplateStep | Step) -> str | None:
    return getattr(step, "only_if", None)


def _check_conditions(template: Template, source: str) -> list[Problem]:
    """`only_if` must name an optional slot (a required one is always filled)."""
    problems = []
    for step in template.steps:
        if step.only_if is None:
            continue
        spec = template.slots.get(step.only_if)
        if spec is None:
            problems.append(Problem(source, step.id, f"only_if names undeclared slot {step.only_if!r}"))
        elif spec.required:
            problems.append(Problem(source, step.id, f"only_if names required slot {step.only_if!r}, so the step always runs; drop only_if"))
    return problems


def _safe_refs(value: Any, source: str, step_id: str, problems: list[Problem]) -> list[StepRef | SlotRef]:
    try:
        return list(walk_refs(value))
    except MalformedRef as exc:
        problems.append(Problem(source, step_id, str(exc)))
        return []


def _check_argument(
    step: TemplateStep | Step,
    index: int,
    name: str,
    value: Any,
    model: type[BaseModel],
    steps: Sequence[TemplateStep | Step],
    position: Mapping[str, int],
    cyclic: set[str],
    registry: ToolRegistry,
    source: str,
    slots: Mapping[str, SlotSpec] | None,
) -> list[Problem]:
    problems: list[Problem] = []
    try:
        ref = parse_ref(value)
    except MalformedRef:
        return problems  # reported once by check_steps
    input_field = model.model_fields[name]
    if isinstance(ref, SlotRef):
        if slots is None:
            problems.append(Problem(source, step.id, f"argument {name!r}: unresolved slot reference $slots.{ref.name}"))
        elif ref.name not in slots:
            problems.append(Problem(source, step.id, f"argument {name!r} references undeclared slot {ref.name!r}"))
        elif input_field.is_required() and not slots[ref.name].required and ref.name != _only_if(step):
            problems.append(
                Problem(source, step.id, f"required argument {name!r} uses optional slot {ref.name!r}")
            )
        return problems
    if isinstance(ref, StepRef):
        target = position.get(ref.step_id)
        if target is None:
            problems.append(Problem(source, step.id, f"argument {name!r} references missing step {ref.step_id!r}"))
            return problems
        if target >= index:
            if step.id not in cyclic:
                problems.append(
                    Problem(source, step.id, f"argument {name!r} references later step {ref.step_id!r}; steps may only use earlier outputs")
                )
            return problems
        if (condition := _only_if(steps[target])) is not None and condition != _only_if(step):
            problems.append(
                Problem(source, step.id, f"argument {name!r} references step {ref.step_id!r}, which is left out when slot {condition!r} is empty")
            )
            return problems
        target_tool = steps[target].tool
        if target_tool not in registry:
            return problems
        output_model = registry.get(target_tool).output_model
        annotation = _field_annotation(output_model, ref.path)
        if annotation is None:
            problems.append(
                Problem(source, step.id, f"argument {name!r}: output of step {ref.step_id!r} ({target_tool}) has no field {'.'.join(ref.path)!r}")
            )
            return problems
        wanted, offered = _json_types(input_field.annotation), _json_types(annotation)
        if wanted and offered and not wanted & offered:
            problems.append(
                Problem(source, step.id, f"argument {name!r} expects {'/'.join(sorted(wanted))} but {ref} is {'/'.join(sorted(offered))}")
            )
        return problems
    if any(True for _ in _safe_refs(value, source, step.id, [])):
        return problems  # a container holding references: checked when resolved
    try:
        _field_adapter(model, name).validate_python(value)
    except ValidationError as exc:
        reason = "; ".join(error["msg"] for error in exc.errors())
        problems.append(Problem(source, step.id, f"argument {name!r} fails {step.tool} input: {reason}"))
    return problems


def _check_slots(template: Template, source: str) -> list[Problem]:
    problems = []
    for name, spec in template.slots.items():
        for origin in spec.sources:
            if origin not in SLOT_SOURCES and not origin.startswith("context."):
                problems.append(Problem(source, None, f"slot {name!r}: unknown source {origin!r} (known: {', '.join(SLOT_SOURCES)}, context.<name>)"))
        if spec.type == "choice" and not spec.choices:
            problems.append(Problem(source, None, f"slot {name!r}: a choice slot needs choices"))
    return problems


def _check_reply(reply: ReplySpec, steps: Sequence[TemplateStep | Step], slot_names: set[str] | None, registry: ToolRegistry, source: str) -> list[Problem]:
    problems = []
    tools_by_step = {step.id: step.tool for step in steps}
    for step in steps:
        used = reply.search_step == step.id or any(p.strip().startswith(f"steps.{step.id}.") for p in _PLACEHOLDER.findall(reply.text))
        if _only_if(step) is not None and used:
            problems.append(Problem(source, None, f"reply: uses step {step.id!r}, which is left out when slot {_only_if(step)!r} is empty"))
    if reply.kind == "knowledge":
        if reply.search_step not in tools_by_step:
            problems.append(Problem(source, None, f"reply: search_step {reply.search_step!r} is not a step"))
        elif tools_by_step[reply.search_step] != "knowledge_search":
            problems.append(Problem(source, None, f"reply: search_step {reply.search_step!r} does not call knowledge_search"))
    for placeholder in _PLACEHOLDER.findall(reply.text):
        parts = placeholder.strip().split(".")
        if parts[0] == "slots" and len(parts) == 2:
            if slot_names is not None and parts[1] not in slot_names:
                problems.append(Problem(source, None, f"reply: placeholder {{{placeholder}}} names an undeclared slot"))
        elif parts[0] == "steps" and len(parts) >= 3 and parts[2] == "output":
            tool = tools_by_step.get(parts[1])
            if tool is None:
                problems.append(Problem(source, None, f"reply: placeholder {{{placeholder}}} references missing step {parts[1]!r}"))
            elif tool in registry and _field_annotation(registry.get(tool).output_model, parts[3:]) is None:
                problems.append(Problem(source, None, f"reply: placeholder {{{placeholder}}}: {tool} output has no such field"))
        else:
            problems.append(Problem(source, None, f"reply: placeholder {{{placeholder}}} must be {{slots.<name>}} or {{steps.<id>.output.<field>}}"))
    return problems


def validate_template(template: Template, registry: ToolRegistry) -> list[Problem]:
    """Every problem in one template, each naming its file and step."""
    source = template.source
    return [
        *_check_slots(template, source),
        *_check_conditions(template, source),
        *check_steps(template.steps, registry, source, template.slots),
        *_check_reply(template.reply, template.steps, set(template.slots), registry, source),
    ]


def validate_plan(plan: Plan, registry: ToolRegistry, source: str = "plan") -> list[Problem]:
    """Every problem in a concrete plan: no slot references may remain."""
    return [
        *check_steps(plan.steps, registry, source, None),
        *_check_reply(plan.reply, plan.steps, None, registry, source),
    ]
