"""Reads policy files and checks them against the tools and templates that exist.

Every problem names the file, the line and the field (`policies/x.yaml:12: rules[0].tools: unknown
tool 'pasword_reset'`), so a typo is found without reading the loader. Later files override
earlier ones: per-tool decisions by tool, rules and limits by id, sections as a whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from plans.models import canonical_json
from policies.models import (
    Decision,
    InputGuard,
    OutputGuard,
    PolicyFile,
    Precondition,
    RateLimit,
    Routing,
    Rule,
    ToolRule,
    Topic,
)
from tools.registry import ToolRegistry
from tools.safe_parse import compose_yaml, load_yaml, read_text_file

PACKAGED_POLICY = Path(__file__).resolve().parent / "default.yaml"
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class PolicyProblem:
    source: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class PolicyError(ValueError):
    """Policy files that cannot be used; each problem names the file, line and field."""

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def _line_of(root: yaml.Node | None, loc: Loc) -> int | None:
    """The line of the deepest YAML node on `loc` (1-based)."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _field(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _read(path: Path) -> tuple[Any, yaml.Node | None]:
    source = str(path)
    try:
        text = read_text_file(path)
    except UnicodeDecodeError:
        raise PolicyError([PolicyProblem(source, None, "", "not UTF-8 text")]) from None
    except OSError as exc:
        raise PolicyError([PolicyProblem(source, None, "", f"cannot read ({exc.strerror})")]) from None
    try:
        return load_yaml(text), compose_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise PolicyError([PolicyProblem(source, line, "", f"invalid YAML ({getattr(exc, 'problem', exc)})")]) from None


def _semantic_problems(policy: PolicyFile, registry: ToolRegistry, templates: set[str] | None) -> list[tuple[Loc, str]]:
    """References to tools, tool fields and templates that do not exist."""
    found: list[tuple[Loc, str]] = []

    def tool_known(loc: Loc, name: str) -> bool:
        if name not in registry:
            found.append((loc, f"unknown tool {name!r} (known: {', '.join(registry.names())})"))
            return False
        return True

    def fields_known(loc: Loc, model: type[BaseModel], names: Iterable[str], what: str) -> None:
        for name in names:
            if name not in model.model_fields:
                found.append(((*loc, name), f"{what} has no field {name!r} (fields: {', '.join(model.model_fields)})"))

    for tool in policy.tools:
        tool_known(("tools", tool), tool)
    for index, rule in enumerate(policy.rules):
        loc: Loc = ("rules", index)
        named = [t for t in rule.tools if t != "*"]
        known = [t for t in named if tool_known((*loc, "tools"), t)]
        if rule.when.args:
            if "*" in rule.tools:
                found.append(((*loc, "when", "args"), "a condition on arguments needs named tools, not '*'"))
            for tool in known:
                fields_known((*loc, "when", "args"), registry.get(tool).input_model, rule.when.args, f"{tool}'s input")
        if templates is not None:
            for name in [*(rule.when.templates or []), *(rule.when.templates_not or [])]:
                if name not in templates:
                    found.append(((*loc, "when", "templates"), f"unknown template {name!r} (known: {', '.join(sorted(templates))})"))
    for index, pre in enumerate(policy.preconditions):
        loc = ("preconditions", index)
        if tool_known((*loc, "tool"), pre.tool):
            fields_known((*loc, "match"), registry.get(pre.tool).input_model, pre.match, f"{pre.tool}'s input")
            if pre.own_ticket_arg is not None:
                fields_known(loc, registry.get(pre.tool).input_model, [pre.own_ticket_arg], f"{pre.tool}'s input (own_ticket_arg)")
        if tool_known((*loc, "after"), pre.after):
            output = registry.get(pre.after).output_model
            fields_known((*loc, "match"), output, pre.match.values(), f"{pre.after}'s output")
            fields_known((*loc, "expect"), output, pre.expect, f"{pre.after}'s output")
            if pre.owner_field is not None:
                fields_known(loc, output, [pre.owner_field], f"{pre.after}'s output (owner_field)")
        if pre.after == pre.tool:
            found.append(((*loc, "after"), "a tool cannot be its own precondition"))
    for index, limit in enumerate(policy.rate_limits):
        loc = ("rate_limits", index)
        if tool_known((*loc, "tool"), limit.tool):
            if not registry.get(limit.tool).side_effects:  # uses are counted where side effects are gated
                found.append(((*loc, "tool"), f"{limit.tool} has no side effects, and only side effects are counted: this limit would never hold"))
            elif limit.per == "account":
                fields_known(loc, registry.get(limit.tool).input_model, [limit.account_arg], f"{limit.tool}'s input (account_arg)")
    guard = policy.input_guard
    for tool in guard.flagged_allow if guard else []:
        tool_known(("input_guard", "flagged_allow"), tool)
    seen: set[str] = set()
    for section in ("rules", "preconditions", "rate_limits", "human_topics"):
        for index, item in enumerate(getattr(policy, section)):
            if item.id in seen:
                found.append(((section, index, "id"), f"rule id {item.id!r} is used twice in this file"))
            seen.add(item.id)
    return found


def load_policy_file(path: Path, registry: ToolRegistry, templates: Iterable[str] | None = None) -> PolicyFile:
    """One validated policy file, or a PolicyError listing every problem with its line."""
    data, root = _read(path)
    source = str(path)
    if not isinstance(data, dict):
        raise PolicyError([PolicyProblem(source, 1, "", "a policy file must be a YAML mapping")])
    try:
        policy = PolicyFile.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(
            [PolicyProblem(source, _line_of(root, err["loc"]), _field(err["loc"]), err["msg"]) for err in exc.errors()]
        ) from None
    problems = _semantic_problems(policy, registry, set(templates) if templates is not None else None)
    if problems:
        raise PolicyError([PolicyProblem(source, _line_of(root, loc), _field(loc), msg) for loc, msg in problems])
    return policy


@dataclass
class PolicySet:
    """The merged policy the engine enforces, and where each part came from."""

    default: Decision = "deny"
    tools: dict[str, tuple[str, ToolRule]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    preconditions: list[Precondition] = field(default_factory=list)
    rate_limits: list[RateLimit] = field(default_factory=list)
    routing: Routing = Routing()
    human_topics: list[Topic] = field(default_factory=list)
    input_guard: InputGuard = InputGuard()
    output_guard: OutputGuard = OutputGuard()
    sources: list[str] = field(default_factory=list)
    version: str = ""


def _merge_by_id(current: list[Any], extra: list[Any]) -> list[Any]:
    """A later file's items replace same-id ones in place; its new ones are added first."""
    replaced = {item.id: item for item in extra}
    kept = [replaced.pop(item.id, item) for item in current]
    return [*(item for item in extra if item.id in replaced), *kept]


def load_policies(files: Iterable[Path], registry: ToolRegistry, templates: Iterable[str] | None = None) -> PolicySet:
    """The packaged default policy, then each file in order; all problems of all files at once."""
    templates = list(templates) if templates is not None else None
    merged = PolicySet()
    digest = hashlib.sha256()
    problems: list[PolicyProblem] = []
    for path in [PACKAGED_POLICY, *files]:
        try:
            policy = load_policy_file(path, registry, templates)
        except PolicyError as exc:
            problems.extend(exc.problems)
            continue
        digest.update(canonical_json(policy.model_dump(mode="json")).encode())
        merged.sources.append(str(path))
        if policy.default is not None:
            merged.default = policy.default
        merged.tools.update({tool: (f"{path.stem}:tools.{tool}", rule) for tool, rule in policy.tools.items()})
        merged.rules = _merge_by_id(merged.rules, policy.rules)
        merged.preconditions = _merge_by_id(merged.preconditions, policy.preconditions)
        merged.rate_limits = _merge_by_id(merged.rate_limits, policy.rate_limits)
        merged.human_topics = _merge_by_id(merged.human_topics, policy.human_topics)
        merged.routing = policy.routing or merged.routing
        merged.input_guard = policy.input_guard or merged.input_guard
        merged.output_guard = policy.output_guard or merged.output_guard
    if problems:
        raise PolicyError(problems)
    merged.version = digest.hexdigest()[:16]
    return merged
