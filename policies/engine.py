"""The policy engine: one decision per plan step, with the rule that made it.

Decisions are `allow`, `deny` or `needs_approval`; a plan's verdict is its strictest step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from plans.models import Plan, canonical_json
from plans.refs import StepRef, walk_refs
from tools.registry import ToolRegistry

Decision = Literal["allow", "deny", "needs_approval"]
_STRICTNESS = {"allow": 0, "needs_approval": 1, "deny": 2}
PACKAGED_POLICY = Path(__file__).resolve().parent / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolRule(_Strict):
    decision: Decision = "allow"
    requires_before: list[str] = []


class PolicyFile(_Strict):
    version: Literal[1]
    default: Decision = "deny"
    tools: dict[str, ToolRule] = {}


class StepDecision(BaseModel):
    step_id: str
    tool: str
    decision: Decision
    rule_id: str
    reason: str


class Verdict(BaseModel):
    decision: Decision
    steps: list[StepDecision]

    @property
    def blocking(self) -> list[StepDecision]:
        return [step for step in self.steps if step.decision != "allow"]


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and field."""


def load_policy_file(path: Path, registry: ToolRegistry) -> PolicyFile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot read policy ({exc})") from None
    try:
        policy = PolicyFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PolicyError(f"{path}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    for tool, rule in policy.tools.items():
        for name in [tool, *rule.requires_before]:
            if name not in registry:
                raise PolicyError(f"{path}: tools.{tool}: unknown tool {name!r}")
    return policy


class PolicyEngine:
    def __init__(self, files: Iterable[Path], registry: ToolRegistry) -> None:
        self.rules: dict[str, tuple[str, ToolRule]] = {}
        self.default: Decision = "deny"
        digest = hashlib.sha256()
        for path in [PACKAGED_POLICY, *files]:
            policy = load_policy_file(path, registry)
            digest.update(canonical_json(policy.model_dump()).encode())
            self.default = policy.default
            for tool, rule in policy.tools.items():
                self.rules[tool] = (f"{path.stem}:tools.{tool}", rule)
        self.version = digest.hexdigest()[:16]

    def evaluate(self, plan: Plan) -> Verdict:
        decisions: list[StepDecision] = []
        for index, step in enumerate(plan.steps):
            if step.tool not in self.rules:
                decisions.append(
                    StepDecision(step_id=step.id, tool=step.tool, decision=self.default, rule_id="default", reason="no rule for this tool")
                )
                continue
            rule_id, rule = self.rules[step.tool]
            decision, reason = rule.decision, f"{step.tool} is {rule.decision}"
            missing = self._missing_preconditions(plan, index, rule.requires_before)
            if missing:
                decision, reason = "deny", f"{step.tool} needs an earlier {', '.join(missing)} step that feeds it"
            decisions.append(StepDecision(step_id=step.id, tool=step.tool, decision=decision, rule_id=rule_id, reason=reason))
        worst = max((d.decision for d in decisions), key=_STRICTNESS.__getitem__, default="allow")
        return Verdict(decision=worst, steps=decisions)

    @staticmethod
    def _missing_preconditions(plan: Plan, index: int, required: list[str]) -> list[str]:
        """Required tools must run earlier *and* an argument of this step must come from them."""
        feeding = {ref.step_id for ref in walk_refs(plan.steps[index].args) if isinstance(ref, StepRef)}
        earlier = {step.id: step.tool for step in plan.steps[:index]}
        satisfied = {earlier[step_id] for step_id in feeding if step_id in earlier}
        return [tool for tool in required if tool not in satisfied]
