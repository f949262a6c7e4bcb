"""The policy engine: one recorded decision per plan step, with the rule that made it.

It runs twice for every step. `evaluate` (the graph's `check` node) judges the whole plan before
anything runs, from what the plan says. `gate` (called by the executor right before a
side-effecting tool) judges the one step again from what really happened: resolved arguments,
earlier steps' outputs, the rate-limit counters, the approval a person gave. A plan that looked
fine but whose verification failed, whose account is someone else's or whose limit was used up
in the meantime is stopped there, before the side effect, never beside it.

Per step, the checks are: the tool's base decision (else the default), every rule whose
condition matches, the input guard's flags, preconditions, rate limits and the routing
threshold. The strictest check decides and is named; so a rule or a later file can only make a
tool stricter (to loosen a packaged rule, a file replaces it by its id).
"""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from plans.models import Plan, Step
from plans.refs import StepRef, walk_refs
from policies.grounding import ReplyViolation, check_disclosure, check_grounding
from policies.guard import InputGuardian
from policies.loader import PolicyError, PolicySet, load_policies
from policies.models import STRICTNESS, WEEKDAYS, Condition, Decision, Precondition, RateLimit, TimeWindow
from policies.ratelimit import RateLimiter, RateUse
from tools.registry import ToolRegistry

__all__ = ["Check", "GateContext", "GateRequest", "PolicyEngine", "PolicyError", "StepDecision", "Verdict"]


class Check(BaseModel):
    """One rule's say on a step."""

    rule_id: str
    decision: Decision
    reason: str


RecordedLimits = Callable[[str, str, str], dict[str, Any] | None]  # (phase, step id, rule id) -> recorded check
# Built in, not a policy file's rule: no side effect on a ticket an earlier step showed to be someone else's.
HANDLED_TICKET_RULE = "builtin:handled-ticket-owner"


class StepDecision(BaseModel):
    step_id: str
    tool: str
    decision: Decision
    rule_id: str
    reason: str
    phase: Literal["plan", "gate"] = "plan"
    checks: list[Check] = []
    inputs: dict[str, Any] = {}


class Verdict(BaseModel):
    decision: Decision
    steps: list[StepDecision]

    @property
    def blocking(self) -> list[StepDecision]:
        return [step for step in self.steps if step.decision != "allow"]


class GateContext(BaseModel):
    """What the graph knows about the run that the executor does not: the ticket, what the input
    guard flagged, which steps a person approved, how sure the router was."""

    ticket: dict[str, Any] = {}
    flags: list[str] = []
    approved_rules: dict[str, list[str]] = {}  # step id -> the needs-approval rules a person was shown and approved
    route_confidence: float | None = None
    received_at: datetime | None = None


@dataclass(frozen=True)
class GateRequest:
    plan: Plan
    step: Step
    args: Mapping[str, Any]
    outputs: Mapping[str, Mapping[str, Any]]
    run_id: str
    idempotency_key: str
    context: GateContext = field(default_factory=GateContext)


def _in_window(window: TimeWindow, now: datetime) -> bool:
    local = now.astimezone(ZoneInfo(window.tz))
    clock, day = local.time(), WEEKDAYS[local.weekday()]
    if window.start < window.end:
        return day in window.days and window.start <= clock < window.end
    # wraps past midnight: the part after midnight belongs to the previous day's window
    if clock >= window.start:
        return day in window.days
    previous = WEEKDAYS[(local.weekday() - 1) % 7]
    return clock < window.end and previous in window.days


def _label(value: Any) -> str:
    """A platform's label as a rule compares it: NFKC, invisible characters removed, case folded
    ("VIP", "vip\u200b" and "ｖｉｐ" are one tier; a rule must not miss a disguised one)."""
    folded = unicodedata.normalize("NFKC", str(value or ""))
    return "".join(char for char in folded if unicodedata.category(char) != "Cf").strip().casefold()


def _matches(cond: Condition, facts: Mapping[str, Any], args: Mapping[str, Any] | None, now: datetime) -> bool:
    if cond.templates is not None and facts["template"] not in cond.templates:
        return False
    if cond.templates_not is not None and facts["template"] in cond.templates_not:
        return False
    if cond.customer_tier is not None and _label(facts["customer_tier"]) not in {_label(t) for t in cond.customer_tier}:
        return False
    if cond.tags_any is not None and not {_label(t) for t in facts["tags"]} & {_label(t) for t in cond.tags_any}:
        return False
    if cond.channel is not None and _label(facts["channel"]) not in {_label(c) for c in cond.channel}:
        return False
    if cond.side_effects_min is not None and facts["side_effects"] < cond.side_effects_min:
        return False
    if cond.side_effects_max is not None and facts["side_effects"] > cond.side_effects_max:
        return False
    if cond.within is not None and not _in_window(cond.within, now):
        return False
    if cond.outside is not None and _in_window(cond.outside, now):
        return False
    for name, allowed in (cond.args or {}).items():
        value = (args or {}).get(name)
        if isinstance(value, str) and value.startswith("$"):
            return False  # at plan time a reference is not yet a value; the gate sees the value
        if value not in allowed:
            return False
    return True


def _strictest(checks: list[Check]) -> Check:
    return max(checks, key=lambda check: STRICTNESS[check.decision])  # max keeps the first of equals


class PolicyEngine:
    def __init__(
        self,
        files: Iterable[Path],
        registry: ToolRegistry,
        templates: Iterable[str] | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.registry = registry
        self.policy: PolicySet = load_policies(files, registry, templates)
        self.version = self.policy.version
        self.limiter = limiter
        self.recorded_limits: RecordedLimits | None = None
        self.guardian = InputGuardian(self.policy.input_guard, self.policy.human_topics, registry.names())

    def for_replay(self, recorded: RecordedLimits | None = None) -> PolicyEngine:
        """The same policy over a read-only view of the counters; nothing is counted. A rate-limit
        check the replayed run recorded is served as recorded (`recorded(phase, step_id, rule_id)`):
        the counters are outside state, like a tool's answer, and other runs changed them while
        this one ran. One that was not recorded is judged as the counters stood when the run arrived."""
        replica = copy.copy(self)
        replica.limiter = RateLimiter(self.limiter.engine, read_only=True) if self.limiter is not None else None
        replica.recorded_limits = recorded
        return replica

    # --- facts -------------------------------------------------------------------------
    def _facts(self, plan: Plan, ticket: Mapping[str, Any]) -> dict[str, Any]:
        side_effects = sum(1 for s in plan.steps if s.tool in self.registry and self.registry.get(s.tool).side_effects)
        return {
            "template": plan.template,
            "customer_tier": ticket.get("customer_tier"),
            "tags": list(ticket.get("tags") or []),
            "channel": ticket.get("channel"),
            "requester": ticket.get("requester_email"),
            "side_effects": side_effects,
        }

    def _tool_decisions(self, step: Step, facts: Mapping[str, Any], args: Mapping[str, Any] | None, now: datetime) -> list[Check]:
        """The tool's base decision and every matching rule's."""
        if step.tool in self.policy.tools:
            rule_id, base = self.policy.tools[step.tool]
            checks = [Check(rule_id=rule_id, decision=base.decision, reason=f"{step.tool} is {base.decision} by default")]
        else:
            checks = [Check(rule_id="default", decision=self.policy.default, reason=f"no rule for {step.tool}; the default is {self.policy.default}")]
        for rule in self.policy.rules:
            if ("*" in rule.tools or step.tool in rule.tools) and _matches(rule.when, facts, args, now):
                checks.append(Check(rule_id=rule.id, decision=rule.decision, reason=rule.reason))
        return checks

    def _side_effects(self, tool: str) -> bool:
        return tool in self.registry and self.registry.get(tool).side_effects

    def _guard_check(self, tool: str, flags: list[str]) -> Check | None:
        if flags and self._side_effects(tool) and tool not in self.policy.input_guard.flagged_allow:
            return Check(rule_id="input-guard", decision="deny", reason=f"the ticket was flagged ({', '.join(flags)}); no side effects")
        return None

    # --- plan time ---------------------------------------------------------------------
    def evaluate(
        self,
        plan: Plan,
        ticket: Mapping[str, Any] | None = None,
        *,
        flags: Iterable[str] = (),
        route_confidence: float | None = None,
        now: datetime | None = None,
        received_at: datetime | None = None,
        run_id: str | None = None,
    ) -> Verdict:
        """Every step judged from the plan alone, before anything runs. `received_at` (when the run
        arrived) is what a replay judges rate limits at. Uses counted by `run_id` itself (a run
        re-driven after a crash) do not count against it: the gate knows them by their key."""
        ticket, flags, now = ticket or {}, list(flags), now or datetime.now(UTC)
        facts = self._facts(plan, ticket)
        decisions = []
        for index, step in enumerate(plan.steps):
            checks = self._tool_decisions(step, facts, step.args, now)
            if (guard := self._guard_check(step.tool, flags)) is not None:
                checks.append(guard)
            checks += [self._static_precondition(pre, plan, index, facts, ticket) for pre in self._preconditions(step.tool)]
            checks += [
                self._limit_check(limit, facts, None, None, received_at, ("plan", step.id), run_id)
                for limit in self._limits(step.tool)
                if limit.per != "account"
            ]
            if route_confidence is not None and plan.template != "escalate" and self._side_effects(step.tool):
                threshold = self.policy.routing.min_confidence
                if route_confidence < threshold:
                    reason = f"route confidence {route_confidence:.2f} is below {threshold}"
                    checks.append(Check(rule_id="routing.min_confidence", decision="deny", reason=reason))
            decisions.append(self._decide(step, checks, "plan", {**facts, "args": step.args}))
        worst = max((d.decision for d in decisions), key=STRICTNESS.__getitem__, default="allow")
        return Verdict(decision=worst, steps=decisions)

    def _preconditions(self, tool: str) -> list[Precondition]:
        return [pre for pre in self.policy.preconditions if pre.tool == tool]

    def _limits(self, tool: str) -> list[RateLimit]:
        return [limit for limit in self.policy.rate_limits if limit.tool == tool]

    @staticmethod
    def _own_ticket(pre: Precondition, args: Mapping[str, Any], ticket: Mapping[str, Any]) -> bool:
        own = ticket.get("ticket_id")
        return pre.own_ticket_arg is not None and own is not None and args.get(pre.own_ticket_arg) == own

    def _static_precondition(
        self, pre: Precondition, plan: Plan, index: int, facts: Mapping[str, Any], ticket: Mapping[str, Any]
    ) -> Check:
        """The plan must have an earlier `after` step that feeds this step's matched arguments."""
        step = plan.steps[index]
        if self._own_ticket(pre, step.args, ticket):
            return Check(rule_id=pre.id, decision="allow", reason="acts on the ticket being handled")
        earlier = {s.id: s.tool for s in plan.steps[:index]}
        feeding = {ref.step_id for ref in walk_refs(step.args) if isinstance(ref, StepRef) and earlier.get(ref.step_id) == pre.after}
        if not feeding:
            return Check(rule_id=pre.id, decision="deny", reason=f"{pre.reason} (no earlier {pre.after} step feeds it)")
        if pre.owner_field is not None and not facts["requester"]:
            return Check(rule_id=pre.id, decision="deny", reason=f"{pre.reason} (the ticket has no authenticated requester)")
        return Check(rule_id=pre.id, decision="allow", reason="an earlier step feeds it")

    def _limit_check(
        self,
        limit: RateLimit,
        facts: Mapping[str, Any],
        args: Mapping[str, Any] | None,
        key: str | None,
        received_at: datetime | None,
        where: tuple[str, str],
        run_id: str | None = None,
    ) -> Check:
        if self.recorded_limits is not None and (recorded := self.recorded_limits(*where, limit.id)) is not None:
            return Check.model_validate(recorded)
        scope = self._scope(limit, facts, args)
        if scope is None:
            return Check(rule_id=limit.id, decision="deny", reason=f"{limit.tool} is rate limited per {limit.per}, and the {limit.per} is unknown")
        if self.limiter is None:
            return Check(rule_id=limit.id, decision="allow", reason="no counter store configured")
        if key is not None and not self.limiter.read_only and self.limiter.counted(limit.id, key):
            return Check(rule_id=limit.id, decision="allow", reason="this step was already counted (retry or resume)")
        if self.limiter.read_only:  # replay: as the counters stood when the run arrived
            used = self.limiter.used(limit.id, scope, limit.window_s, now=received_at, before=True)
        else:
            used = self.limiter.used(limit.id, scope, limit.window_s, excluding=key, excluding_run=run_id)
        if used >= limit.limit:
            return Check(rule_id=limit.id, decision="deny", reason=f"{limit.tool} used {used} times in {limit.window} per {limit.per}; the limit is {limit.limit}")
        return Check(rule_id=limit.id, decision="allow", reason=f"{used} of {limit.limit} used in {limit.window}")

    @staticmethod
    def _scope(limit: RateLimit, facts: Mapping[str, Any], args: Mapping[str, Any] | None) -> str | None:
        if limit.per == "tool":
            return limit.tool
        if limit.per == "requester":
            return facts["requester"]
        value = (args or {}).get(limit.account_arg)
        return str(value) if value not in (None, "") else None

    @staticmethod
    def _decide(step: Step, checks: list[Check], phase: str, inputs: dict[str, Any]) -> StepDecision:
        decisive = _strictest(checks)
        return StepDecision(
            step_id=step.id,
            tool=step.tool,
            decision=decisive.decision,
            rule_id=decisive.rule_id,
            reason=decisive.reason,
            phase=phase,
            checks=checks,
            inputs=inputs,
        )

    # --- right before a side effect -----------------------------------------------------
    def gate(self, request: GateRequest) -> StepDecision:
        """The step judged again from real values; an allowed step's rate-limit uses are counted."""
        ctx, step, plan = request.context, request.step, request.plan
        now = datetime.now(UTC)
        facts = self._facts(plan, ctx.ticket)
        approved = ctx.approved_rules.get(step.id)
        checks = [self._approved(check, approved) for check in self._tool_decisions(step, facts, request.args, now)]
        if (guard := self._guard_check(step.tool, ctx.flags)) is not None:
            checks.append(guard)
        checks += [self._live_precondition(pre, request, facts) for pre in self._preconditions(step.tool)]
        if (foreign := self._handled_ticket_is_foreign(request, facts)) is not None:
            checks.append(foreign)
        limits = self._limits(step.tool)
        checks += [self._limit_check(limit, facts, request.args, request.idempotency_key, ctx.received_at, ("gate", step.id)) for limit in limits]
        decision = self._decide(step, checks, "gate", {**facts, "args": dict(request.args)})
        if decision.decision == "allow" and self.limiter is not None:
            uses = [RateUse(limit.id, self._scope(limit, facts, request.args), limit.limit, limit.window_s) for limit in limits]
            full = self.limiter.take(uses, request.idempotency_key, request.run_id)
            if full is not None:  # a run at the same moment took the last use
                lost = Check(rule_id=full, decision="deny", reason=f"{step.tool} reached its limit under {full} while this step was being checked")
                checks = [lost if check.rule_id == full else check for check in checks]
                decision = self._decide(step, checks, "gate", {**facts, "args": dict(request.args)})
        return decision

    @staticmethod
    def _approved(check: Check, approved: list[str] | None) -> Check:
        """At the gate a needs-approval check holds only when a person approved the step for this
        very rule: one the plan check could not see (it matches on a value known only now) was
        never put before them, and an approval for another rule does not cover it."""
        if check.decision != "needs_approval":
            return check
        if approved is not None and check.rule_id in approved:
            return check.model_copy(update={"decision": "allow", "reason": f"{check.reason} (approved by a person)"})
        if approved:
            return check.model_copy(update={"decision": "deny", "reason": f"{check.reason}; the person approved this step for {', '.join(approved)}, not for this rule"})
        return check.model_copy(update={"decision": "deny", "reason": f"{check.reason}; no approval was given"})

    def _live_precondition(self, pre: Precondition, request: GateRequest, facts: Mapping[str, Any]) -> Check:
        """Some earlier step of `after` really ran and its output backs this step's arguments."""
        plan, index = request.plan, request.plan.steps.index(request.step)
        if self._own_ticket(pre, request.args, request.context.ticket):  # unless it is foreign: _handled_ticket_is_foreign
            return Check(rule_id=pre.id, decision="allow", reason="acts on the ticket being handled")
        problems = []
        for earlier in plan.steps[:index]:
            if earlier.tool != pre.after:
                continue
            output = request.outputs.get(earlier.id)
            if output is None:
                problems.append(f"{earlier.id} has not run")
                continue
            wrong = [f"{arg}" for arg, out in pre.match.items() if request.args.get(arg) != output.get(out)]
            wrong += [f"{out}={output.get(out)!r}" for out, value in pre.expect.items() if output.get(out) != value]
            if pre.owner_field is not None:
                owner, requester = str(output.get(pre.owner_field) or "").lower(), str(facts["requester"] or "").lower()
                if not requester or owner != requester:
                    wrong.append("the account belongs to someone other than the requester")
            if not wrong:
                return Check(rule_id=pre.id, decision="allow", reason=f"backed by {earlier.id}")
            problems.append(f"{earlier.id}: {', '.join(wrong)} do not match")
        detail = "; ".join(problems) or f"no earlier {pre.after} step"
        return Check(rule_id=pre.id, decision="deny", reason=f"{pre.reason} ({detail})")

    @staticmethod
    def _handled_ticket_is_foreign(request: GateRequest, facts: Mapping[str, Any]) -> Check | None:
        """A denial for any side effect once an earlier step read the ticket being handled and
        found another customer's name on it: the platform paired the ticket id with the wrong
        requester, so nothing is done on this run (no reset, no update) until a person looks."""
        handled, requester = request.context.ticket.get("ticket_id"), str(facts["requester"] or "").lower()
        if handled is None or not requester:
            return None
        for step in request.plan.steps[: request.plan.steps.index(request.step)]:
            output = request.outputs.get(step.id)
            owner = _ticket_owner(output)
            if owner is None or str(output.get("ticket_id")) != str(handled):
                continue  # not a record of the ticket being handled
            if owner and owner != requester:
                reason = f"{step.id} shows ticket {handled}, the one being handled, belongs to another customer"
                return Check(rule_id=HANDLED_TICKET_RULE, decision="deny", reason=reason)
        return None

    # --- the reply ----------------------------------------------------------------------
    def screen_passages(self, plan: Plan, outputs: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Outputs with instruction-carrying passages removed, and what was removed (and why)."""
        search = plan.reply.search_step if plan.reply.kind == "knowledge" else None
        result = outputs.get(search) if search else None
        if not result:
            return dict(outputs), []
        kept, dropped = [], []
        for passage in result.get("passages", []):
            flags = self.guardian.inspect_passage(str(passage.get("text", "")))
            if flags:
                dropped.append({"citation_id": passage.get("citation_id"), "rules": [f.rule_id for f in flags]})
            else:
                kept.append(passage)
        return {**outputs, search: {**result, "passages": kept}}, dropped

    def check_reply(self, plan: Plan, text: str, outputs: Mapping[str, Any], ticket: Mapping[str, Any]) -> list[ReplyViolation]:
        """Why this reply must not be sent (empty: it may be)."""
        config = self.policy.output_guard
        if not config.enabled or not text:
            return []
        passages = outputs.get(plan.reply.search_step, {}).get("passages", []) if plan.reply.kind == "knowledge" else []
        problems = check_grounding(text, passages, config.min_support) if plan.reply.kind == "knowledge" else []
        notes = [str(step.args["internal_note"]) for step in plan.steps if isinstance(step.args.get("internal_note"), str)]
        requester = str(ticket.get("requester_email") or "").lower()
        problems += check_disclosure(text, requester=requester or None, passages=passages, internal_notes=notes)
        for step_id, output in outputs.items():
            owner = _ticket_owner(output)
            if owner is None:
                continue  # not a ticket record
            if not owner or not requester or owner != requester:  # unknown on either side is not "the same"
                whose = "belongs to another customer" if owner and requester else "cannot be tied to the requester"
                problems.append(ReplyViolation(rule_id="output-guard.other-customer", detail=f"{step_id} read a record that {whose}"))
        return problems


def _ticket_owner(output: Any) -> str | None:
    """The requester a ticket record names, lower-cased ("" when it names none); None when
    `output` is not a ticket record (one with a `requester_email` field) at all."""
    if not isinstance(output, Mapping) or "requester_email" not in output:
        return None
    return str(output.get("requester_email") or "").lower()
