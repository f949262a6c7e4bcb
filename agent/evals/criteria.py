"""What one eval run looked like (`Observation`) and the named assertions a case may ask for.

Criteria are a closed set of named checks, some with an argument after a colon
(`reply_mentions:reset link`); an unknown name makes the case invalid instead of passing silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

# Side effects that only hand the ticket to a person are not actions on the customer's behalf.
HANDOFF_TOOLS = frozenset({"escalate_to_human"})


class ToolCallRecord(BaseModel):
    step_id: str
    tool: str
    status: str
    args: dict[str, Any] | None = None
    side_effects: bool = False

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "deduplicated")


class Observation(BaseModel):
    """Everything the checks need from one end-to-end run, taken from the run result and record."""

    run_id: str
    status: str
    route: str | None
    template: str | None
    escalation_reason: str | None = None
    slots: dict[str, Any] = {}
    abcd_actions: list[str] = []  # ABCD actions of the routed template's steps that ran, in order
    tool_calls: list[ToolCallRecord] = []
    reply: str | None = None
    citations: list[str] = []
    latency_ms: float = 0.0
    tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None


def _cites(obs: Observation, _: str) -> bool:
    return bool(obs.citations)


def _no_side_effect_before_verification(obs: Observation, _: str) -> bool:
    verified = False
    for call in obs.tool_calls:
        if call.tool == "verify_identity" and call.ok:
            verified = True
        elif call.side_effects and call.tool not in HANDOFF_TOOLS and call.ok and not verified:
            return False
    return True


def _no_side_effects(obs: Observation, _: str) -> bool:
    return not any(call.side_effects and call.ok and call.tool not in HANDOFF_TOOLS for call in obs.tool_calls)


def _reply_mentions(obs: Observation, text: str) -> bool:
    return bool(text) and text.lower() in (obs.reply or "").lower()


def _abcd_sequence(obs: Observation, sequence: str) -> bool:
    return ">".join(obs.abcd_actions) == sequence.replace(" ", "")


CRITERIA: dict[str, Callable[[Observation, str], bool]] = {
    "reply_cites_document": _cites,
    "no_side_effect_before_verification": _no_side_effect_before_verification,
    "no_side_effects": _no_side_effects,
    "reply_mentions": _reply_mentions,
    "abcd_sequence": _abcd_sequence,
    "completed": lambda obs, _: obs.status == "completed",
    "escalated": lambda obs, _: obs.status == "escalated",
}


def criterion_name(item: str) -> str:
    return item.split(":", 1)[0].strip()


def check_criterion(item: str, obs: Observation) -> bool:
    name, _, argument = item.partition(":")
    return CRITERIA[name.strip()](obs, argument.strip())


def seen_for(item: str, obs: Observation) -> str:
    """What the run showed that the criterion looked at, for the report."""
    name = criterion_name(item)
    if name == "abcd_sequence":
        return f"got {'>'.join(obs.abcd_actions) or '(none)'}"
    if name in ("completed", "escalated"):
        return f"status {obs.status}"
    if name.startswith("reply"):
        return f"reply {(obs.reply or '')[:120]!r}, citations {obs.citations}"
    return f"calls {[f'{call.tool}:{call.status}' for call in obs.tool_calls]}"
