"""Scores one run of one case: every applicable check, pass or fail, with what was seen."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agent.evals.cases import EvalCase, ToolCallExpectation
from agent.evals.criteria import Observation, ToolCallRecord, check_criterion, seen_for


class CheckResult(BaseModel):
    name: str
    passed: bool
    detail: str = ""


def _same(expected: Any, seen: Any) -> bool:
    if isinstance(expected, str) and isinstance(seen, str):
        return expected.strip().lower() == seen.strip().lower()
    return expected == seen


def _call_matches(expected: ToolCallExpectation, call: ToolCallRecord) -> bool:
    args = call.args or {}
    return call.tool == expected.tool and all(key in args and _same(value, args[key]) for key, value in expected.args.items())


def _calls_in_order(expected: list[ToolCallExpectation], calls: list[ToolCallRecord]) -> bool:
    """Each expected call, with its key arguments, happens after the previous one."""
    remaining = iter(calls)
    return all(any(_call_matches(want, call) for call in remaining) for want in expected)


def score(case: EvalCase, obs: Observation) -> list[CheckResult]:
    """The checks the case asks for; a run passes when all of them pass."""
    expect = case.expect
    results: list[CheckResult] = []
    if expect.template is not None:
        results.append(CheckResult(name="template", passed=obs.template == expect.template, detail=f"expected {expect.template}, got {obs.template}"))
    if expect.route is not None:
        results.append(CheckResult(name="route", passed=obs.route == expect.route, detail=f"expected {expect.route}, got {obs.route}"))
    if expect.escalation_reason is not None:
        results.append(
            CheckResult(name="escalation_reason", passed=obs.escalation_reason == expect.escalation_reason, detail=f"expected {expect.escalation_reason}, got {obs.escalation_reason}")
        )
    for slot, value in expect.slots.items():
        seen = obs.slots.get(slot)
        results.append(CheckResult(name=f"slot:{slot}", passed=_same(value, seen), detail=f"expected {value!r}, got {seen!r}"))
    executed = [call.tool for call in obs.tool_calls]
    if expect.tool_calls is not None:
        results.append(CheckResult(name="tool_calls", passed=_calls_in_order(expect.tool_calls, obs.tool_calls), detail=f"got {executed}"))
        wanted = [call.tool for call in expect.tool_calls]
        results.append(CheckResult(name="action_sequence", passed=executed == wanted, detail=f"got {executed}"))
    if expect.forbidden_tools:
        called = sorted({tool for tool in executed if tool in expect.forbidden_tools})
        results.append(CheckResult(name="forbidden_tools", passed=not called, detail=f"called {called}" if called else ""))
    for item in expect.criteria:
        passed = check_criterion(item, obs)
        results.append(CheckResult(name=f"criterion:{item}", passed=passed, detail="" if passed else seen_for(item, obs)))
    return results
