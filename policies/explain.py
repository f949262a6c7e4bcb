"""Which rule decided what in a recorded run, and why: read back from the run's events.

Decisions are recorded where they are made: the input guard in the `intake` event, the plan
check as `policy_decision`, the gate before each side effect inside its `tool_result`, and the
output guard in the `reply` event (or the `error` event of a reply that was not sent).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from agent.integrity import RecordedEvent


class Explanation(BaseModel):
    seq: int
    phase: str  # input_guard | plan | gate | output_guard
    decision: str
    rule_id: str
    reason: str
    step_id: str | None = None
    tool: str | None = None
    inputs: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []  # every rule that had a say on the step, passed or not


def _guard_lines(seq: int, guard: dict[str, Any]) -> list[Explanation]:
    """Guard findings: flags and reply violations block; a sensitive topic sends the ticket to a person."""
    phase = guard.get("phase", "guard")
    lines = [
        Explanation(seq=seq, phase=phase, decision=decision, rule_id=item["rule_id"], reason=item.get("evidence") or item.get("detail", ""))
        for key, decision in (("flags", "deny"), ("violations", "deny"), ("topics", "to_person"))
        for item in guard.get(key, [])
    ]
    for dropped in guard.get("dropped_passages", []):
        reason = f"passage {dropped.get('citation_id')} not quoted: it carries instructions"
        lines.append(Explanation(seq=seq, phase=phase, decision="drop", rule_id=",".join(dropped.get("rules", [])), reason=reason))
    return lines or [Explanation(seq=seq, phase=phase, decision=guard.get("decision", "allow"), rule_id="-", reason="nothing found")]


def _step_line(seq: int, step: dict[str, Any]) -> Explanation:
    return Explanation(
        seq=seq,
        phase=step.get("phase", "plan"),
        decision=step.get("decision", "?"),
        rule_id=step.get("rule_id", "?"),
        reason=step.get("reason", ""),
        step_id=step.get("step_id"),
        tool=step.get("tool"),
        inputs=step.get("inputs", {}),
        checks=step.get("checks", []),
    )


def explain_events(events: Iterable[RecordedEvent]) -> list[Explanation]:
    """Every policy decision of a run, in the order it was made."""
    lines: list[Explanation] = []
    for event in events:
        try:
            lines += _event_lines(event)
        except (AttributeError, TypeError, KeyError, ValueError):  # ValueError covers pydantic's
            reason = "the recorded decision is not in the shape caseplan writes; `caseplan audit verify` checks the run"
            lines.append(Explanation(seq=event.seq, phase="?", decision="?", rule_id="-", reason=reason))
    return lines


def _event_lines(event: RecordedEvent) -> list[Explanation]:
    payload = event.payload if isinstance(event.payload, dict) else {}
    if event.kind == "intake" and "guard" in payload:
        return _guard_lines(event.seq, payload["guard"])
    if event.kind == "policy_decision":
        return [_step_line(event.seq, step) for step in payload.get("steps", [])]
    if event.kind == "tool_result" and payload.get("policy"):
        return [_step_line(event.seq, payload["policy"])]
    if event.kind in ("reply", "error") and isinstance(payload.get("guard"), dict):
        return _guard_lines(event.seq, payload["guard"])
    if event.kind == "error" and payload.get("dropped_passages"):  # no answer left once they were dropped
        return _guard_lines(event.seq, {"phase": "output_guard", "dropped_passages": payload["dropped_passages"]})
    return []
